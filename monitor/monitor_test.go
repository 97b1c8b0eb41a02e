package monitor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/pki/pkitest"
	"github.com/tlsfront/tlsfront/internal/testnet"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// logBuffer is a JSON log sink safe for concurrent writers.
type logBuffer struct{ testnet.Buffer }

// records returns the JSON log records with the given message.
func (s *logBuffer) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		if line == "" {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

func failed(reason, ja4 string) *Handshake {
	return &Handshake{Listener: "mqtt", Client: netip.MustParseAddrPort("192.0.2.7:40000"), SNI: "broker.example",
		Offered: []uint16{0x0a0a, tls.VersionTLS12, tls.VersionTLS11}, Err: errors.New("tls: no cipher suite supported by both client and server"),
		Reason: reason, JA4: ja4}
}

func TestTopKKeepsHeavyHitter(t *testing.T) {
	for _, tc := range []struct {
		name     string
		capacity int
		noise    int
		heavy    int
	}{
		{"heavy among many distinct", 8, 500, 200},
		{"heavy arrives last", 4, 100, 60},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newTopK(tc.capacity)
			for i := range tc.noise {
				k.add(fmt.Sprintf("noise-%d", i), 1)
				if i%2 == 0 && tc.name == "heavy among many distinct" {
					k.add("heavy", 1)
				}
			}
			for range tc.heavy - min(tc.heavy, tc.noise/2*boolInt(tc.name == "heavy among many distinct")) {
				k.add("heavy", 1)
			}
			top := k.top(1)
			if len(top) != 1 || top[0].Key != "heavy" {
				t.Fatalf("top = %+v, want heavy first", top)
			}
			if len(k.h) > tc.capacity || len(k.idx) != len(k.h) {
				t.Fatalf("size %d/%d exceeds capacity %d", len(k.h), len(k.idx), tc.capacity)
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestWindowForgetsOldFailures(t *testing.T) {
	clk := newClock()
	m := newTestMonitor(t, Options{Now: clk.Now})
	for range 10 {
		m.Handshake(failed("no_shared_cipher", "t12d1207h1_aaaa_bbbb"))
	}
	m.Handshake(&Handshake{Listener: "mqtt", Version: tls.VersionTLS13})
	s := m.Status().Handshakes
	if s.Handshakes != 11 || len(s.Failures) != 1 || s.Failures[0].Count != 10 {
		t.Fatalf("summary = %+v", s)
	}
	if fp := s.Failures[0].TopFingerprints; len(fp) != 1 || fp[0].Key != "t12d1207h1_aaaa_bbbb" || fp[0].Count != 10 {
		t.Fatalf("fingerprints = %+v", fp)
	}
	clk.Add(windowSpan - bucketWidth)
	if got := m.Status().Handshakes.Handshakes; got != 11 {
		t.Fatalf("after %s: %d handshakes, want 11 still in window", windowSpan-bucketWidth, got)
	}
	clk.Add(2 * bucketWidth)
	if s := m.Status().Handshakes; s.Handshakes != 0 || len(s.Failures) != 0 {
		t.Fatalf("after the window: %+v, want empty", s)
	}
}

func TestHandshakeLogCollapsesBurst(t *testing.T) {
	clk := newClock()
	var logs logBuffer
	m := newTestMonitor(t, Options{Now: clk.Now, Log: slog.New(slog.NewJSONHandler(&logs, nil)),
		HandshakeLogBurst: 3, HandshakeLogPeriod: time.Minute})
	for range 1000 {
		m.Handshake(failed("no_shared_cipher", "storm"))
	}
	m.Handshake(failed("no_shared_cipher", "someone-else"))
	lines := logs.records(t, "handshake failed")
	if len(lines) != 4 {
		t.Fatalf("%d handshake failed lines, want 3 of the storm and 1 of the other kind", len(lines))
	}
	for _, k := range []string{"reason", "client", "sni", "versions", "ja4"} {
		if lines[0][k] == nil || lines[0][k] == "" {
			t.Errorf("failure line lacks %s: %v", k, lines[0])
		}
	}
	if lines[0]["versions"] != "tls1.2,tls1.1" {
		t.Errorf("versions = %v, want GREASE dropped", lines[0]["versions"])
	}
	if n := len(logs.records(t, "handshake failures suppressed")); n != 0 {
		t.Fatalf("summary before the period ended: %d", n)
	}
	clk.Add(time.Minute)
	m.flushLogs(false)
	sum := logs.records(t, "handshake failures suppressed")
	if len(sum) != 1 || sum[0]["count"] != float64(997) || sum[0]["ja4"] != "storm" || sum[0]["over"] != "1m0s" {
		t.Fatalf("summaries = %v, want one for 997 storm failures over 1m0s", sum)
	}
	// The next period logs a fresh burst: a storm that goes on stays visible.
	m.Handshake(failed("no_shared_cipher", "storm"))
	if got := len(logs.records(t, "handshake failed")); got != 5 {
		t.Fatalf("%d lines after the period, want 5", got)
	}
}

// webhook is a loopback receiver counting notifications by key and status.
type webhook struct {
	srv   *httptest.Server
	mu    sync.Mutex
	got   []Notification
	fails atomic.Int32 // answer 503 this many more times
	down  atomic.Bool  // answer 503 while set
	tries atomic.Int32
}

func newWebhook(t *testing.T) *webhook {
	w := &webhook{}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.tries.Add(1)
		if w.down.Load() || w.fails.Add(-1) >= 0 {
			http.Error(rw, "try later", http.StatusServiceUnavailable)
			return
		}
		var n Notification
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &n); err != nil {
			t.Errorf("webhook body %q: %v", body, err)
		}
		if n.Key == "" { // a Slack body
			var s struct{ Text string }
			json.Unmarshal(body, &s)
			n.Key, n.Summary = "slack", s.Text
		}
		w.mu.Lock()
		w.got = append(w.got, n)
		w.mu.Unlock()
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhook) count(key, status string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, x := range w.got {
		if (key == "" || x.Key == key) && (status == "" || x.Status == status) {
			n++
		}
	}
	return n
}

// runMonitor runs m until the test ends.
func runMonitor(t *testing.T, m *Monitor) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestSlackBody(t *testing.T) {
	wh := newWebhook(t)
	m := newTestMonitor(t, Options{Alerts: AlertOptions{Slack: wh.srv.URL}})
	runMonitor(t, m)
	m.Reloaded("main", errors.New("broken"))
	waitFor(t, "slack message", func() bool { return wh.count("slack", "") == 1 })
	wh.mu.Lock()
	text := wh.got[0].Summary
	wh.mu.Unlock()
	if !strings.Contains(text, "reload/main") || !strings.Contains(text, "broken") {
		t.Fatalf("slack text = %q", text)
	}
}

func TestEvaluateRaisesConditions(t *testing.T) {
	ca := pkitest.NewCA(t)
	for _, tc := range []struct {
		name  string
		setup func(m *Monitor, clk *clock)
		want  []string
	}{
		{"expiry within both thresholds", func(m *Monitor, clk *clock) {}, []string{"expiry/soon/21d", "expiry/soon/7d"}},
		{"failure ratio over threshold", func(m *Monitor, clk *clock) {
			for range 60 {
				m.Handshake(failed("unsupported_version", "old-device"))
			}
			for range 40 {
				m.Handshake(&Handshake{Listener: "mqtt", Version: tls.VersionTLS13})
			}
		}, []string{"expiry/soon/21d", "expiry/soon/7d", "handshake_failures/unsupported_version"}},
		{"failures under the minimum count", func(m *Monitor, clk *clock) {
			for range 10 {
				m.Handshake(failed("unsupported_version", "old-device"))
			}
		}, []string{"expiry/soon/21d", "expiry/soon/7d"}},
		{"refusal spike", func(m *Monitor, clk *clock) {
			for range 100 {
				m.Refused("mqtt", "client_rate")
			}
		}, []string{"expiry/soon/21d", "expiry/soon/7d", "refusals/client_rate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			leaf := ca.Leaf(pki.Options{NotAfter: clk.Now().Add(5 * 24 * time.Hour)})
			m := newTestMonitor(t, Options{Now: clk.Now, Certificates: func() []Certificate {
				return []Certificate{{ID: "soon", Chain: []*x509.Certificate{leaf.Cert, ca.Intermediate.Cert, ca.Root.Cert}}}
			}})
			tc.setup(m, clk)
			m.evaluate()
			var got []string
			for _, a := range m.alerts.firing() {
				got = append(got, a.Key)
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("firing %v, want %v", got, tc.want)
			}
			// Once the window has passed, the rate conditions resolve.
			clk.Add(windowSpan + bucketWidth)
			m.evaluate()
			for _, a := range m.alerts.firing() {
				if !strings.HasPrefix(a.Key, "expiry/") {
					t.Errorf("%s still firing after the window", a.Key)
				}
			}
		})
	}
}

// tlsServer serves leaf+intermediate on loopback until the test ends.
func tlsServer(t *testing.T, ca *pkitest.CA, leaf *pki.Cert) string {
	t.Helper()
	cert := tls.Certificate{Certificate: [][]byte{leaf.DER, ca.Intermediate.DER}, PrivateKey: leaf.Key}
	ln := tls.NewListener(testnet.Listen(t), &tls.Config{Certificates: []tls.Certificate{cert}})
	testnet.Serve(t, ln, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.(*tls.Conn).Handshake()
	})
	return ln.Addr().String()
}

func TestProbe(t *testing.T) {
	ca := pkitest.NewCA(t)
	other := pkitest.NewCA(t)
	addr := tlsServer(t, ca, ca.Leaf(pki.Options{}))
	for _, tc := range []struct {
		name    string
		roots   *x509.CertPool
		names   []string
		wantOK  bool
		wantErr string
	}{
		{"trusted chain", ca.Pool(), []string{"localhost", "127.0.0.1"}, true, ""},
		{"root clients lack", other.Pool(), []string{"localhost"}, false, "certificate signed by unknown authority"},
		{"name not covered", ca.Pool(), []string{"elsewhere.example"}, false, "not elsewhere.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestMonitor(t, Options{
				ProbeTargets: func() []ProbeTarget { return []ProbeTarget{{Listener: "mqtt", Address: addr, Names: tc.names}} },
				ProbeRoots:   func() (*x509.CertPool, error) { return tc.roots, nil },
				ProbeTimeout: 5 * time.Second,
			})
			m.probeRound(context.Background())
			res := m.ProbeResults()
			if len(res) != len(tc.names) {
				t.Fatalf("%d results, want %d", len(res), len(tc.names))
			}
			for _, r := range res {
				if r.OK != tc.wantOK || !strings.Contains(r.Error, tc.wantErr) {
					t.Fatalf("result %+v, want ok=%v error containing %q", r, tc.wantOK, tc.wantErr)
				}
				if r.OK && r.Serial == "" {
					t.Fatalf("no serial recorded: %+v", r)
				}
			}
			if err := m.Ready(); (err == nil) != tc.wantOK {
				t.Fatalf("Ready() = %v, want ok=%v", err, tc.wantOK)
			}
			firing := m.alerts.firing()
			if (len(firing) == 0) != tc.wantOK {
				t.Fatalf("alerts %+v, want firing=%v", firing, !tc.wantOK)
			}
		})
	}
}

func TestMetricsExposition(t *testing.T) {
	ca := pkitest.NewCA(t)
	leaf := ca.Leaf(pki.Options{DNSNames: []string{"a.example", "b.example"}})
	m := newTestMonitor(t, Options{Certificates: func() []Certificate {
		return []Certificate{{ID: "main", Chain: []*x509.Certificate{leaf.Cert, ca.Intermediate.Cert, ca.Root.Cert}}}
	}})
	for i := range 30 {
		m.Handshake(failed("no_shared_cipher", fmt.Sprintf("fp%02d", i)))
		m.Handshake(failed("no_shared_cipher", "fp-hot"))
	}
	m.Handshake(&Handshake{Listener: "mqtt", Version: tls.VersionTLS13})
	m.Refused("mqtt", "client_rate")
	m.ACMEEvent("obtained", []string{"a.example"}, nil)
	m.ACMEEvent("bogus", []string{"a.example"}, nil)
	m.ConnOpened("mqtt")
	m.ConnClosed("mqtt", 100, 2000)
	m.BackendDial("mqtt", "127.0.0.1:1883", 2*time.Millisecond, errors.New("refused"))
	m.Reloaded("main", nil)

	rec := httptest.NewRecorder()
	m.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`tlsfront_handshakes_total{listener="mqtt",version="tls1.2"} 60`,
		`tlsfront_handshakes_total{listener="mqtt",version="tls1.3"} 1`,
		`tlsfront_handshake_failures_total{listener="mqtt",reason="no_shared_cipher",version="tls1.2"} 60`,
		`tlsfront_handshake_failure_fingerprints{ja4="fp-hot"} 30`,
		`tlsfront_handshake_failure_fingerprints{ja4="other"} 11`,
		`tlsfront_certificate_not_after_timestamp_seconds{cert="main",cn="a.example",names="a.example,b.example",position="0"}`,
		`tlsfront_certificate_expiry_seconds{cert="main",cn="tlsfront test root",names="",position="2"}`,
		`tlsfront_limit_refusals_total{limit="client_rate",listener="mqtt"} 1`,
		`tlsfront_acme_events_total{event="obtained"} 1`,
		`tlsfront_acme_events_total{event="other"} 1`,
		`tlsfront_connections_open{listener="mqtt"} 0`,
		`tlsfront_bytes_total{direction="to_client",listener="mqtt"} 2000`,
		`tlsfront_backend_dial_errors_total{backend="127.0.0.1:1883",listener="mqtt"} 1`,
		`tlsfront_backend_dial_duration_seconds_bucket{backend="127.0.0.1:1883",listener="mqtt",le="0.0025"} 1`,
		`tlsfront_certificate_reloads_total{cert="main"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if n := strings.Count(body, "tlsfront_handshake_failure_fingerprints{"); n != fpExported+1 {
		t.Errorf("%d fingerprint series, want %d (top + other)", n, fpExported+1)
	}
	if t.Failed() {
		t.Log(body)
	}
}

func TestStatusHandler(t *testing.T) {
	ca := pkitest.NewCA(t)
	leaf := ca.Leaf(pki.Options{})
	m := newTestMonitor(t, Options{
		Certificates: func() []Certificate {
			return []Certificate{{ID: "main", Chain: []*x509.Certificate{leaf.Cert, ca.Intermediate.Cert, ca.Root.Cert}, CertFile: "/etc/x/cert.pem"}}
		},
		Listeners:  func() []Listener { return []Listener{{Name: "mqtt", Kind: "tcp", Address: "127.0.0.1:8883"}} },
		LimitStats: func() any { return map[string]int{"open": 3} },
	})
	m.Handshake(failed("no_shared_cipher", "<script>fp</script>"))
	for _, tc := range []struct {
		name, query, accept, wantType string
	}{
		{"json by query", "?format=json", "", "application/json"},
		{"json by accept", "", "application/json", "application/json"},
		{"html", "", "text/html", "text/html; charset=utf-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/status"+tc.query, nil)
			req.Header.Set("Accept", tc.accept)
			rec := httptest.NewRecorder()
			m.StatusHandler().ServeHTTP(rec, req)
			if ct := rec.Header().Get("Content-Type"); ct != tc.wantType {
				t.Fatalf("content type %q, want %q", ct, tc.wantType)
			}
			body := rec.Body.String()
			if tc.wantType == "application/json" {
				var st Status
				if err := json.Unmarshal([]byte(body), &st); err != nil {
					t.Fatal(err)
				}
				if len(st.Certificates) != 1 || len(st.Certificates[0].Chain) != 3 || st.Certificates[0].OCSP != "n/a" ||
					st.Certificates[0].DaysLeft < 80 || st.Listeners[0].Address != "127.0.0.1:8883" ||
					len(st.Handshakes.Failures) != 1 || st.Limits.Stats == nil {
					t.Fatalf("status = %s", body)
				}
				return
			}
			if strings.Contains(body, "<script>fp") || !strings.Contains(body, "&lt;script&gt;fp") {
				t.Fatal("fingerprint not escaped in HTML")
			}
			for _, want := range []string{"tlsfront test intermediate", "/etc/x/cert.pem", "no_shared_cipher", "127.0.0.1:8883",
				"<td>open</td><td>3</td>", "(trusted, not served)", "<svg", "Handshakes per minute"} {
				if !strings.Contains(body, want) && !strings.Contains(body, template_escape(want)) {
					t.Errorf("html lacks %q", want)
				}
			}
		})
	}
}

func template_escape(s string) string {
	return strings.NewReplacer(`"`, "&#34;").Replace(s)
}

func newTestMonitor(t testing.TB, o Options) *Monitor {
	t.Helper()
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// deliveries counts notifications to sink with outcome, for tests.
func (m *Monitor) deliveries(sink, outcome string) int {
	return int(counterValue(m.met.deliveries.WithLabelValues(sink, outcome)))
}

func BenchmarkHandshake(b *testing.B) {
	m := newTestMonitor(b, Options{HandshakeLogBurst: 1})
	ok := &Handshake{Listener: "mqtt", Client: netip.MustParseAddrPort("192.0.2.7:40000"), SNI: "broker.example", Version: tls.VersionTLS13, JA4: "t13d1516h2_8daaf6152771_b0da82dd1658"}
	bad := failed("no_shared_cipher", "t12d1207h1_aaaa_bbbb")
	m.Handshake(bad) // the one logged line
	for _, tc := range []struct {
		name string
		h    *Handshake
	}{{"success", ok}, {"failure_suppressed", bad}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m.Handshake(tc.h)
			}
		})
	}
	b.Run("failure_parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.Handshake(bad)
			}
		})
	})
}

var _ = net.IPv4

func counterValue(c interface{ Write(*dto.Metric) error }) float64 {
	var d dto.Metric
	c.Write(&d)
	return d.GetCounter().GetValue()
}
