package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tlsfront/tlsfront/internal/freeport"
	"github.com/tlsfront/tlsfront/internal/pki"
)

// proxyCPU and loadCPU are the cores the proxy under test and the load
// generator (with the echo backend) are pinned to.
const (
	proxyCPU = 0
	loadCPU  = 1
)

// chain is the certificate material every proxy serves: root ->
// intermediate -> leaf, all ECDSA P-256.
type chain struct {
	rootPEM, fullchain, key, combined string // file paths
	root                              *pki.Cert
}

func writeChain(dir string) (*chain, error) {
	root, err := pki.NewRoot("tlsfront bench root")
	if err != nil {
		return nil, fmt.Errorf("make root: %w", err)
	}
	inter, err := root.Issue(pki.Options{CommonName: "tlsfront bench intermediate", IsCA: true})
	if err != nil {
		return nil, fmt.Errorf("make intermediate: %w", err)
	}
	leaf, err := inter.Issue(pki.Options{CommonName: "localhost", DNSNames: []string{"localhost"}})
	if err != nil {
		return nil, fmt.Errorf("make leaf: %w", err)
	}
	c := &chain{root: root}
	full := pki.ChainPEM(leaf, inter)
	files := []struct {
		dst  *string
		name string
		data []byte
	}{
		{&c.rootPEM, "root.pem", root.CertPEM()},
		{&c.fullchain, "fullchain.pem", full},
		{&c.key, "key.pem", leaf.KeyPEM()},
		{&c.combined, "combined.pem", append(append([]byte(nil), full...), leaf.KeyPEM()...)},
	}
	for _, f := range files {
		if *f.dst, err = pki.WriteFile(dir, f.name, f.data, 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	return c, nil
}

// target is one thing the load generator talks to.
type target struct {
	name string
	tls  bool // false: plain TCP straight to the echo backend
	// launch starts the proxy in front of echoAddr and returns the address
	// to connect to and the process to measure (nil for direct).
	launch func(ctx context.Context, h *harness, echoAddr string) (string, *proc, error)
}

func directTarget() *target {
	return &target{name: "direct", launch: func(_ context.Context, _ *harness, echoAddr string) (string, *proc, error) {
		return echoAddr, nil, nil
	}}
}

func tlsfrontTarget(extraArgs []string, env string) *target {
	return &target{name: "tlsfront", tls: true, launch: func(ctx context.Context, h *harness, echoAddr string) (string, *proc, error) {
		return h.startOnFreePort(ctx, "tlsfront", func(addr string) ([]string, error) {
			args := []string{h.tlsfrontBin,
				"--listen", addr, "--backend", echoAddr,
				"--cert", h.chain.fullchain, "--key", h.chain.key, "--trust-ca", h.chain.rootPEM,
				"--admin", "127.0.0.1:0", "--log-level", "warn"}
			args = append(args, extraArgs...)
			if env != "" {
				// env(1) keeps the process (and its group) the same.
				args = append(append([]string{"env"}, strings.Split(env, ",")...), args...)
			}
			return args, nil
		})
	}}
}

// sameSuites makes every OpenSSL server prefer what Go's client offers
// first on AES hardware, so bulk numbers compare the same cipher.
const tls13Suites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

func nginxTarget(module string) *target {
	return &target{name: "nginx", tls: true, launch: func(ctx context.Context, h *harness, echoAddr string) (string, *proc, error) {
		dir, err := os.MkdirTemp(h.tmp, "nginx-")
		if err != nil {
			return "", nil, err
		}
		return h.startOnFreePort(ctx, "nginx", func(addr string) ([]string, error) {
			conf := fmt.Sprintf(`load_module %s;
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 20000;
pid %s/nginx.pid;
error_log stderr warn;
events {
    worker_connections 20000;
}
stream {
    server {
        listen %s ssl;
        ssl_certificate %s;
        ssl_certificate_key %s;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_conf_command Ciphersuites %s;
        proxy_pass %s;
        proxy_timeout 1h;
    }
}
`, module, dir, addr, h.chain.fullchain, h.chain.key, tls13Suites, echoAddr)
			path := filepath.Join(dir, "nginx.conf")
			if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
				return nil, err
			}
			return []string{"prlimit", "--nofile=20000:20000", "nginx", "-p", dir, "-c", path, "-e", "stderr"}, nil
		})
	}}
}

func haproxyTarget() *target {
	return &target{name: "haproxy", tls: true, launch: func(ctx context.Context, h *harness, echoAddr string) (string, *proc, error) {
		dir, err := os.MkdirTemp(h.tmp, "haproxy-")
		if err != nil {
			return "", nil, err
		}
		return h.startOnFreePort(ctx, "haproxy", func(addr string) ([]string, error) {
			// maxconn 9500: each proxied connection takes two descriptors
			// and HAProxy refuses to start if maxconn cannot fit in the
			// 20,000 limit.
			conf := fmt.Sprintf(`global
    nbthread 1
    maxconn 9500
    ssl-default-bind-options ssl-min-ver TLSv1.2
    ssl-default-bind-ciphersuites %s
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    maxconn 9500
frontend fe
    bind %s ssl crt %s
    default_backend be
backend be
    server s1 %s
`, tls13Suites, addr, h.chain.combined, echoAddr)
			path := filepath.Join(dir, "haproxy.cfg")
			if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
				return nil, err
			}
			return []string{"prlimit", "--nofile=20000:20000", "haproxy", "-db", "-f", path}, nil
		})
	}}
}

// startOnFreePort picks a free port, starts the proxy on it and waits until
// it accepts. Another process can take the port between picking and
// binding, so it tries a few times.
func (h *harness) startOnFreePort(ctx context.Context, name string, argv func(addr string) ([]string, error)) (string, *proc, error) {
	var lastErr error
	for range 3 {
		port, err := freeport.One()
		if err != nil {
			return "", nil, fmt.Errorf("pick a port for %s: %w", name, err)
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		args, err := argv(addr)
		if err != nil {
			return "", nil, fmt.Errorf("configure %s: %w", name, err)
		}
		pr, err := h.procs.start(ctx, name, proxyCPU, nil, args...)
		if err != nil {
			return "", nil, err
		}
		if lastErr = waitListening(ctx, pr, addr, 15*time.Second); lastErr == nil {
			return addr, pr, nil
		}
		h.procs.stop(pr)
		if ctx.Err() != nil {
			return "", nil, ctx.Err()
		}
	}
	return "", nil, lastErr
}

// startEcho starts a fresh echo backend on the load generator's core and
// returns its address.
func (h *harness) startEcho(ctx context.Context) (string, *proc, error) {
	addrCh := make(chan string, 1)
	pr, err := h.procs.start(ctx, "echo", loadCPU, func(line string) bool {
		if a, ok := strings.CutPrefix(line, "listening "); ok {
			addrCh <- a
			return false
		}
		return true
	}, h.echoBin)
	if err != nil {
		return "", nil, err
	}
	select {
	case a := <-addrCh:
		return a, pr, nil
	case <-pr.done:
		return "", nil, fmt.Errorf("echo backend exited: %v\n%s", pr.err, pr.out.String())
	case <-time.After(10 * time.Second):
		h.procs.stop(pr)
		return "", nil, fmt.Errorf("echo backend did not report its address within 10s")
	case <-ctx.Done():
		return "", nil, ctx.Err()
	}
}

// checkTools fails with install instructions when a proxy to compare with
// is missing, and returns the stream module's path.
func checkTools() (nginxModule string, err error) {
	const install = "install them with: apt-get install -y nginx libnginx-mod-stream haproxy"
	for _, tool := range []string{"nginx", "haproxy", "taskset", "prlimit"} {
		if _, err := exec.LookPath(tool); err != nil {
			if tool == "taskset" || tool == "prlimit" {
				return "", fmt.Errorf("%s not found in PATH: it comes with util-linux (apt-get install -y util-linux)", tool)
			}
			return "", fmt.Errorf("%s not found in PATH; the benchmark compares tlsfront with nginx and HAProxy, %s", tool, install)
		}
	}
	for _, p := range []string{"/usr/lib/nginx/modules/ngx_stream_module.so", "/usr/lib64/nginx/modules/ngx_stream_module.so", "/usr/share/nginx/modules/ngx_stream_module.so"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("nginx stream module (ngx_stream_module.so) not found under /usr/lib/nginx/modules; %s", install)
}

// versions returns a one-line version string for each external program.
func versions() map[string]string {
	run := func(argv ...string) string {
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			return "unknown (" + err.Error() + ")"
		}
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return strings.TrimSpace(line)
	}
	return map[string]string{
		"nginx":   run("nginx", "-v"),
		"haproxy": run("haproxy", "-v"),
		"go":      run("go", "version"),
		"openssl": run("openssl", "version"),
		"kernel":  run("uname", "-sr"),
	}
}
