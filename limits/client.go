package limits

import (
	"net/netip"
	"sync/atomic"
	"time"
)

// clientState is what is kept per client. Times are nanoseconds on the
// limiter's clock.
type clientState struct {
	tat        int64 // GCRA theoretical arrival time for ClientRate
	lastSeen   int64 // last admission attempt or connection close
	failStart  int64 // start of the current failure-counting window
	boxedUntil int64 // refused until then
	conns      int32 // open connections
	fails      int32 // handshake failures since failStart
	strikes    int32 // consecutive boxings; the box lasts base<<(strikes-1)
}

// Ticket is an admitted connection. StartHandshake should be called once
// the client's first bytes have arrived, Handshake once when its handshake
// ends, and Close once when the connection ends. All are safe to call from
// different goroutines, in any order, more than once, and on a nil Ticket:
// the handshake slot and the client's connection place are each given back
// exactly once.
type Ticket struct {
	l        *Limiter
	sh       *shard[clientKey, clientState] // nil when untracked
	idx      int32
	exempt   bool         // the client skips the per-client limits
	closed   bool         // guarded by sh.mu
	hs       atomic.Int32 // hsNone, then hsHeld, then hsDone
	finished atomic.Bool  // Close has run
}

// The life of a ticket's handshake slot. It only moves forward, so that
// a slot is taken at most once and given back at most once.
const (
	hsNone int32 = iota // not taken yet
	hsHeld              // taken by StartHandshake
	hsDone              // given back, or never to be taken (closed first)
)

// Admit decides whether a new connection from client may be read from.
// The proxy calls it right after Accept, before any byte has arrived. It
// costs no crypto and does not block. It applies the per-client limits
// only, in order: the penalty box, the client's open connections, the
// client's rate. An invalid client address (no IP, e.g. a unix socket)
// and an exempt one skip them.
//
// Admit takes no handshake slot: a socket that never sends a byte must not
// hold one, or a few hundred silent sockets would refuse everyone (they
// still count in max_conns through AcquireSlot, and per client). The slot
// is taken by Ticket.StartHandshake once the client has sent the first
// bytes of its ClientHello.
func (l *Limiter) Admit(client netip.Addr) (*Ticket, *Refusal) {
	if l == nil {
		return nil, nil
	}
	now := l.nanotime()
	t := &Ticket{l: l, idx: noSlot, exempt: client.IsValid() && l.exempt(client)}
	if l.perClient && client.IsValid() && !t.exempt {
		k := keyOf(client)
		s := l.clients.shardFor(k)
		s.mu.Lock()
		idx, _ := s.unsyncedGet(k, now)
		if idx == noSlot {
			s.mu.Unlock()
			l.untracked.Add(1)
		} else {
			c := &s.slots[idx].e
			c.lastSeen = now
			id, retry := l.unsyncedCheckClient(c, now)
			if id != numLimits {
				s.unsyncedTouch(idx)
				s.mu.Unlock()
				return nil, l.refuse(id, retry, now, true)
			}
			c.conns++
			s.unsyncedPin(idx)
			s.mu.Unlock()
			t.sh, t.idx = s, idx
		}
	}
	return t, nil
}

// StartHandshake takes a slot among the TLS handshakes in flight
// (Config.MaxHandshakes) for t's connection. The proxy calls it once the
// client's first bytes have arrived (it may peek at them), and not for a
// client that stays silent past Config.ClientHelloTimeout: a silent socket
// costs no CPU, and must not keep a client that talks from its handshake.
//
// On a refusal (Limit handshakes, Busy set) the proxy closes the socket
// after Refusal.Delay, and still calls Close. Calling StartHandshake
// again on a ticket that holds its slot, or after Handshake or Close, takes
// nothing and returns nil.
//
// Exempt clients (Config.Exempt) may go on past the cap, up to a headroom
// of a quarter of it more, which non-exempt clients can never use: a flood
// of handshakes from elsewhere must not fail the host's own health checks
// and self-probe, while an exempt local proxy carrying everyone's traffic
// is still bounded.
func (t *Ticket) StartHandshake() *Refusal {
	if t == nil || t.hs.Load() != hsNone {
		return nil
	}
	l := t.l
	n := l.handshakes.Add(1)
	if limit := int64(l.cfg.MaxHandshakes); limit > 0 {
		if t.exempt {
			limit += exemptHeadroom(limit)
		}
		if n > limit {
			l.handshakes.Add(-1)
			return l.refuse(idHandshakes, time.Second, l.nanotime(), true)
		}
	}
	if !t.hs.CompareAndSwap(hsNone, hsHeld) {
		// Closed (or started by another goroutine) meanwhile: whoever
		// moved the state on owns the outcome; this slot is not needed.
		l.handshakes.Add(-1)
	}
	return nil
}

// exemptHeadroom is how many handshakes past MaxHandshakes only exempt
// clients may start.
func exemptHeadroom(limit int64) int64 { return limit/4 + 1 }

// unsyncedCheckClient applies the per-client limits to c, taking a rate
// token when all pass. It returns numLimits when the client may go on.
// The caller holds c's shard lock.
func (l *Limiter) unsyncedCheckClient(c *clientState, now int64) (limitID, time.Duration) {
	if now < c.boxedUntil {
		return idPenalty, time.Duration(c.boxedUntil - now)
	}
	if l.cfg.ClientMaxConns > 0 && int(c.conns) >= l.cfg.ClientMaxConns {
		return idClientConns, time.Second
	}
	if l.clientT > 0 {
		if wait, ok := GCRA(&c.tat, now, l.clientT, l.clientTau); !ok {
			return idClientRate, time.Duration(wait)
		}
	}
	return numLimits, 0
}

// clientPolicy is how client entries age in the table: a client in its
// penalty box is never forgotten before the box ends, or an attacker with
// more addresses than MaxClients could churn the table to let it out
// early; a client with failures being counted or a doubling still to
// remember goes after plain idle clients.
func (l *Limiter) clientPolicy() policy[clientState] {
	return policy[clientState]{
		expired:   l.clientExpired,
		keepUntil: func(c *clientState) int64 { return c.boxedUntil },
		remembers: func(c *clientState, now int64) bool {
			return !l.clientExpired(c, now) && (c.fails > 0 || c.strikes > 0)
		},
	}
}

// clientExpired reports whether c holds nothing a fresh entry would not:
// no open connections, a full rate bucket, no failures being counted and
// no box or doubling still to remember.
func (l *Limiter) clientExpired(c *clientState, now int64) bool {
	if c.conns > 0 || c.tat > now {
		return false
	}
	if c.fails > 0 && now-c.failStart <= int64(l.cfg.PenaltyWindow) {
		return false
	}
	until := c.boxedUntil
	if c.strikes > 0 {
		until += int64(l.cfg.PenaltyMax)
	}
	return now >= until
}

// Handshake reports how the connection's handshake ended. It gives back
// the handshake slot, if StartHandshake took one, and feeds the penalty
// box. A client that sent nothing within Config.ClientHelloTimeout should
// be reported as Handshake(false): holding sockets open without talking is
// misbehaviour the penalty box is for.
func (t *Ticket) Handshake(ok bool) {
	if t == nil {
		return
	}
	t.releaseHandshake()
	if t.sh == nil || t.l.cfg.PenaltyFailures == 0 {
		return
	}
	now := t.l.nanotime()
	t.sh.mu.Lock()
	defer t.sh.mu.Unlock()
	if t.closed {
		// Close has unpinned the entry; idx may name another client now.
		return
	}
	t.l.unsyncedPenalise(&t.sh.slots[t.idx].e, ok, now)
}

// HandshakeEnded gives back the handshake slot, if StartHandshake took
// one, without feeding the penalty box. It is for handshakes that failed
// through no fault of the client's: the server had no certificate for the
// name yet (an on-demand certificate being obtained, or failing at the
// CA), or it is shutting down. Counting those would box every client
// behind a NAT address because one of the names they visit is broken.
// The proxy calls it instead of Handshake, not as well.
func (t *Ticket) HandshakeEnded() {
	if t == nil {
		return
	}
	t.releaseHandshake()
}

// unsyncedPenalise counts a handshake result against c. The caller holds
// c's shard lock.
func (l *Limiter) unsyncedPenalise(c *clientState, ok bool, now int64) {
	if ok {
		// A success ends the doubling. It does not clear the failure
		// count: behind a NAT, good devices must not hide a broken one
		// forever.
		c.strikes = 0
		return
	}
	if now < c.boxedUntil {
		// Handshakes admitted before the box closed are still ending;
		// they are the same offence, not a new one.
		return
	}
	if c.strikes > 0 {
		if now-c.boxedUntil <= int64(l.cfg.PenaltyMax) {
			// Still failing soon after release: back in, for longer.
			c.strikes++
			c.boxedUntil = now + l.penalty(c.strikes)
			c.fails = 0
			return
		}
		c.strikes = 0 // quiet for long enough: start over
	}
	if c.fails == 0 || now-c.failStart > int64(l.cfg.PenaltyWindow) {
		c.failStart, c.fails = now, 0
	}
	c.fails++
	if int(c.fails) >= l.cfg.PenaltyFailures {
		c.strikes = 1
		c.boxedUntil = now + l.penalty(1)
		c.fails = 0
	}
}

// penalty is how long the strikes-th consecutive boxing lasts.
func (l *Limiter) penalty(strikes int32) int64 {
	d := int64(l.cfg.PenaltyBase)
	for i := int32(1); i < strikes && d < int64(l.cfg.PenaltyMax); i++ {
		d *= 2
	}
	return min(d, int64(l.cfg.PenaltyMax))
}

// releaseHandshake gives back the handshake slot if it is held, and in
// any case makes sure none is taken later.
func (t *Ticket) releaseHandshake() {
	if t.hs.CompareAndSwap(hsHeld, hsDone) {
		t.l.handshakes.Add(-1)
		return
	}
	t.hs.CompareAndSwap(hsNone, hsDone)
}

// Close releases what the ticket holds: its handshake slot if
// StartHandshake took one and Handshake was not called, and its place in
// the client's open connections.
func (t *Ticket) Close() {
	if t == nil || !t.finished.CompareAndSwap(false, true) {
		return
	}
	t.releaseHandshake()
	if t.sh == nil {
		return
	}
	now := t.l.nanotime()
	t.sh.mu.Lock()
	t.closed = true
	c := &t.sh.slots[t.idx].e
	c.conns--
	if c.conns == 0 {
		// Back on the LRU list, as the newest entry.
		c.lastSeen = now
		t.sh.unsyncedUnpin(t.idx)
	}
	t.sh.mu.Unlock()
}

// exempt reports whether client skips the per-client limits.
func (l *Limiter) exempt(client netip.Addr) bool {
	return l.cfg.Exempt.Contains(client.Unmap())
}
