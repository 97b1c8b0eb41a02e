package redisstore_test

// Three tlsfront-like instances on one Redis against a real Pebble: the
// fleet case of issue 13.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/tlsfront/tlsfront/certs"
	"github.com/tlsfront/tlsfront/certs/redisstore"
	"github.com/tlsfront/tlsfront/internal/pebbletest"
	"github.com/tlsfront/tlsfront/internal/redistest"
	"github.com/tlsfront/tlsfront/internal/testnet"
)

// recorder remembers the keys stored through it.
type recorder struct {
	certmagic.Storage
	mu     sync.Mutex
	stored []string
}

func (r *recorder) Store(ctx context.Context, key string, value []byte) error {
	r.mu.Lock()
	r.stored = append(r.stored, key)
	r.mu.Unlock()
	return r.Storage.Store(ctx, key, value)
}

func (r *recorder) storedUnder(part string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, k := range r.stored {
		if strings.Contains(k, part) {
			out = append(out, k)
		}
	}
	return out
}

// instance is one fleet member: its ACME manager, the events it
// reported, its own storage connection and its TLS listener.
type instance struct {
	acme    *certs.ACME
	store   *recorder
	tlsLn   net.Listener
	mu      sync.Mutex
	events  []string
	changed chan struct{}
}

func (in *instance) record(ev string, names []string, err error) {
	in.mu.Lock()
	s := ev + " " + strings.Join(names, ",")
	if err != nil {
		s += " " + err.Error()
	}
	in.events = append(in.events, s)
	in.mu.Unlock()
	select {
	case in.changed <- struct{}{}:
	default:
	}
}

func (in *instance) snapshot() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]string(nil), in.events...)
}

func (in *instance) count(ev string) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	n := 0
	for _, e := range in.events {
		if strings.HasPrefix(e, ev+" ") {
			n++
		}
	}
	return n
}

// fleetEmail is the ACME account contact of every instance, in this
// process or a helper one, so that they share one account.
const fleetEmail = "ops@tlsfront.test"

// fleet is what a test's in-process instances share: a Redis, a CA,
// their storage options and a log of certmagic's warnings, shown if the
// test fails.
type fleet struct {
	redisURL string
	ca       *pebbletest.Server
	store    redisstore.Options
	logs     *testnet.Buffer
}

func newFleet(t *testing.T, redisURL string, ca *pebbletest.Server, store redisstore.Options) *fleet {
	f := &fleet{redisURL: redisURL, ca: ca, store: store, logs: &testnet.Buffer{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("certmagic log:\n%s", f.logs.String())
		}
	})
	return f
}

// start runs fleet member i: its own connection to Redis, an ACME
// manager on it, a TLS listener serving the manager's certificates and
// an HTTP listener with its challenge handler, which the CA reaches
// only if the test forwards to it. All of it stops when the test ends.
func (f *fleet) start(t *testing.T, i int) *instance {
	t.Helper()
	rs, err := redisstore.Open(f.redisURL, f.store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	in := &instance{store: &recorder{Storage: rs}, tlsLn: testnet.Listen(t), changed: make(chan struct{}, 1)}
	a, err := certs.NewACME(certs.ACMEOptions{
		CA:             f.ca.DirectoryURL,
		Email:          fleetEmail,
		CARoots:        f.ca.Roots,
		StorageBackend: in.store,
		OnEvent:        in.record,
		Log:            slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelWarn})).With("instance", i),
	})
	if err != nil {
		t.Fatal(err)
	}
	in.acme = a
	serveTLS(t, in.tlsLn, &tls.Config{GetCertificate: a.GetCertificate})
	httpLn := testnet.Listen(t)
	serveHTTP(t, httpLn, a.HTTPChallengeHandler(http.NotFoundHandler()))
	if err := a.Start(certs.ChallengeAddrs{HTTP: httpLn.Addr()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Stop)
	return in
}

func port(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// TestFleetObtainsOnce: three instances, each with its own connection to
// one Redis, manage the same name at the same moment. The CA sees one
// account and one order; the HTTP-01 validation is answered by an
// instance that did not place the order (as behind a load balancer),
// with the token in Redis for it; and every instance serves the
// certificate, and still does once Redis is stopped, when a new name
// is not ordered: certmagic cannot load it and gives it up.
func TestFleetObtainsOnce(t *testing.T) {
	srv := redistest.Start(t)
	const n = 3
	const name = "fleet.tlsfront.test"
	// The CA's HTTP-01 requests arrive at a front that hands them to an
	// instance other than the one that placed the order. The instances
	// answer HTTP-01 only, so pebble never dials TLSPort.
	front := testnet.Listen(t)
	p := pebbletest.Start(t, pebbletest.Options{HTTPPort: port(front), TLSPort: 1})
	f := newFleet(t, srv.URL, p, redisstore.Options{Prefix: "fleet", LockExpiry: 10 * time.Second, LockPoll: 50 * time.Millisecond})
	insts := make([]*instance, n)
	for i := range insts {
		insts[i] = f.start(t, i)
	}
	var answeredBy sync.Map // instance index -> true
	serveHTTP(t, front, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i, in := range insts {
			if in.count(certs.EventObtaining) == 0 {
				answeredBy.Store(i, true)
				in.acme.HTTPChallengeHandler(http.NotFoundHandler()).ServeHTTP(w, r)
				return
			}
		}
		http.Error(w, "every instance is ordering", http.StatusServiceUnavailable)
	}))

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, in := range insts {
		wg.Go(func() {
			<-start
			if err := in.acme.Manage(ctx, []string{name}); err != nil {
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()

	roots := p.IssuedRoots(t)
	began := time.Now()
	for i, in := range insts {
		leaf := waitServed(t, in.tlsLn.Addr(), name, roots)
		t.Logf("instance %d serves serial %x after %v; events %q", i, leaf.SerialNumber, time.Since(began), in.snapshot())
	}
	serials := map[string]bool{}
	for _, in := range insts {
		leaf := waitServed(t, in.tlsLn.Addr(), name, roots)
		serials[leaf.SerialNumber.String()] = true
	}
	if len(serials) != 1 {
		t.Errorf("instances serve %d different certificates", len(serials))
	}

	// Redis going away takes nothing from memory: every instance keeps
	// serving, and certmagic, finding storage unusable, orders nothing.
	srv.Stop()
	for i, in := range insts {
		if _, err := handshake(in.tlsLn.Addr(), name, roots); err != nil {
			t.Errorf("instance %d with redis down: %v", i, err)
		}
	}
	if err := insts[0].acme.Manage(ctx, []string{"during-outage.tlsfront.test"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	// certmagic cannot tell whether the name is in storage, so it gives
	// up managing it rather than order it; the caller manages it again
	// once Ping succeeds.
	for !strings.Contains(f.logs.String(), "during-outage.tlsfront.test: caching certificate: redisstore: load") {
		if time.Now().After(deadline) {
			t.Fatalf("certmagic never gave up on storage for the new name:\n%s", f.logs.String())
		}
		<-tick.C
	}

	out := p.Output()
	if c := strings.Count(out, "Added order"); c != 1 {
		t.Errorf("the CA got %d orders, want 1", c)
	}
	if c := strings.Count(out, "There are now 1 accounts"); c != 1 || strings.Contains(out, "There are now 2 accounts") {
		t.Errorf("the fleet registered more than one ACME account:\n%s", out)
	}
	ordering, tokens := 0, 0
	for _, in := range insts {
		ordering += in.count(certs.EventObtaining)
		tokens += len(in.store.storedUnder("challenge_tokens/"))
	}
	if ordering < 1 {
		t.Errorf("no instance reported ordering")
	}
	if ordering > 1 {
		// A failed attempt retried, not a second order (counted above).
		t.Logf("%d obtaining events; certmagic log:\n%s", ordering, f.logs.String())
	}
	if tokens == 0 {
		t.Error("no challenge token was put in Redis for other instances")
	}
	answered := 0
	answeredBy.Range(func(any, any) bool { answered++; return true })
	if answered == 0 {
		t.Error("the CA's validation reached no instance through the front")
	}
}

// waitServed handshakes with addr until it serves a certificate for name
// that verifies against roots, within 90s: long enough for certmagic's
// first retry, a minute after a failed attempt.
func waitServed(t *testing.T, addr net.Addr, name string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		leaf, err := handshake(addr, name, roots)
		if err == nil {
			return leaf
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate for %s served at %s: %v", name, addr, err)
		}
		<-tick.C
	}
}

func handshake(addr net.Addr, name string, roots *x509.CertPool) (*x509.Certificate, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := &tls.Dialer{Config: &tls.Config{ServerName: name, RootCAs: roots}}
	c, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	st := c.(*tls.Conn).ConnectionState()
	if len(st.PeerCertificates) == 0 {
		return nil, errors.New("no certificate")
	}
	return st.PeerCertificates[0], nil
}

func serveTLS(t *testing.T, ln net.Listener, cfg *tls.Config) {
	testnet.Serve(t, ln, func(c net.Conn) {
		tc := tls.Server(c, cfg)
		tc.SetDeadline(time.Now().Add(20 * time.Second))
		if tc.Handshake() == nil {
			io.Copy(io.Discard, tc)
		}
	})
}

func serveHTTP(t *testing.T, ln net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
}

// TestFleetManyNames: three instances manage the same 10 names at the
// same moment; the CA gets one order per name and every instance
// serves every name. Pebble validates nothing here (AlwaysValid): the
// point is the locking under contention.
//
// Ten, because certmagic lets one process place 10 orders per 10s per
// CA and account (RateLimitEvents, a package variable shared by every
// config in the process): 40 names took 31s, in four batches ten
// seconds apart. A fleet of separate processes has one such budget
// each.
func TestFleetManyNames(t *testing.T) {
	srv := redistest.Start(t)
	const n, names = 3, 10
	p := pebbletest.Start(t, pebbletest.Options{AlwaysValid: true, HTTPPort: 1, TLSPort: 1})
	f := newFleet(t, srv.URL, p, redisstore.Options{Prefix: "many", LockPoll: 50 * time.Millisecond})
	insts := make([]*instance, n)
	for i := range insts {
		insts[i] = f.start(t, i)
	}
	list := make([]string, names)
	for i := range list {
		list[i] = fmt.Sprintf("device-%02d.tlsfront.test", i)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	began := time.Now()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, in := range insts {
		wg.Go(func() {
			<-start
			if err := in.acme.Manage(ctx, list); err != nil {
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	roots := p.IssuedRoots(t)
	for _, name := range list {
		for _, in := range insts {
			waitServed(t, in.tlsLn.Addr(), name, roots)
		}
	}
	t.Logf("%d names on %d instances served after %v; CA accounts: %d", names, n, time.Since(began), strings.Count(p.Output(), "accounts in memory"))
	if c := strings.Count(p.Output(), "Added order"); c != names {
		t.Errorf("the CA got %d orders for %d names", c, names)
	}
	ordering := 0
	for _, in := range insts {
		ordering += in.count(certs.EventObtaining)
	}
	// More attempts than names is not a second order: once in about
	// thirty runs on a loaded machine, an attempt failed before
	// ordering and certmagic tried again a minute later. The orders
	// counted above are what the lock must keep to one per name.
	if ordering < names {
		t.Errorf("%d obtaining events for %d names", ordering, names)
	}
	if ordering > names {
		t.Logf("%d obtaining events for %d names; certmagic log:\n%s", ordering, names, f.logs.String())
	}
}
