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

// Ticket is an admitted connection. Handshake should be called once when
// its handshake ends, and Close once when the connection ends; both are
// safe to call from different goroutines, and on a nil Ticket.
type Ticket struct {
	l        *Limiter
	sh       *shard[clientKey, clientState] // nil when untracked
	idx      int32
	closed   bool        // guarded by sh.mu
	hsDone   atomic.Bool // the handshake slot has been given back
	finished atomic.Bool // Close has run
}

// Admit decides whether a new connection from client may go on to its TLS
// handshake. It costs no crypto and does not block. The checks, in order:
// the penalty box, the client's open connections, the client's rate, then
// the global handshakes in flight. An invalid client address (no IP, e.g.
// a unix socket) and an exempt one skip the per-client limits.
func (l *Limiter) Admit(client netip.Addr) (*Ticket, *Refusal) {
	if l == nil {
		return nil, nil
	}
	now := l.nanotime()
	t := &Ticket{l: l, idx: noSlot}
	if l.perClient && client.IsValid() && !l.exempt(client) {
		k := keyOf(client)
		s := l.clients.shardFor(k)
		s.mu.Lock()
		idx, _ := s.unsyncedGet(k, func(c *clientState) bool { return l.clientExpired(c, now) })
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
	if n := l.handshakes.Add(1); l.cfg.MaxHandshakes > 0 && n > int64(l.cfg.MaxHandshakes) {
		t.Close()
		return nil, l.refuse(idHandshakes, time.Second, now, true)
	}
	return t, nil
}

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
		if wait, ok := gcra(&c.tat, now, l.clientT, l.clientTau); !ok {
			return idClientRate, time.Duration(wait)
		}
	}
	return numLimits, 0
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
// the handshake slot and feeds the penalty box.
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

func (t *Ticket) releaseHandshake() {
	if t.hsDone.CompareAndSwap(false, true) {
		t.l.handshakes.Add(-1)
	}
}

// Close releases what the ticket holds: its handshake slot if Handshake
// was not called, and its place in the client's open connections.
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
	client = client.Unmap()
	for _, p := range l.cfg.Exempt {
		if p.Contains(client) {
			return true
		}
	}
	return false
}
