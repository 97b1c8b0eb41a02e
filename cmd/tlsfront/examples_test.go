package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// examplesDir is the examples folder, relative to this package.
const examplesDir = "../../examples"

// TestExamplesConfigFiles checks that every tlsfront configuration file in
// examples/ (named tlsfront*.yaml, and only those) passes `tlsfront check-config`, which
// validates without needing the certificate files.
func TestExamplesConfigFiles(t *testing.T) {
	files := globExamples(t, func(name string) bool {
		return strings.HasPrefix(name, "tlsfront") && strings.HasSuffix(name, ".yaml")
	})
	if len(files) == 0 {
		t.Fatalf("no tlsfront*.yaml under %s", examplesDir)
	}
	for _, file := range files {
		t.Run(relExample(file), func(t *testing.T) {
			exampleClearEnv(t)
			exampleCheckConfig(t, "--config", file)
		})
	}
}

// TestExamplesComposeEnv checks every compose file's tlsfront services as
// the container would see them: the TLSFRONT_* variables of their
// environment section are set (nothing else), a TLSFRONT_CONFIG path is
// mapped back through the service's volumes to the file in examples/,
// and check-config must accept the result. Every file the configuration
// names (certificates, keys, CA bundles) must sit on a mounted volume, or
// the container could never read it.
func TestExamplesComposeEnv(t *testing.T) {
	files := globExamples(t, func(name string) bool {
		return name == "compose.yaml" || name == "compose.yml" || strings.HasPrefix(name, "docker-compose")
	})
	if len(files) == 0 {
		t.Fatalf("no compose files under %s", examplesDir)
	}
	found := 0
	for _, file := range files {
		var doc struct {
			Services map[string]composeService `yaml:"services"`
		}
		exampleReadYAML(t, file, &doc)
		for _, name := range exampleSortedKeys(doc.Services) {
			svc := doc.Services[name]
			env, err := svc.environment()
			if err != nil {
				t.Fatalf("%s: service %s: %v", file, name, err)
			}
			if !strings.Contains(svc.Image, "tlsfront") && !exampleHasEnv(env) {
				continue
			}
			found++
			t.Run(relExample(file)+"/"+name, func(t *testing.T) {
				exampleClearEnv(t)
				mounts := svc.mounts(filepath.Dir(file))
				for k, v := range env {
					if !strings.HasPrefix(k, envPrefix) {
						continue
					}
					if k == envName("config") {
						host, ok := exampleHostPath(mounts, v)
						if !ok {
							t.Fatalf("%s=%s, but no volume of service %s mounts it", k, v, name)
						}
						v = host
					}
					t.Setenv(k, v)
				}
				cfg := exampleCheckConfig(t)
				exampleFilesMounted(t, cfg, mounts)
			})
		}
	}
	if found == 0 {
		t.Fatal("no tlsfront service in any compose file")
	}
}

// TestExamplesKubernetes checks the tlsfront container of every
// Deployment under examples/: its args pass check-config with the
// configuration file that kustomize turns into the mounted ConfigMap, the
// files the configuration names are on mounted volumes, and its probes
// are `/tlsfront healthcheck` commands that work against a live admin
// endpoint.
func TestExamplesKubernetes(t *testing.T) {
	files := globExamples(t, func(name string) bool { return name == "deployment.yaml" })
	if len(files) == 0 {
		t.Fatalf("no deployment.yaml under %s", examplesDir)
	}
	for _, file := range files {
		t.Run(relExample(file), func(t *testing.T) {
			exampleClearEnv(t)
			dir := filepath.Dir(file)
			var dep k8sDeployment
			exampleReadYAML(t, file, &dep)
			var generated map[string][]string // ConfigMap name -> files
			if _, err := os.Stat(filepath.Join(dir, "kustomization.yaml")); err == nil {
				var k struct {
					ConfigMapGenerator []struct {
						Name  string   `yaml:"name"`
						Files []string `yaml:"files"`
					} `yaml:"configMapGenerator"`
				}
				exampleReadYAML(t, filepath.Join(dir, "kustomization.yaml"), &k)
				generated = map[string][]string{}
				for _, g := range k.ConfigMapGenerator {
					generated[g.Name] = g.Files
				}
			}
			// tlsfront runs as a native sidecar: an init container with
			// restartPolicy Always.
			var c *k8sContainer
			for i := range dep.Spec.Template.Spec.InitContainers {
				if ic := &dep.Spec.Template.Spec.InitContainers[i]; strings.Contains(ic.Image, "tlsfront") {
					c = ic
				}
			}
			if c == nil {
				t.Fatal("no init container with a tlsfront image")
			}
			if c.RestartPolicy != "Always" {
				t.Errorf("the tlsfront init container has restartPolicy %q; a native sidecar needs Always", c.RestartPolicy)
			}

			// Mounts: a ConfigMap from kustomize maps to the files it is
			// generated from; anything else is a folder the pod provides.
			var mounts []exampleMount
			for _, vm := range c.VolumeMounts {
				m := exampleMount{target: vm.MountPath}
				for _, v := range dep.Spec.Template.Spec.Volumes {
					if v.Name == vm.Name && v.ConfigMap != nil {
						if files, ok := generated[v.ConfigMap.Name]; ok && len(files) == 1 {
							m.source = filepath.Join(dir, files[0])
							m.target = path.Join(vm.MountPath, filepath.Base(files[0]))
						}
					}
				}
				mounts = append(mounts, m)
			}
			args := slices.Clone(c.Args)
			for i, a := range args {
				if i > 0 && (args[i-1] == "--config" || args[i-1] == "-config") {
					host, ok := exampleHostPath(mounts, a)
					if !ok {
						t.Fatalf("--config %s, but no volumeMount provides it", a)
					}
					args[i] = host
				}
			}
			for _, e := range c.Env {
				if strings.HasPrefix(e.Name, envPrefix) && e.Value != "" {
					t.Setenv(e.Name, e.Value)
				}
			}
			cfg := exampleCheckConfig(t, args...)
			exampleFilesMounted(t, cfg, mounts)
			if !slices.ContainsFunc(mounts, func(m exampleMount) bool { return m.target == "/var/lib/tlsfront" }) {
				t.Error("nothing is mounted on the state folder /var/lib/tlsfront (TLSFRONT_STATE_DIR in the image); with readOnlyRootFilesystem it is not writable")
			}

			admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintln(w, strings.TrimPrefix(r.URL.Path, "/"), "ok")
			}))
			defer admin.Close()
			for name, p := range map[string]*k8sProbe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
				if p == nil || p.Exec == nil {
					t.Errorf("%s: want an exec probe running /tlsfront healthcheck", name)
					continue
				}
				cmd := p.Exec.Command
				if len(cmd) < 2 || cmd[0] != "/tlsfront" || cmd[1] != "healthcheck" {
					t.Errorf("%s: command %q is not /tlsfront healthcheck", name, cmd)
					continue
				}
				probeArgs := append(slices.Clone(cmd[1:]), "--admin", strings.TrimPrefix(admin.URL, "http://"))
				var stdout, stderr bytes.Buffer
				if err := run(context.Background(), probeArgs, &stdout, &stderr); err != nil {
					t.Errorf("%s: %q against a live admin endpoint: %v\n%s", name, cmd, err, stderr.String())
				}
			}
			if c.ReadinessProbe != nil && c.ReadinessProbe.Exec != nil && !slices.Contains(c.ReadinessProbe.Exec.Command, "/readyz") {
				t.Errorf("readinessProbe should ask /readyz: %q", c.ReadinessProbe.Exec.Command)
			}
			if c.LivenessProbe != nil && c.LivenessProbe.Exec != nil && !slices.Contains(c.LivenessProbe.Exec.Command, "/healthz") {
				t.Errorf("livenessProbe should ask /healthz (a failing backend must not restart tlsfront): %q", c.LivenessProbe.Exec.Command)
			}
		})
	}
}

// exampleCheckConfig runs `tlsfront check-config --no-load args...`
// in-process (the examples' certificate files exist only where they are
// deployed) and returns the configuration it accepted.
func exampleCheckConfig(t *testing.T, args ...string) *config {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), append([]string{"check-config", "--no-load"}, args...), &stdout, &stderr); err != nil {
		t.Fatalf("check-config %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "configuration ok") {
		t.Fatalf("check-config %s printed %q", strings.Join(args, " "), stdout.String())
	}
	cfg, err := parseConfig("tlsfront check-config", args, io.Discard)
	if err != nil {
		t.Fatalf("parse %s: %v", strings.Join(args, " "), err)
	}
	return cfg
}

// exampleFilesMounted fails for every file cfg reads that no mount provides.
func exampleFilesMounted(t *testing.T, cfg *config, mounts []exampleMount) {
	t.Helper()
	var files []string
	for _, c := range cfg.Certificates {
		files = append(files, c.Cert, c.Key)
	}
	files = append(files, cfg.Trust.CAFile, cfg.ClientAuth.CAFile)
	for _, f := range files {
		if f == "" {
			continue
		}
		if !filepath.IsAbs(f) {
			t.Errorf("%s: relative path; in a container the working folder is /, give an absolute path", f)
			continue
		}
		if !slices.ContainsFunc(mounts, func(m exampleMount) bool { return exampleWithin(f, m.target) }) {
			t.Errorf("%s is read by tlsfront, but no volume is mounted there", f)
		}
	}
}

type exampleMount struct {
	source string // host path; empty for named volumes and pod volumes
	target string // path in the container
}

// exampleHostPath maps a container path to the host file a bind mount provides.
func exampleHostPath(mounts []exampleMount, p string) (string, bool) {
	for _, m := range mounts {
		if m.source == "" || !exampleWithin(p, m.target) {
			continue
		}
		rel, _ := filepath.Rel(m.target, p)
		return filepath.Join(m.source, rel), true
	}
	return "", false
}

func exampleWithin(p, dir string) bool {
	p, dir = path.Clean(p), path.Clean(dir)
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// composeService is what the test needs of a compose service.
type composeService struct {
	Image       string    `yaml:"image"`
	Environment yaml.Node `yaml:"environment"`
	Volumes     []any     `yaml:"volumes"`
}

// composeDefault matches ${VAR:-default} and ${VAR-default}.
var composeDefault = regexp.MustCompile(`\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}`)

// environment reads the map or list form of a service's environment, with
// ${VAR:-default} replaced by its default, as compose would without VAR.
func (s composeService) environment() (map[string]string, error) {
	out := map[string]string{}
	switch s.Environment.Kind {
	case 0:
	case yaml.MappingNode:
		var m map[string]any
		if err := s.Environment.Decode(&m); err != nil {
			return nil, err
		}
		for k, v := range m {
			if v == nil {
				return nil, fmt.Errorf("environment %s has no value (taken from the host's environment): give one in the example", k)
			}
			out[k] = fmt.Sprint(v)
		}
	case yaml.SequenceNode:
		var l []string
		if err := s.Environment.Decode(&l); err != nil {
			return nil, err
		}
		for _, kv := range l {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, fmt.Errorf("environment %s has no value (taken from the host's environment): give one in the example", kv)
			}
			out[k] = v
		}
	default:
		return nil, fmt.Errorf("environment: want a map or a list, line %d", s.Environment.Line)
	}
	for k, v := range out {
		out[k] = composeDefault.ReplaceAllString(v, "$1")
	}
	return out, nil
}

// mounts reads the short ("src:dst[:mode]") and long forms of volumes.
// Bind mounts ("./x", "/x") keep their host path, resolved against dir.
func (s composeService) mounts(dir string) []exampleMount {
	var out []exampleMount
	for _, v := range s.Volumes {
		var src, dst string
		switch v := v.(type) {
		case string:
			parts := strings.Split(v, ":")
			if len(parts) < 2 {
				continue // an anonymous volume
			}
			src, dst = parts[0], parts[1]
		case map[string]any:
			src, _ = v["source"].(string)
			dst, _ = v["target"].(string)
		}
		m := exampleMount{target: dst}
		if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
			m.source = src
			if !filepath.IsAbs(src) {
				m.source = filepath.Join(dir, src)
			}
		}
		out = append(out, m)
	}
	return out
}

func exampleHasEnv(env map[string]string) bool {
	for k := range env {
		if strings.HasPrefix(k, envPrefix) {
			return true
		}
	}
	return false
}

// k8sDeployment is what the test needs of a Deployment.
type k8sDeployment struct {
	Spec struct {
		Template struct {
			Spec struct {
				Containers     []k8sContainer `yaml:"containers"`
				InitContainers []k8sContainer `yaml:"initContainers"`
				Volumes        []struct {
					Name      string `yaml:"name"`
					ConfigMap *struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type k8sContainer struct {
	Name          string   `yaml:"name"`
	Image         string   `yaml:"image"`
	Args          []string `yaml:"args"`
	RestartPolicy string   `yaml:"restartPolicy"`
	Env           []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
}

type k8sProbe struct {
	Exec *struct {
		Command []string `yaml:"command"`
	} `yaml:"exec"`
}

// exampleClearEnv unsets every TLSFRONT_* variable for the test, so that
// the machine's environment cannot change what an example means.
func exampleClearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, envPrefix) {
			t.Setenv(k, "") // restores the old value after the test
			os.Unsetenv(k)
		}
	}
}

// globExamples returns the files under examples/ whose base name match
// accepts, sorted.
func globExamples(t *testing.T, match func(name string) bool) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(examplesDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && match(d.Name()) {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", examplesDir, err)
	}
	sort.Strings(out)
	return out
}

func relExample(p string) string {
	rel, err := filepath.Rel(examplesDir, p)
	if err != nil {
		return p
	}
	return filepath.ToSlash(rel)
}

func exampleReadYAML(t *testing.T, file string, v any) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func exampleSortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
