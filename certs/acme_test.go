package certs_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/certs"
	"github.com/tlsfront/tlsfront/internal/pebbletest"
	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/pki/pkitest"
	"github.com/tlsfront/tlsfront/internal/testnet"
)

// events records ACME events and lets a test wait for one.
type events struct {
	mu     sync.Mutex
	seen   []event
	notify chan struct{}
}

type event struct {
	name  string
	names []string
	err   error
}

func newEvents() *events { return &events{notify: make(chan struct{}, 1)} }

func (e *events) record(name string, names []string, err error) {
	e.mu.Lock()
	e.seen = append(e.seen, event{name, names, err})
	e.mu.Unlock()
	select {
	case e.notify <- struct{}{}:
	default:
	}
}

// count returns how many events called name were seen for subject.
func (e *events) count(name, subject string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.seen {
		if ev.name == name && (subject == "" || strings.Join(ev.names, ",") == subject) {
			n++
		}
	}
	return n
}

// lastErr returns the error of the last event called name for subject.
func (e *events) lastErr(name, subject string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := len(e.seen) - 1; i >= 0; i-- {
		if ev := e.seen[i]; ev.name == name && strings.Join(ev.names, ",") == subject {
			return ev.err
		}
	}
	return nil
}

func (e *events) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var b strings.Builder
	for _, ev := range e.seen {
		fmt.Fprintf(&b, "  %s %v %v\n", ev.name, ev.names, ev.err)
	}
	return b.String()
}

// wait blocks until n events called name were seen for subject, failing
// the test at the deadline or on a failure event for subject.
func (e *events) wait(t *testing.T, name, subject string, n int, d time.Duration) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for e.count(name, subject) < n {
		if e.count(certs.EventFailed, subject)+e.count(certs.EventRenewFailed, subject) > 0 {
			t.Fatalf("failure while waiting for %s %s; events:\n%s", name, subject, e)
		}
		select {
		case <-e.notify:
		case <-deadline.C:
			t.Fatalf("no %s for %s within %v; events:\n%s", name, subject, d, e)
		}
	}
}

// testLog collects certmagic's warnings and errors and shows them if the
// test fails. It does not write to t: certmagic finishes some background
// work (a renewal a handshake queued, a lock release) after Stop, and
// t.Log after the test ends panics.
func testLog(t *testing.T) *slog.Logger {
	buf := &testnet.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("certmagic log:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// loopbackOnly is the on-demand "this host" check for tests: every name
// resolves to 127.0.0.1 and this host is 127.0.0.1, except names starting
// with "elsewhere." (198.51.100.7) and "nxdomain." (lookup error).
var loopbackOnly = certs.OnDemandOptions{
	RequireDNSToHost: true,
	Resolve: func(_ context.Context, name string) ([]netip.Addr, error) {
		switch {
		case strings.HasPrefix(name, "elsewhere."):
			return []netip.Addr{netip.MustParseAddr("198.51.100.7")}, nil
		case strings.HasPrefix(name, "nxdomain."):
			return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
		}
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	},
	HostAddrs: func() ([]netip.Addr, error) { return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil },
}

// acmeSetup is one tlsfront-like process: a TLS listener and a plain HTTP
// listener, both answering ACME challenges, and a pebble behind them.
type acmeSetup struct {
	acme   *certs.ACME
	pebble *pebble
	ev     *events
	tlsLn  net.Listener
}

type setupOptions struct {
	http, tls   bool // which challenges to offer
	alwaysValid bool
	validity    time.Duration
	ratio       float64
	checkEvery  time.Duration
	onDemand    *certs.OnDemandOptions
	countCA     bool
	// caFront, if set, puts a front of the test's making between the
	// ACME client and pebble and returns its directory URL.
	caFront func(*testing.T, *pebble) string
}

func newSetup(t *testing.T, o setupOptions) (*acmeSetup, string) {
	t.Helper()
	// Bound before pebble starts: its config names the ports it
	// validates on.
	httpLn, tlsLn := testnet.Listen(t), testnet.Listen(t)
	po := pebbletest.Options{AlwaysValid: o.alwaysValid, Validity: o.validity, HTTPPort: port(httpLn), TLSPort: port(tlsLn)}
	p := &pebble{Server: pebbletest.Start(t, po)}
	ca := p.DirectoryURL
	if o.countCA {
		ca = p.countingFront(t)
	}
	if o.caFront != nil {
		ca = o.caFront(t, p)
	}
	ev := newEvents()
	a, err := certs.NewACME(certs.ACMEOptions{
		CA:                 ca,
		Email:              "ops@tlsfront.test",
		CARoots:            p.Roots,
		Storage:            t.TempDir(),
		OnDemand:           o.onDemand,
		OnEvent:            ev.record,
		Log:                testLog(t),
		RenewalWindowRatio: o.ratio,
		RenewCheckInterval: o.checkEvery,
		DisableARI:         o.ratio > 0, // the ratio decides, not a fetched window
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{GetCertificate: a.GetCertificate}
	a.WrapTLSConfig(cfg)
	serveTLS(t, tlsLn, cfg)
	serveHTTP(t, httpLn, a.HTTPChallengeHandler(http.NotFoundHandler()))
	var ch certs.ChallengeAddrs
	if o.http {
		ch.HTTP = httpLn.Addr()
	}
	if o.tls {
		ch.TLS = tlsLn.Addr()
	}
	if err := a.Start(ch); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Stop)
	return &acmeSetup{acme: a, pebble: p, ev: ev, tlsLn: tlsLn}, ca
}

// manage starts management of names with a context cancelled at cleanup.
func (s *acmeSetup) manage(t *testing.T, names ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := s.acme.Manage(ctx, names); err != nil {
		t.Fatal(err)
	}
}

func TestACMEIssuesConfiguredName(t *testing.T) {
	for _, tc := range []struct {
		name      string
		http, tls bool
	}{
		{"http-01 validated by pebble", true, false},
		{"tls-alpn-01 validated by pebble", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newSetup(t, setupOptions{http: tc.http, tls: tc.tls})
			const name = "mqtt.tlsfront.test"
			s.manage(t, name)
			s.ev.wait(t, certs.EventObtained, name, 1, 30*time.Second)
			roots := s.pebble.IssuedRoots(t)
			leaf := waitServed(t, s.tlsLn.Addr(), name, roots, nil)
			if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != name {
				t.Fatalf("served names %v, want [%s]", leaf.DNSNames, name)
			}
			if n := s.ev.count(certs.EventObtaining, name); n != 1 {
				t.Errorf("%d obtaining events, want 1", n)
			}
		})
	}
}

// waitServed handshakes until a certificate for name that verifies
// against roots is served and, when not is set, has another serial.
func waitServed(t *testing.T, addr net.Addr, name string, roots *x509.CertPool, not *big.Int) *x509.Certificate {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		leaf, err := handshake(addr, name, roots)
		if err == nil && (not == nil || leaf.SerialNumber.Cmp(not) != 0) {
			return leaf
		}
		if time.Now().After(deadline) {
			t.Fatalf("no (new) certificate for %s served: last error %v", name, err)
		}
		<-tick.C
	}
}

func TestACMERenewsAndServesNewCertificate(t *testing.T) {
	// A one-hour certificate with a renewal window of nearly its whole
	// lifetime is due 0.36 s after issuance; checks run every 200 ms.
	s, _ := newSetup(t, setupOptions{http: true, alwaysValid: true, validity: time.Hour, ratio: 0.9999, checkEvery: 200 * time.Millisecond})
	const name = "renew.tlsfront.test"
	s.manage(t, name)
	s.ev.wait(t, certs.EventObtained, name, 1, 30*time.Second)
	roots := s.pebble.IssuedRoots(t)
	first := waitServed(t, s.tlsLn.Addr(), name, roots, nil)
	s.ev.wait(t, certs.EventRenewed, name, 1, 30*time.Second)
	second := waitServed(t, s.tlsLn.Addr(), name, roots, first.SerialNumber)
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("same serial after renewal")
	}
}

func TestACMEOnDemand(t *testing.T) {
	od := loopbackOnly
	od.Allow = []string{"*.devices.tlsfront.test", "exact.tlsfront.test"}
	s, _ := newSetup(t, setupOptions{http: true, tls: true, onDemand: &od, countCA: true})
	roots := s.pebble.IssuedRoots(t)

	for _, tc := range []struct {
		name    string
		sni     string
		wantErr error // from the refusal event
	}{
		{"outside the allow-list", "other.tlsfront.test", certs.ErrNotAllowed},
		{"wildcard is one label deep", "a.b.devices.tlsfront.test", certs.ErrNotAllowed},
		{"allowed but resolves elsewhere", "elsewhere.devices.tlsfront.test", &certs.NotHereError{}},
		{"allowed but does not resolve", "nxdomain.devices.tlsfront.test", &certs.NotHereError{}},
	} {
		t.Run("refused/"+tc.name, func(t *testing.T) {
			if _, err := handshake(s.tlsLn.Addr(), tc.sni, roots); err == nil {
				t.Fatal("handshake succeeded; want no certificate")
			}
			// The DNS check runs in the background: wait for its verdict.
			deadline := time.Now().Add(10 * time.Second)
			for s.ev.count(certs.EventRefused, tc.sni) == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("no refusal event; events:\n%s", s.ev)
				}
				select {
				case <-s.ev.notify:
				case <-time.After(50 * time.Millisecond):
				}
			}
			err := s.ev.lastErr(certs.EventRefused, tc.sni)
			var nh *certs.NotHereError
			if !errors.Is(err, tc.wantErr) && !(errors.As(tc.wantErr, &nh) && errors.As(err, &nh)) {
				t.Errorf("refused with %v, want %T %v", err, tc.wantErr, tc.wantErr)
			}
			if n := s.ev.count(certs.EventObtaining, tc.sni); n != 0 {
				t.Errorf("%d obtain attempts", n)
			}
			if n := s.pebble.counted.Load(); n != 0 {
				t.Errorf("the CA was contacted %d times", n)
			}
		})
	}

	t.Run("allowed name issued in the background", func(t *testing.T) {
		const sni = "sensor-17.devices.tlsfront.test"
		// The first handshake starts the attempt and fails at once; it
		// does not wait for the CA.
		start := time.Now()
		if _, err := handshake(s.tlsLn.Addr(), sni, roots); err == nil {
			t.Fatal("first handshake succeeded; want it to fail while the certificate is obtained")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("first handshake took %v; it must not wait for the CA", d)
		}
		s.ev.wait(t, certs.EventObtained, sni, 1, 30*time.Second)
		leaf := waitServed(t, s.tlsLn.Addr(), sni, roots, nil)
		if leaf.Subject.CommonName != sni && (len(leaf.DNSNames) == 0 || leaf.DNSNames[0] != sni) {
			t.Fatalf("served %v", leaf.DNSNames)
		}
		if s.pebble.counted.Load() == 0 {
			t.Error("the counting front saw no request: the refusal checks above prove nothing")
		}
		// Later handshakes are served from memory.
		if _, err := handshake(s.tlsLn.Addr(), sni, roots); err != nil {
			t.Fatal(err)
		}
		if n := s.ev.count(certs.EventObtaining, sni); n != 1 {
			t.Errorf("%d obtaining events after several handshakes, want 1", n)
		}
	})
}

func TestDecide(t *testing.T) {
	od := loopbackOnly
	od.Allow = []string{"*.example.com", "mqtt.example.org"}
	withPublic := od
	withPublic.PublicAddrs = []netip.Addr{netip.MustParseAddr("198.51.100.7")}
	noDNS := od
	noDNS.RequireDNSToHost = false
	for _, tc := range []struct {
		name    string
		od      certs.OnDemandOptions
		host    string
		wantErr error
	}{
		{"exact allowed", od, "mqtt.example.org", nil},
		{"exact is case-insensitive", od, "MQTT.Example.ORG.", nil},
		{"wildcard one label", od, "a.example.com", nil},
		{"wildcard does not cover apex", od, "example.com", certs.ErrNotAllowed},
		{"wildcard does not cover two labels", od, "a.b.example.com", certs.ErrNotAllowed},
		{"not listed", od, "evil.test", certs.ErrNotAllowed},
		{"resolves elsewhere", od, "elsewhere.example.com", &certs.NotHereError{}},
		{"lookup fails", od, "nxdomain.example.com", &certs.NotHereError{}},
		{"public address counts as this host", withPublic, "elsewhere.example.com", nil},
		{"dns check off", noDNS, "elsewhere.example.com", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := newEvents()
			o := tc.od
			a, err := certs.NewACME(certs.ACMEOptions{Storage: t.TempDir(), OnDemand: &o, OnEvent: ev.record})
			if err != nil {
				t.Fatal(err)
			}
			err = a.Decide(context.Background(), tc.host)
			var nh *certs.NotHereError
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr == nil:
				if ev.count(certs.EventRefused, "") != 0 {
					t.Error("refusal event for an allowed name")
				}
			case errors.As(tc.wantErr, &nh):
				if !errors.As(err, &nh) {
					t.Fatalf("got %v, want a NotHereError", err)
				}
			case !errors.Is(err, tc.wantErr):
				t.Fatalf("got %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil && ev.count(certs.EventRefused, tc.host) != 1 {
				t.Errorf("want one refusal event; got:\n%s", ev)
			}
		})
	}
}

func TestNewACMERejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    certs.ACMEOptions
		want string
	}{
		{"no storage", certs.ACMEOptions{}, "storage"},
		{"half an EAB", certs.ACMEOptions{Storage: "x", EABKeyID: "kid"}, "external account binding"},
		{"on-demand without allow-list", certs.ACMEOptions{Storage: "x", OnDemand: &certs.OnDemandOptions{}}, "allow-list"},
		{"bad allow pattern", certs.ACMEOptions{Storage: "x", OnDemand: &certs.OnDemandOptions{Allow: []string{"*.com"}}}, "two labels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := certs.NewACME(tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error about %q", err, tc.want)
			}
		})
	}
}

// TestWrapTLSConfigKeepsClientALPN checks that answering TLS-ALPN-01 does
// not put "acme-tls/1" into the listener's protocols: an MQTT client that
// offers "mqtt" must still connect.
func TestWrapTLSConfigKeepsClientALPN(t *testing.T) {
	ca := pkitest.NewCA(t)
	leaf := ca.Leaf(pki.Options{})
	a, err := certs.NewACME(certs.ACMEOptions{Storage: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.DER, ca.Intermediate.DER}, PrivateKey: leaf.Key}}}
	a.WrapTLSConfig(cfg)
	if len(cfg.NextProtos) != 0 {
		t.Fatalf("NextProtos = %v", cfg.NextProtos)
	}
	ln := testnet.Listen(t)
	serveTLS(t, ln, cfg)
	for _, tc := range []struct {
		name  string
		alpn  []string
		works bool
	}{
		{"mqtt client", []string{"mqtt"}, true},
		{"no alpn", nil, true},
		{"challenge hello before start", []string{"acme-tls/1"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ca.ClientConfig("localhost")
			c.NextProtos = tc.alpn
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), c)
			if (err == nil) != tc.works {
				t.Fatalf("handshake error %v, want success %v", err, tc.works)
			}
			if err == nil {
				conn.Close()
			}
		})
	}
}

// TestACMERun: Run manages until its context ends and stops then, so
// nothing can be managed after it returns; a stopped ACME does not run
// again.
func TestACMERun(t *testing.T) {
	// A CA no one answers at: with the default one, Let's Encrypt, the
	// certmagic state this leaves behind held up later tests' renewals.
	a, err := certs.NewACME(certs.ACMEOptions{Storage: t.TempDir(), CA: "https://127.0.0.1:1/directory"})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing contacts the CA without names, so no one answers here.
	ch := certs.ChallengeAddrs{HTTP: testnet.Listen(t).Addr()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, ch, nil) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if err := a.Manage(context.Background(), []string{"late.tlsfront.test"}); err == nil {
		t.Fatal("Manage after Run returned: want an error")
	}
	if err := a.Run(context.Background(), ch, nil); err == nil {
		t.Fatal("Run after stop: want an error")
	}
}

// TestChallengeAddrsAdd: the first plain listener answers HTTP-01; a TLS
// listener on 443 answers TLS-ALPN-01 over one offered before it.
func TestChallengeAddrsAdd(t *testing.T) {
	plain1, plain2 := &net.TCPAddr{Port: 8080}, &net.TCPAddr{Port: 80}
	tls1, tls443, tls3 := &net.TCPAddr{Port: 8883}, &net.TCPAddr{Port: 443}, &net.TCPAddr{Port: 8443}
	var ch certs.ChallengeAddrs
	for _, l := range []struct {
		addr net.Addr
		tls  bool
	}{{plain1, false}, {tls1, true}, {plain2, false}, {tls443, true}, {tls3, true}} {
		ch.Add(l.addr, l.tls)
	}
	if ch.HTTP != plain1 || ch.TLS != tls443 {
		t.Fatalf("HTTP-01 on %v, TLS-ALPN-01 on %v", ch.HTTP, ch.TLS)
	}
}
