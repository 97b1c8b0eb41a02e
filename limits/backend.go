package limits

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/ratelimit"
)

// pacer hands out turns at a fixed rate; Take blocks until the caller's
// turn. go.uber.org/ratelimit implements it.
type pacer interface{ Take() time.Time }

// newRatePacer paces strictly, without slack: after an idle spell a burst
// is not let through at once, so the backend never sees more than rate
// new connections in any second.
func newRatePacer(rate int) pacer { return ratelimit.New(rate, ratelimit.WithoutSlack) }

// Breaker states.
const (
	breakerClosed = iota
	breakerOpen
	breakerHalfOpen
)

var breakerNames = [...]string{"closed", "open", "half_open"}

// shield guards one backend: pacing of new connections behind a bounded
// waiting room, and a circuit breaker.
type shield struct {
	l    *Limiter
	name string

	pace    pacer // nil when BackendRate is off
	room    int64 // most callers waiting at once
	waiting atomic.Int64

	mu        sync.Mutex
	bstate    int
	fails     int
	openUntil int64
	probing   bool // a trial dial is under way while half open

	done func(error) // bound once, so Backend does not allocate
}

func (l *Limiter) newShield(name string) *shield {
	b := &shield{l: l, name: name}
	if r := l.cfg.BackendRate; r > 0 {
		b.pace = l.newPacer(r)
		// A caller with k others ahead waits about k+1 intervals; let in
		// only those whose wait fits the budget.
		per := time.Second / time.Duration(r)
		b.room = max(1, int64(l.cfg.BackendWait/per))
		if q := int64(l.cfg.BackendQueue); q > 0 {
			b.room = min(b.room, q)
		}
	}
	b.done = b.result
	return b
}

// Backend asks to open a connection to the backend for client. On success,
// done must be called with the dial's result. It may block for the
// backend's pace, at most about Config.BackendWait; a caller that would
// wait longer is refused at once. It is BackendFor with no backend name.
func (l *Limiter) Backend(ctx context.Context, client netip.Addr) (done func(dialErr error), refused *Refusal) {
	return l.BackendFor(ctx, "", client)
}

// BackendFor is Backend for a named backend (e.g. its address): each name
// gets its own pacing and circuit breaker, so one dead route does not
// refuse the others. Up to 256 names are told apart; more share the
// unnamed one.
func (l *Limiter) BackendFor(ctx context.Context, backend string, client netip.Addr) (done func(dialErr error), refused *Refusal) {
	if l == nil {
		return func(error) {}, nil
	}
	b := l.shieldFor(backend)
	now := l.nanotime()
	probe := false
	if l.cfg.BreakerFailures > 0 {
		b.mu.Lock()
		switch b.bstate {
		case breakerOpen:
			if now < b.openUntil {
				left := b.openUntil - now
				b.mu.Unlock()
				return nil, l.refuse(idBackendDown, time.Duration(left), now, false)
			}
			b.bstate = breakerHalfOpen
			b.probing, probe = true, true
		case breakerHalfOpen:
			if b.probing {
				b.mu.Unlock()
				return nil, l.refuse(idBackendDown, l.cfg.BreakerCooldown, now, false)
			}
			b.probing, probe = true, true
		}
		b.mu.Unlock()
	}
	if b.pace != nil {
		if n := b.waiting.Add(1); n > b.room || ctx.Err() != nil {
			b.waiting.Add(-1)
			if probe {
				b.endProbe()
			}
			return nil, l.refuse(idBackendRate, l.cfg.BackendWait, now, false)
		}
		// Take cannot be cancelled, but the waiting room guarantees it
		// returns within about BackendWait.
		b.pace.Take()
		b.waiting.Add(-1)
	}
	return b.done, nil
}

func (l *Limiter) shieldFor(name string) *shield {
	l.backendMu.RLock()
	b, ok := l.backends[name]
	l.backendMu.RUnlock()
	if ok {
		return b
	}
	l.backendMu.Lock()
	defer l.backendMu.Unlock()
	if b, ok := l.backends[name]; ok {
		return b
	}
	if len(l.backends) >= maxBackends {
		return l.backends[""]
	}
	b = l.newShield(name)
	l.backends[name] = b
	return b
}

// endProbe gives up a trial dial that never happened, so the next caller
// may make it.
func (b *shield) endProbe() {
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}

// result feeds a dial's outcome to the breaker.
func (b *shield) result(err error) {
	if b.l.cfg.BreakerFailures == 0 {
		return
	}
	now := b.l.nanotime()
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case err == nil:
		b.bstate, b.fails, b.probing = breakerClosed, 0, false
	case errors.Is(err, context.Canceled):
		// We gave up (shutdown), the backend did not fail.
		b.probing = false
	default:
		b.fails++
		if b.bstate == breakerHalfOpen || b.fails >= b.l.cfg.BreakerFailures {
			b.bstate, b.probing = breakerOpen, false
			b.openUntil = now + int64(b.l.cfg.BreakerCooldown)
		}
	}
}

// state names the breaker's state as callers would now see it.
func (b *shield) state(now int64) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.bstate
	if st == breakerOpen && now >= b.openUntil {
		st = breakerHalfOpen
	}
	return breakerNames[st]
}

func sortBackends(bs []BackendStats) {
	slices.SortFunc(bs, func(a, b BackendStats) int { return strings.Compare(a.Name, b.Name) })
}
