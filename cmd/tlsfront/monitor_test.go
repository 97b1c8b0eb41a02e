package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/pki/pkitest"
	"github.com/tlsfront/tlsfront/internal/testnet"
	"github.com/tlsfront/tlsfront/monitor"
	"github.com/tlsfront/tlsfront/report"
)

// monFixture is a CA, a leaf for localhost/127.0.0.1 on disk, and a
// plaintext backend that accepts and drains.
type monFixture struct {
	ca      *pkitest.CA
	files   pkitest.Files
	root    string
	backend string
}

func newMonFixture(t *testing.T) *monFixture {
	t.Helper()
	ca := pkitest.NewCA(t)
	f := &monFixture{ca: ca, files: ca.WriteLeaf(ca.Leaf(pki.Options{})), root: ca.RootFile()}
	ln := testnet.Listen(t)
	testnet.Serve(t, ln, func(c net.Conn) { io.Copy(io.Discard, c) })
	f.backend = ln.Addr().String()
	return f
}

func (f *monFixture) args(extra ...string) []string {
	return append([]string{"--listen", "127.0.0.1:0", "--backend", f.backend, "--kind", "tcp",
		"--cert", f.files.Cert, "--key", f.files.Key, "--trust-ca", f.root}, extra...)
}

func adminGet(t *testing.T, ta *testApp, path, accept string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+ta.Admin()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
}

// metricSum adds the samples of /metrics lines starting with prefix.
func metricSum(t *testing.T, ta *testApp, prefix string) float64 {
	t.Helper()
	_, _, body := adminGet(t, ta, "/metrics", "")
	var sum float64
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

func eventually(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
}

// failHandshakes makes n real handshakes that fail on the server side: the
// client does not trust the served chain and aborts with an alert.
func failHandshakes(t *testing.T, addr string, n int) {
	t.Helper()
	stranger := pkitest.NewCA(t)
	for range n {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, stranger.ClientConfig("localhost"))
		if err == nil {
			c.Close()
			t.Fatal("handshake with an untrusted chain succeeded")
		}
	}
}

func TestMonitorMetricsAndLogsForFailedHandshakes(t *testing.T) {
	f := newMonFixture(t)
	ta := startApp(t, f.args("--probe-disabled", "--handshake-log-burst", "2", "--handshake-log-period", "1s")...)
	addr := ta.Addr("main")

	const n = 10
	failHandshakes(t, addr, n)
	prefix := `tlsfront_handshake_failures_total{listener="main",reason="`
	eventually(t, "failures in /metrics", 10*time.Second, func() bool { return metricSum(t, ta, prefix) >= n })
	_, _, body := adminGet(t, ta, "/metrics", "")
	if !regexp.MustCompile(`tlsfront_handshake_failures_total\{listener="main",reason="[a-z_]+",version="tls1\.3"\} 10`).MatchString(body) {
		t.Errorf("no failure series by reason and version in:\n%s", grepLines(body, "tlsfront_handshake"))
	}
	if !strings.Contains(body, `tlsfront_handshake_failure_fingerprints{ja4=`) || !strings.Contains(body, `tlsfront_certificate_expiry_seconds{cert="main",cn="localhost",names="localhost,127.0.0.1",position="0"}`) {
		t.Errorf("fingerprint or certificate series missing:\n%s", body)
	}

	// A good handshake counts as a handshake, not a failure.
	c, err := tls.Dial("tcp", addr, f.ca.ClientConfig("localhost"))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	eventually(t, "the good handshake", 10*time.Second, func() bool {
		return metricSum(t, ta, `tlsfront_handshakes_total{listener="main"`) >= n+1
	})
	if got := metricSum(t, ta, prefix); got != n {
		t.Errorf("failures = %v after a good handshake, want %d", got, n)
	}

	// Ten failures of one kind: two lines, then one summary of eight.
	ta.WaitLog(`msg="handshake failures suppressed" component=monitor count=8`, 10*time.Second)
	logs := ta.Logs()
	if got := strings.Count(logs, `msg="handshake failed"`); got != 2 {
		t.Errorf("%d failure lines, want 2 (the burst)", got)
	}
	line := grepLines(logs, `msg="handshake failed"`)
	for _, want := range []string{"reason=", "client=127.0.0.1:", "sni=localhost", "versions=tls1.3,tls1.2", "ja4="} {
		if !strings.Contains(line, want) {
			t.Errorf("failure line lacks %s: %s", want, line)
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestMonitorStatus(t *testing.T) {
	f := newMonFixture(t)
	ta := startApp(t, f.args("--probe-interval", "1h")...)
	failHandshakes(t, ta.Addr("main"), 3)

	var st monitor.Status
	eventually(t, "probe results and failures in /status", 10*time.Second, func() bool {
		code, ct, body := adminGet(t, ta, "/status?format=json", "")
		if code != http.StatusOK || ct != "application/json" {
			t.Fatalf("status answered %d %s", code, ct)
		}
		st = monitor.Status{}
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
		return len(st.Probes) == 2 && len(st.Handshakes.Failures) > 0 && st.Handshakes.Failures[0].Count >= 3
	})
	if len(st.Listeners) != 1 || st.Listeners[0].Address != ta.Addr("main") || st.Listeners[0].Kind != "tcp" {
		t.Errorf("listeners = %+v, want main at %s", st.Listeners, ta.Addr("main"))
	}
	if len(st.Certificates) != 1 {
		t.Fatalf("certificates = %+v", st.Certificates)
	}
	cs := st.Certificates[0]
	if cs.ID != "main" || len(cs.Chain) != 3 || cs.Chain[1].Subject != "CN=tlsfront test intermediate,O=tlsfront test" ||
		cs.CertFile != f.files.Cert || cs.KeyFile != f.files.Key || !cs.LastReload.OK || cs.OCSP != "n/a" || cs.DaysLeft < 85 {
		t.Errorf("certificate = %+v", cs)
	}
	wantSerial := fmt.Sprintf("%X", f.files.Leaf.Cert.SerialNumber)
	for _, p := range cs.Probes {
		if !p.OK || p.Serial != wantSerial {
			t.Errorf("probe %+v, want ok with serial %s", p, wantSerial)
		}
	}
	if (st.Limits.Stats == nil) != (ta.app.limiter == nil) {
		t.Errorf("limit stats %v with limiter %v", st.Limits.Stats, ta.app.limiter)
	}

	code, ct, page := adminGet(t, ta, "/status", "text/html")
	if code != http.StatusOK || !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("html status answered %d %s", code, ct)
	}
	for _, want := range []string{"<h1>tlsfront status</h1>", "main", "tlsfront test intermediate", wantSerial, ta.Addr("main"), "days left"} {
		if !strings.Contains(page, want) {
			t.Errorf("html lacks %q", want)
		}
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "http://") && !strings.Contains(page, "/metrics") {
		t.Error("html page loads something external")
	}

	// A reload triggers a probe round at once, whatever the interval.
	before := metricSum(t, ta, "tlsfront_probe_rounds_total")
	ta.app.rep.Reloaded(report.Reload{ID: "main", Trigger: "test"})
	eventually(t, "a probe round after the reload", 10*time.Second, func() bool {
		return metricSum(t, ta, "tlsfront_probe_rounds_total") > before
	})
	if got := metricSum(t, ta, `tlsfront_certificate_reloads_total{cert="main"}`); got != 1 {
		t.Errorf("reloads = %v, want 1", got)
	}
}

// alertSink is a loopback webhook that records what it gets.
type alertSink struct {
	mu  sync.Mutex
	got []monitor.Notification
}

func (s *alertSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var n monitor.Notification
	if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.got = append(s.got, n)
	s.mu.Unlock()
}

func (s *alertSink) count(key, status string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, x := range s.got {
		if x.Key == key && x.Status == status {
			n++
		}
	}
	return n
}

func TestMonitorProbeCatchesUnverifiableChain(t *testing.T) {
	f := newMonFixture(t)
	sink := &alertSink{}
	hook := httptest.NewServer(sink)
	defer hook.Close()
	// The clients' trust store lacks our root: what old devices with an
	// outdated bundle see.
	probeCA := filepath.Join(t.TempDir(), "clients.pem")
	if err := os.WriteFile(probeCA, pkitest.NewCA(t).Root.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	ta := startApp(t, f.args("--probe-interval", "100ms", "--probe-ca", probeCA, "--alert-webhook", hook.URL, "--alert-cooldown", "1h")...)

	key := "probe/main/localhost"
	eventually(t, "the probe alert", 10*time.Second, func() bool { return sink.count(key, "firing") == 1 })
	code, _, body := adminGet(t, ta, "/readyz", "")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "unknown authority") {
		t.Fatalf("/readyz = %d %q, want 503 naming the unknown authority", code, body)
	}
	if v := metricSum(t, ta, `tlsfront_probe_success{listener="main",name="localhost"}`); v != 0 {
		t.Errorf("probe_success = %v, want 0", v)
	}

	// The clients get the right root: the probe passes, the alert resolves.
	if err := os.WriteFile(probeCA, f.ca.Root.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the resolution", 10*time.Second, func() bool { return sink.count(key, "resolved") == 1 })
	eventually(t, "/readyz back to 200", 10*time.Second, func() bool {
		code, _, _ := adminGet(t, ta, "/readyz", "")
		return code == http.StatusOK
	})
	// More rounds pass; nothing more is sent for this key.
	rounds := metricSum(t, ta, "tlsfront_probe_rounds_total")
	eventually(t, "three more probe rounds", 10*time.Second, func() bool {
		return metricSum(t, ta, "tlsfront_probe_rounds_total") >= rounds+3
	})
	if f, r := sink.count(key, "firing"), sink.count(key, "resolved"); f != 1 || r != 1 {
		t.Fatalf("webhook got %d firing and %d resolved for %s, want exactly 1 and 1", f, r, key)
	}
	ta.WaitLog(`msg="alert firing" component=monitor key=probe/main/localhost`, time.Second)
	ta.WaitLog(`msg="alert resolved" component=monitor key=probe/main/localhost`, time.Second)
}

func TestMonitorConfig(t *testing.T) {
	f := newMonFixture(t)
	for _, tc := range []struct {
		name    string
		yaml    string
		args    []string
		wantErr string
		check   func(t *testing.T, c monitorSection)
	}{
		{name: "defaults", check: func(t *testing.T, c monitorSection) {
			if c.ProbeInterval != time.Minute || c.Alerts.Cooldown != time.Hour || c.ExpiryWarn.String() != "21d,7d" || c.FailureRatio != 0.1 || c.FailureMin != 50 {
				t.Errorf("defaults = %+v", c)
			}
		}},
		{name: "yaml with days", yaml: "monitor:\n  expiry_warn: [30d, 36h]\n  probe_names: [a.example]\n  alert_slack: https://hooks.slack.example/x\n", check: func(t *testing.T, c monitorSection) {
			if len(c.ExpiryWarn) != 2 || c.ExpiryWarn[0] != 30*24*time.Hour || c.ExpiryWarn[1] != 36*time.Hour || c.ProbeNames[0] != "a.example" {
				t.Errorf("parsed %+v", c)
			}
		}},
		{name: "flags win", yaml: "monitor:\n  probe_interval: 5m\n", args: []string{"--probe-interval", "30s", "--probe-names", "a.example, b.example", "--expiry-warn", "14d"}, check: func(t *testing.T, c monitorSection) {
			if c.ProbeInterval != 30*time.Second || len(c.ProbeNames) != 2 || c.ExpiryWarn.String() != "14d" {
				t.Errorf("parsed %+v", c)
			}
		}},
		{name: "bad webhook", args: []string{"--alert-webhook", "ftp://x"}, wantErr: "monitor.alert_webhook: "},
		{name: "bad ratio", args: []string{"--failure-ratio", "2"}, wantErr: "monitor.failure_ratio: "},
		{name: "bad threshold", yaml: "monitor:\n  expiry_warn: [-1d]\n", wantErr: "monitor.expiry_warn[0]: "},
		{name: "wildcard probe name", args: []string{"--probe-names", "*.example"}, wantErr: "monitor.probe_names[0]: "},
		{name: "too fast", args: []string{"--probe-interval", "1ms"}, wantErr: "monitor.probe_interval: "},
		{name: "bad days", args: []string{"--expiry-warn", "3x"}, wantErr: "not a duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := f.args(tc.args...)
			if tc.yaml != "" {
				p := filepath.Join(t.TempDir(), "c.yaml")
				os.WriteFile(p, []byte(tc.yaml), 0o644)
				args = append([]string{"--config", p}, args...)
			}
			cfg, err := parseConfig("tlsfront", args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, cfg.Monitor)
		})
	}
}
