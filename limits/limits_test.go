package limits

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"go.uber.org/ratelimit"
)

func newTest(t testing.TB, cfg Config) (*Limiter, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	l, err := newLimiter(cfg, clk.Now, func(rate int) pacer {
		return ratelimit.New(rate, ratelimit.WithoutSlack, ratelimit.WithClock(clk))
	})
	if err != nil {
		t.Fatal(err)
	}
	return l, clk
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// admit admits client and fails the test on refusal.
func admit(t *testing.T, l *Limiter, client netip.Addr) *Ticket {
	t.Helper()
	tk, r := l.Admit(client)
	if r != nil {
		t.Fatalf("Admit(%v) refused by %s, want admitted", client, r.Limit)
	}
	return tk
}

// refused admits client and fails the test unless refused by limit.
func refused(t *testing.T, l *Limiter, client netip.Addr, limit string) *Refusal {
	t.Helper()
	tk, r := l.Admit(client)
	if r == nil {
		tk.Close()
		t.Fatalf("Admit(%v) admitted, want refused by %s", client, limit)
	}
	if r.Limit != limit {
		t.Fatalf("Admit(%v) refused by %s, want %s", client, r.Limit, limit)
	}
	return r
}

func TestKeyOf(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		same bool
	}{
		{"same IPv4", "192.0.2.1", "192.0.2.1", true},
		{"different IPv4", "192.0.2.1", "192.0.2.2", false},
		{"IPv4-mapped is IPv4", "::ffff:192.0.2.1", "192.0.2.1", true},
		{"IPv6 same /64", "2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", true},
		{"IPv6 other /64", "2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"IPv6 zone ignored", "fe80::1%eth0", "fe80::2", true},
		{"IPv4 vs ::/64", "0.0.0.0", "::", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := keyOf(ip(tt.a)) == keyOf(ip(tt.b)); got != tt.same {
				t.Errorf("keyOf(%s) == keyOf(%s) is %v, want %v", tt.a, tt.b, got, tt.same)
			}
		})
	}
}

func TestNilAndZeroConfigAdmitEverything(t *testing.T) {
	zero, _ := newTest(t, Config{})
	for name, l := range map[string]*Limiter{"nil": nil, "zero": zero} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			for i := range 1000 {
				release, err := l.AcquireSlot(ctx)
				if err != nil {
					t.Fatal(err)
				}
				tk, r := l.Admit(ip("192.0.2.1"))
				if r != nil {
					t.Fatalf("attempt %d refused by %s", i, r.Limit)
				}
				if r := tk.StartHandshake(); r != nil {
					t.Fatalf("attempt %d refused by %s", i, r.Limit)
				}
				tk.Handshake(false)
				done, r := l.Backend(ctx, ip("192.0.2.1"))
				if r != nil {
					t.Fatalf("backend refused by %s", r.Limit)
				}
				done(errors.New("dial failed"))
				if r := l.AdmitClientID("dev-1"); r != nil {
					t.Fatalf("client ID refused by %s", r.Limit)
				}
				tk.Close()
				release()
			}
			st := l.Stats()
			if len(st.Refused) != len(LimitNames()) {
				t.Errorf("Stats.Refused has %d names, want %d", len(st.Refused), len(LimitNames()))
			}
			for n, c := range st.Refused {
				if c != 0 {
					t.Errorf("Stats.Refused[%s] = %d, want 0", n, c)
				}
			}
			if st.TrackedClients != 0 || st.OpenConns != 0 || st.HandshakesInFlight != 0 {
				t.Errorf("Stats = %+v, want nothing tracked or open", st)
			}
		})
	}
	var tk *Ticket
	tk.Handshake(true)
	tk.Close()
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"negative rate", Config{ClientRate: -1}},
		{"negative max conns", Config{MaxConns: -1}},
		{"negative delay", Config{RefusalDelay: -time.Second}},
		{"negative client hello timeout", Config{ClientHelloTimeout: -time.Second}},
		{"base above max", Config{PenaltyFailures: 1, PenaltyBase: time.Minute, PenaltyMax: time.Second}},
		{"invalid exempt prefix", Config{Exempt: []netip.Prefix{{}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil {
				t.Errorf("New(%+v) succeeded, want an error", tt.cfg)
			}
		})
	}
	if _, err := New(DefaultConfig()); err != nil {
		t.Errorf("New(DefaultConfig()): %v", err)
	}
}

func TestClientRate(t *testing.T) {
	tests := []struct {
		name   string
		first  string // exhausts the bucket
		second string // then tries
		shared bool
	}{
		{"same IPv4", "192.0.2.1", "192.0.2.1", true},
		{"other IPv4", "192.0.2.1", "192.0.2.2", false},
		{"same IPv6 /64", "2001:db8::1", "2001:db8::dead:beef", true},
		{"other IPv6 /64", "2001:db8::1", "2001:db8:0:1::1", false},
		{"mapped and plain IPv4", "::ffff:198.51.100.7", "198.51.100.7", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, clk := newTest(t, Config{ClientRate: 10, ClientBurst: 3})
			for range 3 {
				admit(t, l, ip(tt.first)).Close()
			}
			r := refused(t, l, ip(tt.first), LimitClientRate)
			if r.RetryAfter != 100*time.Millisecond || r.Busy {
				t.Errorf("refusal = %+v, want RetryAfter 100ms and not busy", r)
			}
			if tt.shared {
				refused(t, l, ip(tt.second), LimitClientRate)
			} else {
				admit(t, l, ip(tt.second)).Close()
			}
			// One interval later there is exactly one token again.
			clk.Advance(100 * time.Millisecond)
			admit(t, l, ip(tt.first)).Close()
			refused(t, l, ip(tt.first), LimitClientRate)
			// A full refill gives the whole burst back.
			clk.Advance(time.Second)
			for range 3 {
				admit(t, l, ip(tt.first)).Close()
			}
			if got := l.Stats().Refused[LimitClientRate]; got < 2 {
				t.Errorf("Refused[client_rate] = %d, want at least 2", got)
			}
		})
	}
}

func TestClientRateSustained(t *testing.T) {
	// Over 10 simulated seconds at 1 attempt per ms, a client gets the
	// burst plus rate×time, no more.
	l, clk := newTest(t, Config{ClientRate: 20, ClientBurst: 40})
	ok := 0
	for range 10000 {
		if tk, r := l.Admit(ip("192.0.2.9")); r == nil {
			ok++
			tk.Close()
		}
		clk.Advance(time.Millisecond)
	}
	if want := 40 + 20*10; ok < want-1 || ok > want+1 {
		t.Errorf("admitted %d of 10000 in 10s, want about %d", ok, want)
	}
}

func TestClientConns(t *testing.T) {
	l, _ := newTest(t, Config{ClientMaxConns: 2})
	a := admit(t, l, ip("192.0.2.1"))
	b := admit(t, l, ip("192.0.2.1"))
	refused(t, l, ip("192.0.2.1"), LimitClientConns)
	c := admit(t, l, ip("192.0.2.2"))
	a.Handshake(true)
	a.Close()
	a.Close() // a second Close must not free a second place
	d := admit(t, l, ip("192.0.2.1"))
	refused(t, l, ip("192.0.2.1"), LimitClientConns)
	for _, tk := range []*Ticket{b, c, d} {
		tk.Close()
	}
	if st := l.Stats(); st.OpenConns != 0 || st.HandshakesInFlight != 0 {
		t.Errorf("after closing all: %+v", st)
	}
}

func TestPenaltyBox(t *testing.T) {
	const base = 10 * time.Second
	cfg := Config{PenaltyFailures: 3, PenaltyWindow: time.Minute, PenaltyBase: base, PenaltyMax: 40 * time.Second}
	client := ip("203.0.113.5")
	fail := func(t *testing.T, l *Limiter) {
		t.Helper()
		tk := admit(t, l, client)
		tk.Handshake(false)
		tk.Close()
	}
	boxedFor := func(t *testing.T, l *Limiter, want time.Duration) {
		t.Helper()
		r := refused(t, l, client, LimitPenalty)
		if r.RetryAfter != want {
			t.Fatalf("boxed for %v, want %v", r.RetryAfter, want)
		}
	}

	t.Run("boxed after N failures, doubling while failing, capped", func(t *testing.T) {
		l, clk := newTest(t, cfg)
		fail(t, l)
		fail(t, l)
		admit(t, l, client).Close() // two failures: not yet
		fail(t, l)
		boxedFor(t, l, base)
		admit(t, l, ip("203.0.113.6")).Close() // others are not affected
		for _, want := range []time.Duration{2 * base, 4 * base, 4 * base} {
			clk.Advance(base * 4)
			// Released: one more failure puts it back, for longer.
			fail(t, l)
			boxedFor(t, l, want)
		}
	})
	t.Run("success ends the doubling", func(t *testing.T) {
		l, clk := newTest(t, cfg)
		for range 3 {
			fail(t, l)
		}
		boxedFor(t, l, base)
		clk.Advance(base)
		tk := admit(t, l, client)
		tk.Handshake(true)
		tk.Close()
		fail(t, l)
		admit(t, l, client).Close() // one failure after a success is not enough
	})
	t.Run("box expires and is forgotten", func(t *testing.T) {
		l, clk := newTest(t, cfg)
		for range 3 {
			fail(t, l)
		}
		clk.Advance(base + cfg.PenaltyMax + time.Second)
		fail(t, l)
		admit(t, l, client).Close() // counting starts over
		if n := l.sweep(); n != 0 {
			t.Errorf("sweep removed %d entries, want 0 (failures still counted)", n)
		}
		clk.Advance(cfg.PenaltyWindow + time.Second)
		if n := l.sweep(); n != 1 {
			t.Errorf("sweep removed %d entries, want 1", n)
		}
		if st := l.Stats(); st.TrackedClients != 0 {
			t.Errorf("TrackedClients = %d after the sweep, want 0", st.TrackedClients)
		}
	})
	t.Run("failures outside the window do not add up", func(t *testing.T) {
		l, clk := newTest(t, cfg)
		fail(t, l)
		fail(t, l)
		clk.Advance(cfg.PenaltyWindow + time.Second)
		fail(t, l)
		fail(t, l)
		admit(t, l, client).Close()
	})
	t.Run("handshakes in flight when boxed are not new offences", func(t *testing.T) {
		l, _ := newTest(t, cfg)
		var inflight []*Ticket
		for range 6 {
			inflight = append(inflight, admit(t, l, client))
		}
		for _, tk := range inflight {
			tk.Handshake(false)
			tk.Close()
		}
		boxedFor(t, l, base)
	})
	t.Run("handshake after close is ignored", func(t *testing.T) {
		l, _ := newTest(t, cfg)
		for range 3 {
			tk := admit(t, l, client)
			tk.Close()
			tk.Handshake(false)
		}
		admit(t, l, client).Close()
	})
}

// started admits client and takes its handshake slot, failing the test on
// either refusal.
func started(t *testing.T, l *Limiter, client netip.Addr) *Ticket {
	t.Helper()
	tk := admit(t, l, client)
	if r := tk.StartHandshake(); r != nil {
		t.Fatalf("StartHandshake(%v) refused by %s, want a slot", client, r.Limit)
	}
	return tk
}

// startRefused admits client and fails the test unless its handshake is
// refused by the handshakes cap. The ticket is closed.
func startRefused(t *testing.T, l *Limiter, client netip.Addr) *Refusal {
	t.Helper()
	tk := admit(t, l, client)
	defer tk.Close()
	r := tk.StartHandshake()
	if r == nil || r.Limit != LimitHandshakes {
		t.Fatalf("StartHandshake(%v) = %+v, want refused by %s", client, r, LimitHandshakes)
	}
	return r
}

func TestMaxHandshakes(t *testing.T) {
	l, _ := newTest(t, Config{MaxHandshakes: 2, ClientRate: 1000})
	a := started(t, l, ip("192.0.2.1"))
	b := started(t, l, ip("192.0.2.2"))
	r := startRefused(t, l, ip("192.0.2.3"))
	if !r.Busy {
		t.Errorf("handshakes refusal not Busy: %+v", r)
	}
	a.Handshake(true) // done handshaking, still open
	c := started(t, l, ip("192.0.2.3"))
	startRefused(t, l, ip("192.0.2.4"))
	b.Close() // closed mid-handshake gives its slot back too
	d := started(t, l, ip("192.0.2.4"))
	if got := l.Stats().HandshakesInFlight; got != 2 {
		t.Errorf("HandshakesInFlight = %d, want 2", got)
	}
	for _, tk := range []*Ticket{a, c, d} {
		tk.Handshake(true)
		tk.Close()
	}
	if got := l.Stats(); got.HandshakesInFlight != 0 || got.Refused[LimitHandshakes] != 2 {
		t.Errorf("Stats = %+v, want 0 in flight and 2 refused", got)
	}
	// A refused handshake must not hold the client's connection place.
	if st := l.Stats(); st.TrackedClients != 4 || st.OpenConns != 0 {
		t.Errorf("TrackedClients = %d, want 4", st.TrackedClients)
	}
}

// TestSilentSocketsHoldNoHandshakeSlot is issue 10's first scene: many
// connections that never send a byte, from many addresses, must not keep
// a client that talks from its handshake.
func TestSilentSocketsHoldNoHandshakeSlot(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxHandshakes = 512
	l, _ := newTest(t, cfg)
	var silent []*Ticket
	for i := range 600 {
		silent = append(silent, admit(t, l, netip.AddrFrom4([4]byte{198, 51, byte(100 + i/250), byte(i % 250)})))
	}
	if got := l.Stats().HandshakesInFlight; got != 0 {
		t.Fatalf("HandshakesInFlight = %d with only silent sockets, want 0", got)
	}
	for _, c := range []string{"192.0.2.1", "127.0.0.1"} {
		tk := started(t, l, ip(c))
		tk.Handshake(true)
		tk.Close()
	}
	// The proxy's ClientHelloTimeout closes them; it reports them failed.
	for _, tk := range silent {
		tk.Handshake(false)
		tk.Close()
	}
	if st := l.Stats(); st.HandshakesInFlight != 0 || st.Refused[LimitHandshakes] != 0 {
		t.Errorf("Stats = %+v, want nothing in flight or refused", st)
	}
}

func TestStartHandshakeLifecycle(t *testing.T) {
	// Every order of the calls the proxy may make, including shutdown
	// racing a handshake's end, gives the slot back exactly once.
	tests := []struct {
		name  string
		steps string // s StartHandshake, h Handshake, e HandshakeEnded, c Close
		held  int64  // slots held after the steps
	}{
		{"start handshake close", "shc", 0},
		{"start close", "sc", 0},
		{"start only", "s", 1},
		{"start twice", "ss", 1},
		{"start twice then handshake", "ssh", 0},
		{"close then start takes nothing", "cs", 0},
		{"handshake then start takes nothing", "hs", 0},
		{"no start: silent socket closed", "hc", 0},
		{"everything twice", "sshhcc", 0},
		{"close before handshake", "sch", 0},
		{"ended without a verdict", "sec", 0},
		{"ended twice", "see", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := newTest(t, Config{MaxHandshakes: 1, ClientMaxConns: 5})
			tk := admit(t, l, ip("192.0.2.1"))
			for _, step := range tt.steps {
				switch step {
				case 's':
					if r := tk.StartHandshake(); r != nil {
						t.Fatalf("StartHandshake refused by %s", r.Limit)
					}
				case 'h':
					tk.Handshake(true)
				case 'e':
					tk.HandshakeEnded()
				case 'c':
					tk.Close()
				}
			}
			if got := l.Stats().HandshakesInFlight; got != tt.held {
				t.Fatalf("HandshakesInFlight = %d, want %d", got, tt.held)
			}
			tk.Close()
			if st := l.Stats(); st.HandshakesInFlight != 0 || st.OpenConns != 0 {
				t.Fatalf("after Close: %+v", st)
			}
			// The one slot is free again for somebody else.
			started(t, l, ip("192.0.2.2")).Close()
		})
	}
	var nilTicket *Ticket
	if r := nilTicket.StartHandshake(); r != nil {
		t.Errorf("nil ticket refused: %+v", r)
	}
}

func TestHandshakeEndedIsNoOffence(t *testing.T) {
	l, _ := newTest(t, Config{PenaltyFailures: 3, MaxHandshakes: 1})
	client := ip("203.0.113.5")
	// Many handshakes failing for want of a certificate: not the
	// client's fault, so no box; and each gives its slot back.
	for range 10 {
		tk := started(t, l, client)
		tk.HandshakeEnded()
		tk.Close()
	}
	admit(t, l, client).Close()
	if st := l.Stats(); st.HandshakesInFlight != 0 || st.Refused[LimitPenalty] != 0 {
		t.Errorf("Stats = %+v, want nothing in flight and no box", st)
	}
	var nilTicket *Ticket
	nilTicket.HandshakeEnded()
}

func TestExemptHandshakeHeadroom(t *testing.T) {
	const limit = 8
	cfg := Config{MaxHandshakes: limit, Exempt: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	tests := []struct {
		name   string
		client string
		// how many more handshakes it may start once others fill the cap
		more int
	}{
		{"not exempt: none", "192.0.2.9", 0},
		{"exempt: the headroom", "127.0.0.1", int(exemptHeadroom(limit))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := newTest(t, cfg)
			var held []*Ticket
			for i := range limit {
				held = append(held, started(t, l, netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})))
			}
			for range tt.more {
				held = append(held, started(t, l, ip(tt.client)))
			}
			startRefused(t, l, ip(tt.client))
			// Non-exempt clients never eat into the headroom.
			startRefused(t, l, ip("198.51.100.1"))
			for _, tk := range held {
				tk.Close()
			}
			if got := l.Stats().HandshakesInFlight; got != 0 {
				t.Errorf("HandshakesInFlight = %d after closing all, want 0", got)
			}
		})
	}
}

func TestAcquireSlot(t *testing.T) {
	l, _ := newTest(t, Config{MaxConns: 2})
	ctx := context.Background()
	r1, err := l.AcquireSlot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r2, _ := l.AcquireSlot(ctx)

	pauses := func() uint64 { return l.Stats().Refused[LimitMaxConns] }

	// Full: a waiter gives up when its context ends.
	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := l.AcquireSlot(cctx)
		errc <- err
	}()
	waitFor(t, "the first waiter to pause", func() bool { return pauses() == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("AcquireSlot on cancelled ctx = %v, want context.Canceled", err)
	}

	// Full: a waiter gets the slot as soon as one is released.
	got := make(chan func(), 1)
	go func() {
		rel, err := l.AcquireSlot(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- rel
	}()
	waitFor(t, "the second waiter to pause", func() bool { return pauses() == 2 })
	select {
	case <-got:
		t.Fatal("AcquireSlot returned while every slot was taken")
	default:
	}
	r1()
	r3 := <-got
	if st := l.Stats(); st.OpenConns != 2 {
		t.Errorf("OpenConns = %d, want 2", st.OpenConns)
	}
	r2()
	r3()
	done, cancel2 := context.WithCancel(ctx)
	cancel2()
	if _, err := l.AcquireSlot(done); err == nil {
		t.Error("AcquireSlot on a done ctx succeeded")
	}
}

func TestRefusalDelay(t *testing.T) {
	const d = 100 * time.Millisecond
	l, clk := newTest(t, Config{ClientRate: 1, ClientBurst: 1, RefusalDelay: d, MaxDelayed: 2})
	client := ip("192.0.2.1")
	admit(t, l, client).Close()
	for i := range 3 {
		r := refused(t, l, client, LimitClientRate)
		if i < 2 && (r.Delay < d/2 || r.Delay > d) {
			t.Errorf("refusal %d: Delay %v, want between %v and %v", i, r.Delay, d/2, d)
		}
		if i == 2 && r.Delay != 0 {
			t.Errorf("refusal %d: Delay %v, want 0 with %d sockets already held", i, r.Delay, 2)
		}
	}
	if got := l.Stats().DelayedSockets; got != 2 {
		t.Errorf("DelayedSockets = %d, want 2", got)
	}
	clk.Advance(d)
	if r := refused(t, l, client, LimitClientRate); r.Delay == 0 {
		t.Error("no Delay after the held sockets were released")
	}
}

func TestClientIDRate(t *testing.T) {
	l, clk := newTest(t, Config{ClientIDRate: 1, ClientIDBurst: 2})
	for i, want := range []bool{true, true, false} {
		if r := l.AdmitClientID("sensor-1"); (r == nil) != want {
			t.Fatalf("CONNECT %d admitted = %v, want %v", i, r == nil, want)
		} else if r != nil && r.Limit != LimitClientIDRate {
			t.Fatalf("refused by %s, want %s", r.Limit, LimitClientIDRate)
		}
	}
	if r := l.AdmitClientID("sensor-2"); r != nil {
		t.Errorf("another ID refused: %v", r)
	}
	if r := l.AdmitClientID(""); r != nil {
		t.Errorf("empty ID refused: %v", r)
	}
	clk.Advance(time.Second)
	if r := l.AdmitClientID("sensor-1"); r != nil {
		t.Errorf("refused a second later: %v", r)
	}
	clk.Advance(time.Minute)
	if n := l.sweep(); n != 2 {
		t.Errorf("sweep removed %d IDs, want 2", n)
	}
}

func TestBackendPacing(t *testing.T) {
	// The fake clock's sleeps pass at once, so the turns handed out can be
	// checked exactly.
	l, clk := newTest(t, Config{BackendRate: 50})
	start := clk.Now()
	const n = 100
	for range n {
		done, r := l.Backend(context.Background(), ip("192.0.2.1"))
		if r != nil {
			t.Fatalf("refused by %s", r.Limit)
		}
		done(nil)
	}
	if got, want := clk.Now().Sub(start), (n-1)*20*time.Millisecond; got != want {
		t.Errorf("%d backend connections took %v of clock, want %v (50/s)", n, got, want)
	}
}

func TestBackendPacingRealTime(t *testing.T) {
	l, err := New(Config{BackendRate: 200, BackendWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	const n = 21
	for range n {
		done, r := l.Backend(context.Background(), ip("192.0.2.1"))
		if r != nil {
			t.Fatalf("refused by %s", r.Limit)
		}
		done(nil)
	}
	if got, min := time.Since(start), (n-1)*5*time.Millisecond; got < min {
		t.Errorf("%d backend connections at 200/s took %v, want at least %v", n, got, min)
	}
}

func TestBackendWaitingRoom(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		room  int // callers that may wait at once
		limit string
	}{
		{"wait budget", Config{BackendRate: 10, BackendWait: 250 * time.Millisecond}, 2, LimitBackendRate},
		{"queue size", Config{BackendRate: 10, BackendWait: 10 * time.Second, BackendQueue: 3}, 3, LimitBackendRate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &gateClock{fakeClock: newFakeClock(), sleeping: make(chan time.Duration), release: make(chan struct{})}
			l, err := newLimiter(tt.cfg, clk.Now, func(rate int) pacer {
				return ratelimit.New(rate, ratelimit.WithoutSlack, ratelimit.WithClock(clk))
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			// The first caller after an idle spell goes at once.
			if _, r := l.Backend(ctx, ip("192.0.2.1")); r != nil {
				t.Fatalf("first caller refused by %s", r.Limit)
			}
			var wg sync.WaitGroup
			for i := range tt.room {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, r := l.Backend(ctx, ip("192.0.2.1")); r != nil {
						t.Errorf("waiter %d refused by %s", i, r.Limit)
					}
				}()
				<-clk.sleeping // it is in the room, waiting its turn
			}
			_, r := l.Backend(ctx, ip("192.0.2.1"))
			if r == nil || r.Limit != tt.limit || !r.Busy {
				t.Fatalf("caller beyond the room: refusal %+v, want busy %s", r, tt.limit)
			}
			if got := l.Stats().Backends[0].Waiting; got != int64(tt.room) {
				t.Errorf("Waiting = %d, want %d", got, tt.room)
			}
			for range tt.room {
				clk.release <- struct{}{}
			}
			wg.Wait()
		})
	}
}

func TestBreaker(t *testing.T) {
	const cooldown = 5 * time.Second
	l, clk := newTest(t, Config{BreakerFailures: 3, BreakerCooldown: cooldown})
	ctx := context.Background()
	c := ip("192.0.2.1")
	dial := func(err error) *Refusal {
		done, r := l.Backend(ctx, c)
		if r == nil {
			done(err)
		}
		return r
	}
	down := errors.New("connection refused")
	state := func() string { return l.Stats().Breaker }

	for i := range 2 {
		if r := dial(down); r != nil {
			t.Fatalf("dial %d refused before the breaker opened: %v", i, r)
		}
	}
	if r := dial(nil); r != nil { // a success resets the count
		t.Fatal(r)
	}
	for range 2 {
		dial(down)
	}
	dial(fmt.Errorf("dial: %w", context.Canceled)) // shutdown is not the backend's fault
	if state() != "closed" {
		t.Fatalf("breaker %s after 2 failures and a cancel, want closed", state())
	}
	dial(down)
	if state() != "open" {
		t.Fatalf("breaker %s after 3 failures, want open", state())
	}
	r := dial(nil)
	if r == nil || r.Limit != LimitBackendDown || r.Busy || r.RetryAfter != cooldown {
		t.Fatalf("open breaker: refusal %+v, want backend_down, not busy, RetryAfter %v", r, cooldown)
	}

	// Half open: one trial at a time; its failure reopens at once.
	clk.Advance(cooldown)
	if state() != "half_open" {
		t.Fatalf("breaker %s after the cooldown, want half_open", state())
	}
	probe, r := l.Backend(ctx, c)
	if r != nil {
		t.Fatalf("trial dial refused: %v", r)
	}
	if r := dial(nil); r == nil || r.Limit != LimitBackendDown {
		t.Fatalf("second caller while a trial runs: %+v, want backend_down", r)
	}
	probe(down)
	if state() != "open" {
		t.Fatalf("breaker %s after a failed trial, want open", state())
	}

	// A successful trial closes it.
	clk.Advance(cooldown)
	probe, r = l.Backend(ctx, c)
	if r != nil {
		t.Fatal(r)
	}
	probe(nil)
	if state() != "closed" {
		t.Fatalf("breaker %s after a good trial, want closed", state())
	}
	for range 5 {
		if r := dial(nil); r != nil {
			t.Fatal(r)
		}
	}
	if got := l.Stats().Refused[LimitBackendDown]; got != 2 {
		t.Errorf("Refused[backend_down] = %d, want 2", got)
	}
}

func TestBreakerPerBackend(t *testing.T) {
	l, _ := newTest(t, Config{BreakerFailures: 1})
	ctx := context.Background()
	done, _ := l.BackendFor(ctx, "a:1883", ip("192.0.2.1"))
	done(errors.New("refused"))
	if _, r := l.BackendFor(ctx, "a:1883", ip("192.0.2.1")); r == nil {
		t.Error("backend a not refused after its breaker opened")
	}
	if _, r := l.BackendFor(ctx, "b:1883", ip("192.0.2.1")); r != nil {
		t.Errorf("backend b refused by %s: a's breaker must not affect it", r.Limit)
	}
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}

func TestMemoryBoundedUnderStorm(t *testing.T) {
	const maxClients = 64 * 100
	// A million distinct clients, alternating IPv4 addresses and IPv6
	// /64s, each connecting once and failing its handshake.
	addr := func(i int) netip.Addr {
		if i%2 == 0 {
			return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		}
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i), 15: 1})
	}
	l, clk := newTest(t, Config{ClientRate: 1, ClientBurst: 1, PenaltyFailures: 5, MaxClients: maxClients})
	// A regular client keeps its state while the storm passes, since it
	// keeps coming back.
	regular := ip("192.0.2.200")
	admit(t, l, regular).Close()
	var open []*Ticket
	const n = 1_000_000
	for i := range n {
		tk, r := l.Admit(addr(i))
		if r != nil {
			t.Fatalf("new client %d refused by %s", i, r.Limit)
		}
		if i%1000 == 0 {
			// Some storm connections stay open: pinned entries.
			open = append(open, tk)
			refused(t, l, regular, LimitClientRate)
		} else {
			tk.Handshake(false)
			tk.Close()
		}
		if i%100_000 == 0 {
			if got := l.Stats().TrackedClients; got > maxClients {
				t.Fatalf("after %d clients: %d tracked, cap %d", i, got, maxClients)
			}
		}
	}
	st := l.Stats()
	if st.TrackedClients > maxClients || st.TrackedClients < maxClients-64 {
		t.Errorf("TrackedClients = %d, want at most (and near) %d", st.TrackedClients, maxClients)
	}
	if st.EvictedClients < n-maxClients {
		t.Errorf("EvictedClients = %d, want at least %d", st.EvictedClients, n-maxClients)
	}
	if st.UntrackedAdmits != 0 {
		t.Errorf("UntrackedAdmits = %d, want 0", st.UntrackedAdmits)
	}
	for _, tk := range open {
		tk.Close()
	}
	// Everything is idle and refilled a couple of minutes later.
	clk.Advance(2 * time.Minute)
	l.sweep()
	if got := l.Stats().TrackedClients; got != 0 {
		t.Errorf("TrackedClients = %d after the storm expired, want 0", got)
	}
}

func TestUntrackedWhenAllPinned(t *testing.T) {
	l, _ := newTest(t, Config{ClientMaxConns: 10, MaxClients: 64})
	var open []*Ticket
	// Fill every shard (one entry each) with clients holding a connection.
	for i := 0; l.Stats().TrackedClients < 64; i++ {
		open = append(open, admit(t, l, netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})))
	}
	before := l.Stats().UntrackedAdmits
	tk := admit(t, l, ip("192.0.2.1"))
	if st := l.Stats(); st.UntrackedAdmits != before+1 || st.TrackedClients != 64 {
		t.Errorf("Stats = %+v, want one more untracked admit and 64 tracked", st)
	}
	tk.Handshake(false)
	tk.Close()
	for _, tk := range open {
		tk.Close()
	}
}
func TestConcurrentUse(t *testing.T) {
	l, err := New(Config{
		ClientRate: 1e6, ClientBurst: 100, ClientMaxConns: 50, PenaltyFailures: 3,
		MaxClients: 128, MaxHandshakes: 20, MaxConns: 40, RefusalDelay: time.Millisecond,
		BackendRate: 100000, BackendWait: 10 * time.Millisecond, BreakerFailures: 3, ClientIDRate: 100,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var sweeper sync.WaitGroup
	sweeper.Go(func() { l.Run(ctx) })
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				release, err := l.AcquireSlot(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				c := netip.AddrFrom4([4]byte{10, 0, byte(g), byte(i % 200)})
				tk, r := l.Admit(c)
				if r == nil && tk.StartHandshake() != nil {
					tk.Close()
				} else if r == nil {
					var closed sync.WaitGroup
					// Close may race the handshake's end, as on shutdown.
					closed.Go(func() { tk.Close() })
					tk.Handshake(i%3 == 0)
					closed.Wait()
					if done, r := l.Backend(ctx, c); r == nil {
						done(nil)
					}
					l.AdmitClientID(fmt.Sprint("id-", i%300))
				}
				release()
				if i%500 == 0 {
					l.sweep()
					l.Stats()
				}
			}
		})
	}
	wg.Wait()
	cancel()
	sweeper.Wait()
	st := l.Stats()
	if st.OpenConns != 0 || st.HandshakesInFlight != 0 || st.TrackedClients > 128 {
		t.Errorf("after all closed: %+v", st)
	}
}

func TestExempt(t *testing.T) {
	cfg := Config{ClientRate: 1, ClientBurst: 1, Exempt: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("2001:db8:ffff::/48")}}
	tests := []struct {
		name   string
		client string
		exempt bool
	}{
		{"loopback", "127.0.0.1", true},
		{"other loopback", "127.9.8.7", true},
		{"mapped loopback", "::ffff:127.0.0.1", true},
		{"IPv6 in prefix", "2001:db8:ffff:1::1", true},
		{"outside", "192.0.2.1", false},
		{"IPv6 outside", "2001:db8:fffe::1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := newTest(t, cfg)
			c := ip(tt.client)
			admit(t, l, c).Close()
			tk, r := l.Admit(c)
			if (r == nil) != tt.exempt {
				t.Errorf("second connection admitted = %v, want %v", r == nil, tt.exempt)
			}
			tk.Close()
		})
	}
}

// TestPenaltyBoxSurvivesChurn is issue 10's second scene: far more
// addresses than MaxClients pass while some clients sit in their penalty
// box; the churn must not let one out before its box ends.
func TestPenaltyBoxSurvivesChurn(t *testing.T) {
	const (
		maxClients = 5000
		addrs      = 20000
		base       = 10 * time.Second
	)
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}) }
	bad := func(i int) bool { return i%10 == 0 } // 2,000 clients that always fail
	l, clk := newTest(t, Config{ClientRate: 20, ClientBurst: 40, PenaltyFailures: 3, PenaltyBase: base, MaxClients: maxClients})
	conn := func(a netip.Addr, ok bool) *Refusal {
		tk, r := l.Admit(a)
		if r != nil {
			return r
		}
		tk.StartHandshake()
		tk.Handshake(ok)
		tk.Close()
		return nil
	}
	boxedUntil := map[int]time.Time{}
	for i := range addrs {
		a := addr(i)
		if !bad(i) {
			if r := conn(a, true); r != nil {
				t.Fatalf("good client %d refused by %s", i, r.Limit)
			}
		} else {
			for range 3 {
				conn(a, false)
			}
			boxedUntil[i] = clk.Now().Add(base)
		}
		clk.Advance(100 * time.Microsecond)
	}
	// Two more rounds of the good clients, checking boxed ones on the way.
	check := func(i int) {
		t.Helper()
		r := conn(addr(i), true)
		if left := boxedUntil[i].Sub(clk.Now()); left > 0 && (r == nil || r.Limit != LimitPenalty || r.RetryAfter != left) {
			t.Fatalf("client %d, %v before its box ends: refusal %+v, want penalty for %v", i, left, r, left)
		}
	}
	for round := range 2 {
		for i := range addrs {
			if !bad(i) {
				conn(addr(i), true)
			} else if (i/10)%7 == round {
				check(i)
			}
			clk.Advance(50 * time.Microsecond)
		}
	}
	st := l.Stats()
	if st.EvictedClients < addrs/2 {
		t.Fatalf("EvictedClients = %d: the table did not churn", st.EvictedClients)
	}
	if st.TrackedClients > maxClients || st.UntrackedAdmits != 0 || st.ClientTableFull {
		t.Fatalf("Stats = %+v, want at most %d tracked and none untracked", st, maxClients)
	}
	for i := range boxedUntil {
		check(i)
	}
	st = l.Stats()
	t.Logf("%d addresses, MaxClients %d: %d evicted, %d tracked, %d penalty refusals, %d boxed clients all still refused",
		addrs, maxClients, st.EvictedClients, st.TrackedClients, st.Refused[LimitPenalty], len(boxedUntil))
	// Once the last box has ended, every one of them may try again.
	clk.Advance(base)
	for i := range boxedUntil {
		if r := conn(addr(i), true); r != nil {
			t.Fatalf("client %d refused by %s after its box ended", i, r.Limit)
		}
	}
}

func TestClientTableFullOfBoxedClients(t *testing.T) {
	const base = 10 * time.Second
	l, clk := newTest(t, Config{PenaltyFailures: 1, PenaltyBase: base, MaxClients: 256})
	fail := func(a netip.Addr) *Refusal {
		tk, r := l.Admit(a)
		if r != nil {
			return r
		}
		tk.StartHandshake()
		tk.Handshake(false)
		tk.Close()
		return nil
	}
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)}) }
	var boxed []netip.Addr
	for i := range 1000 {
		a := addr(i)
		if r := fail(a); r != nil {
			t.Fatalf("client %d refused by %s on its first connection", i, r.Limit)
		}
		if r := fail(a); r != nil && r.Limit == LimitPenalty {
			boxed = append(boxed, a)
		}
	}
	st := l.Stats()
	if len(boxed) != 256 || st.TrackedClients != 256 {
		t.Fatalf("%d boxed, %d tracked; want the table's 256 both", len(boxed), st.TrackedClients)
	}
	if !st.ClientTableFull || st.ClientTableFullTimes == 0 || st.UntrackedAdmits == 0 || st.EvictedClients != 0 {
		t.Fatalf("Stats = %+v, want full, untracked admits and no evictions", st)
	}
	// Untracked newcomers were admitted (checked above); the boxed stay in.
	for _, a := range boxed {
		if r := fail(a); r == nil || r.Limit != LimitPenalty {
			t.Fatalf("%v: refusal %+v, want penalty", a, r)
		}
	}
	clk.Advance(base)
	// Boxes over: newcomers are tracked again, taking the places of
	// expired boxes, and the table is no longer full. A newcomer evicts
	// within its own shard, and the shards are filled unevenly (the hash
	// is seeded at random), so a few newcomers are asked.
	for i := range 64 {
		if r := fail(netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)})); r != nil {
			t.Fatal(r)
		}
		if l.Stats().EvictedClients > 0 {
			break
		}
	}
	if st := l.Stats(); st.ClientTableFull || st.EvictedClients == 0 {
		t.Fatalf("Stats = %+v after the boxes ended, want not full and an eviction", st)
	}
}

// TestLogAttrs: the log line names each limit by its key, with
// durations as text.
func TestLogAttrs(t *testing.T) {
	c := DefaultConfig()
	c.PenaltyWindow = time.Minute
	attrs := c.LogAttrs()
	if len(attrs)%2 != 0 {
		t.Fatalf("odd attrs %v", attrs)
	}
	got := map[string]any{}
	for i := 0; i < len(attrs); i += 2 {
		got[attrs[i].(string)] = attrs[i+1]
	}
	if got["penalty_window"] != "1m0s" || got["client_rate"] != c.ClientRate || got["max_clients"] != c.MaxClients {
		t.Fatalf("attrs %v", got)
	}
}
