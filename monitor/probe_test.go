package monitor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/pki/pkitest"
	"github.com/tlsfront/tlsfront/internal/testnet"
)

// manyNamesServer serves a wildcard certificate for *.probe.test on
// loopback, except for the names in broken, which get a certificate for
// another name. It records the ALPN values clients offer.
type manyNamesServer struct {
	addr   string
	mu     sync.Mutex
	broken map[string]bool
	alpn   atomic.Value // []string of the last hello
}

func newManyNamesServer(t *testing.T, ca *pkitest.CA) *manyNamesServer {
	t.Helper()
	good := ca.Leaf(pki.Options{DNSNames: []string{"*.probe.test"}})
	wrong := ca.Leaf(pki.Options{DNSNames: []string{"elsewhere.test"}})
	goodCert := &tls.Certificate{Certificate: [][]byte{good.DER, ca.Intermediate.DER}, PrivateKey: good.Key}
	wrongCert := &tls.Certificate{Certificate: [][]byte{wrong.DER, ca.Intermediate.DER}, PrivateKey: wrong.Key}
	s := &manyNamesServer{broken: map[string]bool{}}
	cfg := &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		s.alpn.Store(append([]string(nil), h.SupportedProtos...))
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.broken[h.ServerName] {
			return wrongCert, nil
		}
		return goodCert, nil
	}}
	ln := tls.NewListener(testnet.Listen(t), cfg)
	testnet.Serve(t, ln, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.(*tls.Conn).Handshake()
	})
	s.addr = ln.Addr().String()
	return s
}

func (s *manyNamesServer) breakName(n string, broken bool) {
	s.mu.Lock()
	s.broken[n] = broken
	s.mu.Unlock()
}

func probeNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("n%04d.probe.test", i)
	}
	return out
}

// 2,000 names, one broken near the end of the rotation: found within the
// stated bound of ceil(2000/256) = 8 rounds, every name checked in those
// rounds, and /status stays small.
func TestProbeRotationFindsBrokenName(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 handshakes")
	}
	ca := pkitest.NewCA(t)
	srv := newManyNamesServer(t, ca)
	names := probeNames(2000)
	broken := names[1990]
	srv.breakName(broken, true)
	const budget = 256
	m := newTestMonitor(t, Options{
		ProbeTargets: func() []ProbeTarget { return []ProbeTarget{{Listener: "mqtt", Address: srv.addr, Names: names}} },
		ProbeRoots:   func() (*x509.CertPool, error) { return ca.Pool(), nil },
		ProbeTimeout: 30 * time.Second, // generous: 2,000 handshakes on a loaded machine
		ProbeBudget:  budget,
	})
	bound := ceilDiv(len(names), budget)
	found := 0
	for round := 1; round <= bound; round++ {
		m.probeRound(context.Background())
		if found == 0 && m.Ready() != nil {
			found = round
		}
	}
	if found == 0 {
		t.Fatalf("broken name not found within %d rounds", bound)
	}
	cov := m.Status().ProbeCoverage
	if cov.Names != 2000 || cov.Checked != 2000 || cov.Unchecked != 0 || cov.Failing != 1 || cov.Passing != 1999 ||
		cov.RoundsPerPass != 8 || cov.WorstRoundsPerPass != 16 {
		t.Fatalf("coverage after %d rounds = %+v", bound, cov)
	}
	if len(cov.FailingNames) != 1 || cov.FailingNames[0].Name != broken || cov.FailingNames[0].Cause != "name_mismatch" {
		t.Fatalf("failing = %+v", cov.FailingNames)
	}
	err := m.Ready()
	if err == nil || !strings.Contains(err.Error(), broken) || !strings.Contains(err.Error(), "name_mismatch") {
		t.Fatalf("Ready() = %v, want the broken name and cause", err)
	}
	firing := m.alerts.firing()
	if len(firing) != 1 || firing[0].Key != "probe/mqtt/"+broken {
		t.Fatalf("alerts = %+v", firing)
	}
	if got := srv.alpn.Load().([]string); len(got) != 1 || got[0] != ProbeALPN {
		t.Fatalf("probe offered ALPN %v, want [%s]", got, ProbeALPN)
	}
	rec := httptest.NewRecorder()
	m.StatusHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/status?format=json", nil))
	if rec.Body.Len() > 64<<10 {
		t.Fatalf("/status is %d bytes for 2000 names", rec.Body.Len())
	}
	var st Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Probes) != 1 || st.Probes[0].Name != broken {
		t.Fatalf("status lists %d probes, want only the failing one", len(st.Probes))
	}
	mrec := httptest.NewRecorder()
	m.MetricsHandler().ServeHTTP(mrec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{`tlsfront_probe_names{listener="mqtt",result="ok"} 1999`, `tlsfront_probe_names{listener="mqtt",result="failed"} 1`,
		`tlsfront_probe_names{listener="mqtt",result="unchecked"} 0`} {
		if !strings.Contains(mrec.Body.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	t.Logf("found in round %d of at most %d; /status %d bytes", found, bound, rec.Body.Len())

	// Fixed: the next round re-probes the failing name first and resolves.
	srv.breakName(broken, false)
	m.probeRound(context.Background())
	if err := m.Ready(); err != nil {
		t.Fatalf("Ready() after the fix = %v", err)
	}
	if f := m.alerts.firing(); len(f) != 0 {
		t.Fatalf("still firing: %+v", f)
	}
}

// Names failing for one cause make one alert listing them, which keeps
// its key while names join and leave.
func TestProbeAlertGroupsNames(t *testing.T) {
	ca := pkitest.NewCA(t)
	srv := newManyNamesServer(t, ca)
	names := probeNames(40)
	m := newTestMonitor(t, Options{
		ProbeTargets: func() []ProbeTarget { return []ProbeTarget{{Listener: "mqtt", Address: srv.addr, Names: names}} },
		ProbeRoots:   func() (*x509.CertPool, error) { return ca.Pool(), nil },
		ProbeTimeout: 5 * time.Second,
	})
	for _, n := range names[5:20] {
		srv.breakName(n, true)
	}
	m.probeRound(context.Background())
	firing := m.alerts.firing()
	if len(firing) != 1 {
		t.Fatalf("%d alerts, want one for the cause: %+v", len(firing), firing)
	}
	key := firing[0].Key
	if key != "probe/mqtt/"+names[5] || !strings.Contains(firing[0].Summary, "15 names") ||
		!strings.Contains(firing[0].Summary, "and 5 more") || !strings.Contains(firing[0].Summary, "name_mismatch") {
		t.Fatalf("alert = %+v", firing[0])
	}
	// The first name recovers and another breaks: same alert, same key.
	srv.breakName(names[5], false)
	srv.breakName(names[30], true)
	m.probeRound(context.Background())
	firing = m.alerts.firing()
	if len(firing) != 1 || firing[0].Key != key || !strings.Contains(firing[0].Summary, "15 names") {
		t.Fatalf("after a change: %+v, want still %s with 15 names", firing, key)
	}
}

// The same through Run, on its own clock: with a 20 ms interval, the
// broken last name of 300 is found by round ceil(300/32) = 10 at the
// latest, and its failure is kept with the round that found it.
func TestProbeRunRotates(t *testing.T) {
	ca := pkitest.NewCA(t)
	srv := newManyNamesServer(t, ca)
	names := probeNames(300)
	broken := names[len(names)-1]
	srv.breakName(broken, true)
	const budget = 32
	m := newTestMonitor(t, Options{
		ProbeTargets:  func() []ProbeTarget { return []ProbeTarget{{Listener: "mqtt", Address: srv.addr, Names: names}} },
		ProbeRoots:    func() (*x509.CertPool, error) { return ca.Pool(), nil },
		ProbeTimeout:  30 * time.Second,
		ProbeInterval: 20 * time.Millisecond,
		ProbeBudget:   budget,
	})
	runMonitor(t, m)
	waitFor(t, "the broken name", func() bool { return m.Ready() != nil })
	m.mu.Lock()
	r := m.probes[probeKey{"mqtt", broken}]
	m.mu.Unlock()
	if bound := uint64(ceilDiv(len(names), budget)); r.OK || r.failRound == 0 || r.failRound > bound {
		t.Fatalf("found in round %d, want at most %d: %+v", r.failRound, bound, r)
	}
	waitFor(t, "a full pass", func() bool { return m.Status().ProbeCoverage.Unchecked == 0 })
}

func TestProbeCause(t *testing.T) {
	ca := pkitest.NewCA(t)
	other := pkitest.NewCA(t)
	srv := newManyNamesServer(t, ca)
	// An HTTP listener that does not know the probe's ALPN value.
	leaf := ca.Leaf(pki.Options{DNSNames: []string{"a.probe.test"}})
	h2 := tls.NewListener(testnet.Listen(t), &tls.Config{NextProtos: []string{"h2", "http/1.1"},
		Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.DER, ca.Intermediate.DER}, PrivateKey: leaf.Key}}})
	testnet.Serve(t, h2, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.(*tls.Conn).Handshake()
	})
	closed := testnet.Listen(t)
	closedAddr := closed.Addr().String()
	closed.Close()
	for _, tc := range []struct {
		name, addr, sni string
		roots           *x509.CertPool
		want            string
	}{
		{"unknown authority", srv.addr, "a.probe.test", other.Pool(), "unknown_authority"},
		{"name mismatch", srv.addr, "a.other.test", ca.Pool(), "name_mismatch"},
		{"nothing listening", closedAddr, "a.probe.test", ca.Pool(), "connect"},
		{"listener refuses the probe's ALPN", h2.Addr().String(), "a.probe.test", ca.Pool(), "alpn_refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestMonitor(t, Options{ProbeTimeout: 5 * time.Second})
			r := m.probe(context.Background(), ProbeTarget{Listener: "l", Address: tc.addr}, tc.sni, tc.roots)
			if r.OK || r.Cause != tc.want {
				t.Fatalf("result %+v, want cause %s", r, tc.want)
			}
		})
	}
}

func TestReadyFailsOnExpiredCertificate(t *testing.T) {
	ca := pkitest.NewCA(t)
	clk := &clock{t: time.Now()} // the test CA is valid from now
	leaf := ca.Leaf(pki.Options{DNSNames: []string{"mqtt.example.com"}, NotBefore: clk.Now().Add(-48 * time.Hour), NotAfter: clk.Now().Add(time.Hour)})
	m := newTestMonitor(t, Options{Now: clk.Now, Certificates: func() []Certificate {
		return []Certificate{{ID: "main", Chain: []*x509.Certificate{leaf.Cert, ca.Intermediate.Cert, ca.Root.Cert}}}
	}})
	if err := m.Ready(); err != nil {
		t.Fatalf("Ready() before expiry = %v", err)
	}
	clk.Add(2 * time.Hour)
	err := m.Ready()
	if err == nil || !strings.Contains(err.Error(), "certificate main") || !strings.Contains(err.Error(), "expired") ||
		!strings.Contains(err.Error(), "mqtt.example.com") {
		t.Fatalf("Ready() after expiry = %v", err)
	}
}

func TestProbeResultJSON(t *testing.T) {
	r := ProbeResult{Listener: "l", Name: "n", OK: true, Latency: 1500 * time.Microsecond}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"latency_ms":1.5`) || strings.Contains(string(b), "Latency") {
		t.Fatalf("json = %s", b)
	}
	var back ProbeResult
	if err := json.Unmarshal(b, &back); err != nil || back.Latency != r.Latency || back.Name != "n" {
		t.Fatalf("round trip = %+v, %v", back, err)
	}
}
