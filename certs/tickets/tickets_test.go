package tickets_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/certs/tickets"
	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/pki/pkitest"
	"github.com/tlsfront/tlsfront/internal/testnet"
)

// clock is a settable time for managers, servers and clients.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// epochStart is the start of the current hour plus a minute, so that
// hour-long periods line up with the steps a test takes.
func epochStart() time.Time { return time.Now().Truncate(time.Hour).Add(time.Minute) }

// fleet is a CA and the certificate every instance serves.
type fleet struct {
	ca   *pkitest.CA
	cert tls.Certificate
}

func newFleet(t *testing.T) *fleet {
	ca := pkitest.NewCA(t)
	leaf := ca.Leaf(pki.Options{})
	return &fleet{ca: ca, cert: tls.Certificate{Certificate: [][]byte{leaf.DER, ca.Intermediate.DER}, PrivateKey: leaf.Key}}
}

// instance starts a TLS server whose config went through m.Apply and
// runs on clk. Each connection gets "ok" once the handshake is done.
func (f *fleet) instance(t *testing.T, m *tickets.Manager, clk *clock) net.Addr {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{f.cert}, Time: clk.Now}
	if err := m.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	return f.serve(t, cfg)
}

// plain starts a TLS server with the fleet's current derived keys set
// directly, without a Manager's hooks.
func (f *fleet) plain(t *testing.T, clk *clock) net.Addr {
	t.Helper()
	keys, _, err := derived(t, secret, tickets.Schedule{Period: time.Hour, Keep: 2}).Keys(context.Background(), clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{f.cert}, Time: clk.Now}
	cfg.SetSessionTicketKeys(keys)
	return f.serve(t, cfg)
}

// serve serves cfg on a loopback listener until the test ends.
func (f *fleet) serve(t *testing.T, cfg *tls.Config) net.Addr {
	t.Helper()
	ln := testnet.Listen(t)
	testnet.Serve(t, ln, func(c net.Conn) {
		tc := tls.Server(c, cfg)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if tc.Handshake() == nil {
			tc.Write([]byte("ok"))
		}
		tc.Close()
	})
	return ln.Addr()
}

// manager returns a Manager on src with keys fetched.
func manager(t *testing.T, src tickets.Source, clk *clock, maxAge time.Duration) *tickets.Manager {
	t.Helper()
	m, err := tickets.New(tickets.Options{Source: src, Now: clk.Now, MaxAge: maxAge})
	if err != nil {
		t.Fatal(err)
	}
	refresh(t, m)
	return m
}

func refresh(t *testing.T, ms ...*tickets.Manager) {
	t.Helper()
	for _, m := range ms {
		if _, err := m.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func derived(t *testing.T, secret string, s tickets.Schedule) *tickets.Derived {
	t.Helper()
	d, err := tickets.NewDerived([]byte(secret), s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// firstTicket is a client session cache that keeps the first ticket it
// is given, so a test can present one ticket at several moments even
// though each resumption brings a new one.
type firstTicket struct {
	mu sync.Mutex
	cs *tls.ClientSessionState
}

func (c *firstTicket) Get(string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cs, c.cs != nil
}

func (c *firstTicket) Put(_ string, cs *tls.ClientSessionState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cs == nil && cs != nil {
		c.cs = cs
	}
}

func (c *firstTicket) has() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cs != nil
}

// connect handshakes with addr using cache and reads to the end, which
// also takes in TLS 1.3 tickets sent after the handshake. It reports
// whether the session was resumed.
func (f *fleet) connect(t *testing.T, addr net.Addr, cache tls.ClientSessionCache, clk *clock, version uint16) bool {
	t.Helper()
	cfg := f.ca.ClientConfig("localhost")
	cfg.ClientSessionCache = cache
	cfg.Time = clk.Now
	cfg.MinVersion, cfg.MaxVersion = version, version
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr.String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(c); err != nil || string(b) != "ok" {
		t.Fatalf("read %q, %v", b, err)
	}
	return c.ConnectionState().DidResume
}

var versions = []struct {
	name string
	v    uint16
}{{"TLS1.2", tls.VersionTLS12}, {"TLS1.3", tls.VersionTLS13}}

const secret = "0123456789abcdef0123456789abcdef-fleet"

func TestResumeOnAnotherInstance(t *testing.T) {
	f := newFleet(t)
	clk := newClock(epochStart())
	sched := tickets.Schedule{Period: time.Hour, Keep: 2}
	a := f.instance(t, manager(t, derived(t, secret, sched), clk, 0), clk)
	b := f.instance(t, manager(t, derived(t, secret, sched), clk, 0), clk)
	other := f.instance(t, manager(t, derived(t, secret+"-other", sched), clk, 0), clk)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			cache := tls.NewLRUClientSessionCache(4)
			if f.connect(t, a, cache, clk, v.v) {
				t.Fatal("first connection resumed")
			}
			if !f.connect(t, b, cache, clk, v.v) {
				t.Fatal("ticket from instance A did not resume on instance B")
			}
			if !f.connect(t, a, cache, clk, v.v) {
				t.Fatal("ticket from instance B did not resume on instance A")
			}
			if f.connect(t, other, cache, clk, v.v) {
				t.Fatal("resumed on an instance with another secret")
			}
		})
	}
}

// TestRotationKeepWindow presents one ticket at later and later times:
// with Keep 2 it resumes for two rotations and not at the third.
func TestRotationKeepWindow(t *testing.T) {
	f := newFleet(t)
	clk := newClock(epochStart())
	sched := tickets.Schedule{Period: time.Hour, Keep: 2}
	ma, mb := manager(t, derived(t, secret, sched), clk, 0), manager(t, derived(t, secret, sched), clk, 0)
	a, b := f.instance(t, ma, clk), f.instance(t, mb, clk)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			clk.mu.Lock()
			clk.t = epochStart()
			clk.mu.Unlock()
			refresh(t, ma, mb)
			ticket := &firstTicket{}
			f.connect(t, a, ticket, clk, v.v)
			if !ticket.has() {
				t.Fatal("no ticket issued")
			}
			for _, step := range []struct {
				after  time.Duration
				resume bool
			}{
				{0, true},
				{time.Hour, true},     // one rotation: the previous key
				{2 * time.Hour, true}, // two: the oldest kept
				{3 * time.Hour, false},
			} {
				clk.mu.Lock()
				clk.t = epochStart().Add(step.after)
				clk.mu.Unlock()
				refresh(t, ma, mb)
				if got := f.connect(t, b, ticket, clk, v.v); got != step.resume {
					t.Fatalf("%v after issue: resumed %v, want %v", step.after, got, step.resume)
				}
			}
		})
	}
}

// TestClockSkew: an instance whose clock is a few minutes ahead has
// rotated already; one behind still accepts its tickets.
func TestClockSkew(t *testing.T) {
	f := newFleet(t)
	sched := tickets.Schedule{Period: time.Hour, Keep: 1}
	ahead := newClock(epochStart().Add(59*time.Minute + 30*time.Second)) // next epoch
	behind := newClock(epochStart().Add(55 * time.Minute))
	a := f.instance(t, manager(t, derived(t, secret, sched), ahead, 0), ahead)
	b := f.instance(t, manager(t, derived(t, secret, sched), behind, 0), behind)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			cache := tls.NewLRUClientSessionCache(4)
			f.connect(t, a, cache, ahead, v.v)
			if !f.connect(t, b, cache, behind, v.v) {
				t.Fatal("the instance behind refused the ticket of the one ahead")
			}
		})
	}
}

func TestMaxAge(t *testing.T) {
	f := newFleet(t)
	clk := newClock(epochStart())
	sched := tickets.Schedule{Period: time.Hour, Keep: 2}
	ma := manager(t, derived(t, secret, sched), clk, 30*time.Minute)
	mb := manager(t, derived(t, secret, sched), clk, 30*time.Minute)
	noMax := manager(t, derived(t, secret, sched), clk, 0)
	a, b, c := f.instance(t, ma, clk), f.instance(t, mb, clk), f.instance(t, noMax, clk)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			clk.mu.Lock()
			clk.t = epochStart()
			clk.mu.Unlock()
			ticket := &firstTicket{}
			f.connect(t, a, ticket, clk, v.v)
			clk.Add(20 * time.Minute)
			if !f.connect(t, b, ticket, clk, v.v) {
				t.Fatal("20 minutes old: not resumed")
			}
			clk.Add(20 * time.Minute)
			if f.connect(t, b, ticket, clk, v.v) {
				t.Fatal("40 minutes old: resumed past max age")
			}
			// The keys still decrypt it: only the stamp refuses it.
			if !f.connect(t, c, ticket, clk, v.v) {
				t.Fatal("40 minutes old on an instance without max age: not resumed")
			}
			// A ticket without our stamp (from a server not run by
			// a Manager, with the same keys) has no known age and is
			// refused.
			unstamped := &firstTicket{}
			f.connect(t, f.plain(t, clk), unstamped, clk, v.v)
			if !unstamped.has() {
				t.Fatal("no ticket from the plain server")
			}
			if f.connect(t, b, unstamped, clk, v.v) {
				t.Fatal("unstamped ticket resumed on an instance with max age")
			}
		})
	}
}

func TestRunRotates(t *testing.T) {
	src := &countingSource{next: make(chan struct{}, 8)}
	m, err := tickets.New(tickets.Options{Source: src})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{}
	if err := m.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	// The source asks to be called again at once; Run waits its
	// minimum second between calls, so two calls take about a second.
	deadline := time.After(10 * time.Second)
	for range 2 {
		select {
		case <-src.next:
		case <-deadline:
			t.Fatal("Run did not refresh")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

type countingSource struct{ next chan struct{} }

func (s *countingSource) Keys(_ context.Context, now time.Time) ([]tickets.Key, time.Time, error) {
	s.next <- struct{}{}
	return []tickets.Key{{1}}, now, nil
}

func TestOptionsRejected(t *testing.T) {
	if _, err := tickets.NewDerived([]byte("short"), tickets.Schedule{}); err == nil {
		t.Error("short secret accepted")
	}
	if _, err := tickets.NewDerived([]byte(secret), tickets.Schedule{Period: time.Millisecond}); err == nil {
		t.Error("millisecond period accepted")
	}
	if _, err := tickets.New(tickets.Options{}); err == nil {
		t.Error("no source accepted")
	}
	m, _ := tickets.New(tickets.Options{Source: derived(t, secret, tickets.Schedule{}), MaxAge: time.Hour})
	cfg := &tls.Config{WrapSession: func(tls.ConnectionState, *tls.SessionState) ([]byte, error) { return nil, nil }}
	if err := m.Apply(cfg); err == nil {
		t.Error("Apply over existing session hooks accepted")
	}
}

// TestCloneFollowsRefresh: a config cloned after Apply (as a
// GetConfigForClient might) uses the keys of later refreshes.
func TestCloneFollowsRefresh(t *testing.T) {
	f := newFleet(t)
	clk := newClock(epochStart())
	sched := tickets.Schedule{Period: time.Hour, Keep: 1}
	ma := manager(t, derived(t, secret, sched), clk, 0)
	mb := manager(t, derived(t, secret, sched), clk, 0)
	a := f.instance(t, ma, clk)
	cfg := &tls.Config{Certificates: []tls.Certificate{f.cert}, Time: clk.Now}
	if err := mb.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	b := f.serve(t, cfg.Clone())
	// Two rotations: the keys the clone was made with are all gone.
	clk.Add(2 * time.Hour)
	refresh(t, ma, mb)
	cache := tls.NewLRUClientSessionCache(2)
	f.connect(t, a, cache, clk, tls.VersionTLS13)
	if !f.connect(t, b, cache, clk, tls.VersionTLS13) {
		t.Fatal("the clone did not pick up the refreshed keys")
	}
}

// TestRunRetries: a Source that fails at first (Redis down at start)
// does not stop Run; the keys arrive once it answers.
func TestRunRetries(t *testing.T) {
	src := &flakySource{fails: 2, calls: make(chan error, 8)}
	m, err := tickets.New(tickets.Options{Source: src, RetryAfter: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	deadline := time.After(20 * time.Second)
	for i := 0; ; i++ {
		select {
		case err := <-src.calls:
			if err == nil {
				cancel()
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				if i != 2 {
					t.Fatalf("succeeded at call %d, want 3", i+1)
				}
				return
			}
		case <-deadline:
			t.Fatal("Run gave up or stalled")
		}
	}
}

type flakySource struct {
	mu    sync.Mutex
	fails int
	calls chan error
}

func (s *flakySource) Keys(_ context.Context, now time.Time) ([]tickets.Key, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if s.fails > 0 {
		s.fails--
		err = errors.New("redis unavailable")
	}
	s.calls <- err
	if err != nil {
		return nil, time.Time{}, err
	}
	return []tickets.Key{{1}}, now.Add(time.Hour), nil
}
