package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A legacy device fleet can be served on purpose, on its own listener,
// and it shows: a warning at start, the profile on /status and in the
// listener_info series.
func TestLegacyListenerOnPurpose(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	f := newMonFixture(t)
	cfgFile := filepath.Join(t.TempDir(), "tlsfront.yaml")
	writeConfig(t, cfgFile, fmt.Sprintf(`
certificates: [{cert: %q, key: %q}]
trust: {ca_file: %q}
listeners:
  - {name: devices, listen: "127.0.0.1:0", backend: %q, tls: {profile: legacy}}
  - {name: main, listen: "127.0.0.1:0", backend: %q}
`, f.files.Cert, f.files.Key, f.root, f.backend, f.backend))
	ta := startApp(t, "--config", cfgFile, "--probe-disabled", "--no-watch")
	tls10 := func(addr string) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "openssl", "s_client", "-connect", addr, "-servername", "localhost", "-tls1", "-cipher", "ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0")
		cmd.Stdin = strings.NewReader("")
		out, _ := cmd.CombinedOutput()
		return strings.Contains(string(out), "Cipher is ") && !strings.Contains(string(out), "(NONE)")
	}
	if !tls10(ta.Addr("devices")) {
		t.Error("a TLS 1.0 device was refused by the legacy listener")
	}
	if tls10(ta.Addr("main")) {
		t.Error("a TLS 1.0 device got in on the default listener")
	}
	ta.WaitLog("listener accepts TLS below the default", 5*time.Second)
	_, _, st := adminGet(t, ta, "/status", "application/json")
	var status struct {
		Listeners []struct {
			Name, TLSProfile string
			BelowDefault     bool `json:"tls_below_default"`
		} `json:"listeners"`
	}
	if err := json.Unmarshal([]byte(st), &status); err != nil {
		t.Fatalf("/status: %v", err)
	}
	marked := false
	for _, l := range status.Listeners {
		if l.Name == "devices" && l.BelowDefault {
			marked = true
		}
		if l.Name == "main" && l.BelowDefault {
			t.Error("/status marks the default listener as below the default")
		}
	}
	if !marked {
		t.Errorf("/status does not mark the legacy listener:\n%.2000s", st)
	}
	if n := metricSum(t, ta, `tlsfront_listener_info{kind="tcp",listener="devices",tls_profile="legacy"}`); n != 1 {
		t.Errorf("listener_info for devices = %v", n)
	}
}

func TestTLSPolicyConfigErrors(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "tlsfront.yaml")
	writeConfig(t, cfgFile, `
certificates: [{cert: c.pem}]
listeners:
  - listen: ":8883"
    backend: "127.0.0.1:1883"
    tls: {profile: ancient, min_version: "1.5", cipher_suites: [TLS_RSA_WITH_RC4_128_SHA], groups: [p999]}
`)
	_, err := parseConfig("tlsfront", []string{"--config", cfgFile}, nopWriter{})
	for _, want := range []string{"listeners[0].tls.min_version", "listeners[0].tls.cipher_suites[0]: TLS_RSA_WITH_RC4_128_SHA: RC4 is broken", "listeners[0].tls.groups[0]", "listeners[0].tls.profile"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
}

type nopWriter struct{}

func (nopWriter) Write(b []byte) (int, error) { return len(b), nil }
