package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/testnet"
)

// The self-probe checks what clients are served and stops there: on a tcp
// listener its rounds open no backend connection and are not counted as
// client handshakes.
func TestProbeRoundsReachNoBackend(t *testing.T) {
	f := newMonFixture(t)
	var accepted atomic.Int64
	backend := testnet.Listen(t)
	testnet.Serve(t, backend, func(c net.Conn) { accepted.Add(1); io.Copy(io.Discard, c) })
	ta := startApp(t, "--listen", "127.0.0.1:0", "--backend", backend.Addr().String(), "--kind", "tcp",
		"--cert", f.files.Cert, "--key", f.files.Key, "--trust-ca", f.root, "--probe-interval", "100ms")
	eventually(t, "5 probe rounds", 20*time.Second, func() bool {
		return metricSum(t, ta, "tlsfront_probe_rounds_total") >= 5
	})
	if n := accepted.Load(); n != 0 {
		t.Errorf("probe rounds opened %d backend connections, want 0", n)
	}
	if n := metricSum(t, ta, "tlsfront_handshakes_total"); n != 0 {
		t.Errorf("probe handshakes counted as %v client handshakes, want 0", n)
	}
	if n := metricSum(t, ta, `tlsfront_probe_handshakes_total{listener="main",result="ok"}`); n < 5 {
		t.Errorf("%v probe handshakes seen by the listener, want at least 5", n)
	}
	if n := metricSum(t, ta, "tlsfront_backend_dial_errors_total"); n != 0 {
		t.Errorf("probes counted %v backend dial errors", n)
	}
}

// A client CA bundle that fails to reload is counted and alerted, like a
// certificate.
func TestClientCAReloadFailureAlerts(t *testing.T) {
	f := newMonFixture(t)
	sink := &alertSink{}
	hook := httptest.NewServer(sink)
	defer hook.Close()
	clientCA := filepath.Join(t.TempDir(), "clients.pem")
	if err := os.WriteFile(clientCA, mustReadFile(t, f.root), 0o644); err != nil {
		t.Fatal(err)
	}
	ta := startApp(t, f.args("--client-ca", clientCA, "--no-watch", "--alert-webhook", hook.URL, "--probe-disabled")...)
	if err := os.WriteFile(clientCA, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, resp := postReload(t, ta)
	if code != http.StatusInternalServerError || findResult(t, resp, "client_auth.ca_file").Result != "failed" {
		t.Fatalf("POST /reload with a broken client CA bundle = %d %+v", code, resp)
	}
	if n := metricSum(t, ta, `tlsfront_certificate_reload_failures_total{cert="client_auth.ca_file"}`); n != 1 {
		t.Errorf("client CA reload failures counted %v, want 1", n)
	}
	eventually(t, "the client CA alert delivered", 10*time.Second, func() bool {
		return sink.count("reload/client_auth.ca_file", "firing") == 1
	})
}

// A start that fails half-way (the second listener cannot bind) leaves
// nothing running behind.
func TestFailedBindLeavesNoGoroutine(t *testing.T) {
	f := newMonFixture(t)
	taken := testnet.Listen(t)
	cfgFile := filepath.Join(t.TempDir(), "tlsfront.yaml")
	writeConfig(t, cfgFile, fmt.Sprintf(`
admin: 127.0.0.1:0
certificates: [{cert: %q, key: %q}]
trust: {ca_file: %q}
listeners:
  - {name: first, kind: http, listen: "127.0.0.1:0", backend: %q}
  - {name: second, kind: http, listen: %q, backend: %q}
`, f.files.Cert, f.files.Key, f.root, f.backend, taken.Addr().String(), f.backend))
	before := runtime.NumGoroutine()
	for range 5 {
		cfg, err := parseConfig("tlsfront", []string{"--config", cfgFile, "--state-dir", t.TempDir()}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		a, err := newApp(context.Background(), cfg, slog.New(slog.DiscardHandler), appOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.serve(context.Background()); err == nil || !strings.Contains(err.Error(), "listeners[1] (second)") {
			t.Fatalf("serve with the second port taken = %v, want an error naming listeners[1]", err)
		}
	}
	eventually(t, "goroutines back to where they were", 5*time.Second, func() bool {
		return runtime.NumGoroutine() <= before
	})
}

// Only a change to a watched file reloads: a broker writing its log into
// the certificate folder does not.
func TestWatchIgnoresOtherFiles(t *testing.T) {
	f := newReloadFixture(t)
	first, next := f.ca.Leaf(pki.Options{}), f.ca.Leaf(pki.Options{})
	files := f.ca.WriteLeaf(first)
	events := make(chan reloadEvent, 100)
	ta := startAppWith(t, recordReloads(events), noClientRate, "--listen", "127.0.0.1:0", "--backend", testnet.Echo(t),
		"--cert", files.Cert, "--key", files.Key, "--trust-ca", f.root, "--reload-debounce", "20ms")
	ta.WaitLog("watching certificate files", 5*time.Second)
	logFile := filepath.Join(files.Dir, "mosquitto.log")
	for i := range 20 {
		lf, err := os.OpenFile(logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(lf, "log line %d\n", i)
		lf.Close()
	}
	ta.WaitLog("no watched file did; not reloading", 5*time.Second)
	// A real renewal afterwards is still seen, and is the first reload.
	atomicWrite(t, files.Key, next.KeyPEM())
	atomicWrite(t, files.Cert, pki.ChainPEM(next, f.ca.Intermediate))
	f.waitSerial(t, ta.Addr("main"), serialOf(next))
	if n := strings.Count(ta.Logs(), "certificate files changed, reloading"); n < 1 {
		t.Fatalf("renewal reloaded without saying why:\n%s", ta.Logs())
	}
	if n := metricSum(t, ta, "tlsfront_certificate_reloads_total"); n != 1 {
		t.Errorf("%v reloads counted, want only the renewal's", n)
	}
	if n := metricSum(t, ta, "tlsfront_probe_rounds_total"); n > 3 {
		t.Errorf("%v probe rounds; the log writes triggered probes", n)
	}
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeConfig(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// /readyz can be told to require the backend: it fails, saying which,
// while the broker is down.
func TestReadyRequiresBackend(t *testing.T) {
	f := newMonFixture(t)
	dead := testnet.Listen(t)
	deadAddr := dead.Addr().String()
	dead.Close()
	ta := startApp(t, "--listen", "127.0.0.1:0", "--backend", deadAddr, "--cert", f.files.Cert, "--key", f.files.Key,
		"--trust-ca", f.root, "--probe-disabled", "--ready-requires-backend")
	code, _, body := adminGet(t, ta, "/readyz", "")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "backend "+deadAddr+" unreachable") {
		t.Fatalf("/readyz with the backend down = %d %q", code, body)
	}
}

// With the access log on, a proxied connection leaves one line when it
// ends, carrying its connection ID, client, name and bytes.
func TestAccessLog(t *testing.T) {
	f := newMonFixture(t)
	ta := startApp(t, "--listen", "127.0.0.1:0", "--backend", testnet.Echo(t), "--cert", f.files.Cert, "--key", f.files.Key,
		"--trust-ca", f.root, "--probe-disabled", "--no-watch", "--access-log")
	c, err := tls.Dial("tcp", ta.Addr("main"), f.ca.ClientConfig("localhost"))
	if err != nil {
		t.Fatal(err)
	}
	echoRoundTrip(t, c, "hello")
	c.Close()
	ta.WaitLog("msg=access", 5*time.Second)
	line := grepLines(ta.Logs(), "msg=access")
	for _, want := range []string{"listener=main", "conn=1", "sni=localhost", "from_client=5", "to_client=5", "end=closed", "ja4=t13"} {
		if !strings.Contains(line, want) {
			t.Errorf("access line %q lacks %q", line, want)
		}
	}
}
