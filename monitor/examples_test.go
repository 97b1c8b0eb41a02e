package monitor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/pki/pkitest"
	"github.com/tlsfront/tlsfront/internal/testnet"
)

const promDir = "../examples/prometheus"

// Every metric the example rules and dashboard use is one a Monitor
// exports (fed one event of each kind), so that a renamed metric cannot
// leave an alert that never fires.
func TestExampleRulesUseExportedMetrics(t *testing.T) {
	ca := pkitest.NewCA(t)
	leaf := ca.Leaf(pki.Options{})
	addr := tlsServer(t, ca, leaf)
	wh := newWebhook(t)
	wh.down.Store(true)
	m := newTestMonitor(t, Options{
		Certificates: func() []Certificate {
			return []Certificate{{ID: "main", Chain: []*x509.Certificate{leaf.Cert, ca.Intermediate.Cert, ca.Root.Cert}}}
		},
		Backends: func() []BackendState { return []BackendState{{Backend: "127.0.0.1:1883", Breaker: "open"}} },
		ProbeTargets: func() []ProbeTarget {
			return []ProbeTarget{{Listener: "mqtt", Address: addr, Names: []string{"localhost"}}}
		},
		ProbeRoots: func() (*x509.CertPool, error) { return ca.Pool(), nil },
		Alerts:     AlertOptions{Webhook: wh.srv.URL, MaxAlerts: 1, Retries: 1, RetryBase: time.Millisecond},
	})
	runMonitor(t, m)
	m.Handshake(&Handshake{Listener: "mqtt", Version: tls.VersionTLS13})
	m.Handshake(failed("no_shared_cipher", "x"))
	m.Refused("mqtt", "client_rate")
	m.Reloaded("main", errors.New("broken"))
	m.Reloaded("other", errors.New("broken")) // beyond MaxAlerts
	m.ACMEEvent(ACMEFailed, []string{"a.example"}, errors.New("rate limited"))
	m.ConnOpened("mqtt")
	m.ConnClosed("mqtt", 1, 2)
	m.BackendDial("mqtt", "127.0.0.1:1883", time.Millisecond, errors.New("refused"))
	m.BackendReset("mqtt", "127.0.0.1:1883", errors.New("backend closed the connection without answering: EOF"))
	m.probeRound(context.Background())
	waitFor(t, "a failed delivery", func() bool { return m.deliveries("webhook", "failed") > 0 })
	m.flushLogs(true)

	rec := httptest.NewRecorder()
	m.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	exported := map[string]bool{}
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, kind, _ := strings.Cut(name, " ")
			exported[name] = true
			if kind == "histogram" {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					exported[name+s] = true
				}
			}
		}
	}
	names := regexp.MustCompile(`\b(?:tlsfront|process|go)_[a-z0-9_]+`)
	for _, f := range []string{"alerts.yml", "alerts.test.yml", "grafana-dashboard.json"} {
		data, err := os.ReadFile(filepath.Join(promDir, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names.FindAllString(string(data), -1) {
			if !exported[n] {
				t.Errorf("%s uses %s, which the monitor does not export", f, n)
			}
		}
	}
}

// The example rules pass promtool's own checks and unit tests, where
// promtool is installed (on Debian: apt-get install prometheus).
func TestExampleRulesPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		testnet.Missing(t, "promtool", "apt-get install prometheus")
	}
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts.test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = promDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
