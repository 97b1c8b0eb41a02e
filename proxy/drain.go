package proxy

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// The shutdown drain of MQTT connections (issue 14).
//
// Cutting every session at the end of the grace period, at the same
// moment and without a word, makes every client reconnect at once: a
// retry storm on the next instance. Instead, Shutdown gives each MQTT
// connection its own moment, spread evenly over the grace period (less a
// margin), in a random order. At its moment the connection ends at a
// packet boundary of the broker-to-client stream, never inside a packet
// the broker is sending:
//
//   - an MQTT 5 client first gets a DISCONNECT with reason 0x8B, server
//     shutting down (E0 02 8B 00), once the broker has sent its CONNACK;
//   - an MQTT 3.1 or 3.1.1 client (no server DISCONNECT in those
//     versions), or one whose CONNECT is not through yet, just sees the
//     end of the stream.
//
// Then our side of the client connection is closed for writing (a TLS
// close_notify) and the backend connection is closed. The broker is sent
// no DISCONNECT: one with reason 0 (normal) would make it discard the
// client's Will, which the client never asked for. A closed connection
// is, for the broker, a client that went away: it publishes the Will, as
// it would if the client had lost its network (MQTT 5, 3.1.2.5). The
// split by version is the one EMQX makes when it kicks a client out: a
// DISCONNECT for MQTT 5, the socket closed for 3.x
// (https://github.com/emqx/emqx/issues/3491). The client is given
// drainLinger to close its side; well-behaved clients close on the
// DISCONNECT or the end of stream.
//
// The broker-to-client direction knows its boundaries from a mqttFramer
// fed with the bytes it copies. A direction that is parked sits at a
// boundary iff its framer says so (a broker stalled inside a packet is
// not): it is taken back from the watcher and ended on a fresh goroutine.
// One that is not at a boundary copies on, without parking, until the
// packet under way is through. A stream that stopped parsing as MQTT
// never reaches a boundary: it is closed with everything else when the
// grace period ends, as are non-MQTT (raw) connections.

// disconnectShuttingDown is the MQTT 5 DISCONNECT packet with reason code
// 0x8B (server shutting down) and no properties: fixed header 0xE0,
// remaining length 2, reason code, property length 0.
var disconnectShuttingDown = []byte{0xE0, 0x02, 0x8B, 0x00}

const (
	// drainLinger is how long a client has to close its side once the
	// drain ended the connection.
	drainLinger = 2 * time.Second
	// drainWriteTimeout bounds writing the DISCONNECT to a client that
	// reads nothing.
	drainWriteTimeout = 2 * time.Second
)

// errDrained ends the backend-to-client direction at a packet boundary
// when the drain asked for it.
var errDrained = errors.New("drained")

// drainReport counts what a drain did.
type drainReport struct {
	// Started is when the drain began; zero when none ran.
	Started time.Time
	// Window is the time the drain spread the connections over.
	Window time.Duration
	// Scheduled is how many connections the drain took on.
	Scheduled int
	// Disconnected got a DISCONNECT 0x8B (MQTT 5); Closed were closed at
	// a packet boundary without one (MQTT 3.x, or no CONNACK yet).
	Disconnected, Closed int64
}

// drainRun is a drain under way: one goroutine, owned by the pipes, that
// asks one connection after another to end.
type drainRun struct {
	started      time.Time
	window       time.Duration
	scheduled    int
	disconnected atomic.Int64
	closed       atomic.Int64
	stop         chan struct{}
	stopOnce     sync.Once
	done         chan struct{}
}

func (d *drainRun) stopAndWait() {
	d.stopOnce.Do(func() { close(d.stop) })
	<-d.done
}

// drain starts ending the MQTT connections the pipes carry, each at its
// own moment spread evenly over window in a random order, and returns at
// once. Pipes started later are drained when they start. It does nothing
// without MQTT, once closed, or when a drain already runs.
func (ps *pipes) drain(window time.Duration) {
	if !ps.opts.MQTT {
		return
	}
	ps.mu.Lock()
	if ps.closed || ps.dr != nil {
		ps.mu.Unlock()
		return
	}
	live := make([]*pipe, 0, len(ps.all))
	for p := range ps.all {
		live = append(live, p)
	}
	d := &drainRun{started: time.Now(), window: max(window, 0), scheduled: len(live), stop: make(chan struct{}), done: make(chan struct{})}
	ps.dr = d
	ps.mu.Unlock()
	go func() {
		defer close(d.done)
		spreadOver(live, d.started, d.window, d.stop, (*pipe).drain)
	}()
}

// spreadOver calls end on each of items, in a random order, at start +
// window*(i+½)/n: the same time apart, none at the very start or end of
// the window. It returns when all are done or stop is closed.
func spreadOver[T any](items []T, start time.Time, window time.Duration, stop <-chan struct{}, end func(T)) {
	rand.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	n := time.Duration(len(items))
	for i, it := range items {
		at := start.Add(window * (2*time.Duration(i) + 1) / (2 * n))
		if wait := time.Until(at); wait > 0 {
			t.Reset(wait)
			select {
			case <-t.C:
			case <-stop:
				return
			}
		}
		end(it)
	}
}

// drainWindow is how long a drain may take under Shutdown's ctx: the time
// left until its deadline less drainMargin; false without a deadline.
func drainWindow(ctx context.Context) (time.Duration, bool) {
	dl, ok := ctx.Deadline()
	return time.Until(dl) * (100 - drainMargin) / 100, ok
}

// drainStats reports the drain that ran, if any.
func (ps *pipes) drainStats() drainReport {
	ps.mu.Lock()
	d := ps.dr
	ps.mu.Unlock()
	if d == nil {
		return drainReport{}
	}
	return drainReport{Started: d.started, Window: d.window, Scheduled: d.scheduled, Disconnected: d.disconnected.Load(), Closed: d.closed.Load()}
}

// drain asks the backend-to-client direction to end at its next packet
// boundary. It does not wait.
//
// The flag is set before the watcher is asked: watcher.park refuses a
// draining direction, under the watcher's lock, so a direction is either
// taken back here or never parks again. A direction on its goroutine may
// be blocked reading the backend: an expired read deadline wakes it, and
// it sets its own deadline again on seeing the flag (half.copy).
func (p *pipe) drain() {
	h := &p.halves[1]
	if h.fr == nil || p.level.Load() == levelNotMQTT || p.draining.Swap(true) {
		return // not MQTT: closed when the grace period ends
	}
	p.ps.mu.Lock()
	w := p.ps.w
	p.ps.mu.Unlock()
	if w != nil && w.unpark(h) {
		go h.run(false)
		return
	}
	h.src.SetReadDeadline(aLongTimeAgo)
}

// endDrained ends the connection at a packet boundary of the
// backend-to-client stream, with a DISCONNECT 0x8B first for an MQTT 5
// client past its CONNACK. The client is then closed for writing, and the
// backend closed (the broker publishes the client's Will: see above).
func (h *half) endDrained() {
	p := h.p
	p.ps.mu.Lock()
	run := p.ps.dr
	p.ps.mu.Unlock()
	if p.level.Load() == 5 && h.fr.connack {
		h.dst.SetWriteDeadline(time.Now().Add(drainWriteTimeout))
		if w, err := h.dst.Write(disconnectShuttingDown); err == nil {
			h.n += int64(w)
			if run != nil {
				run.disconnected.Add(1)
			}
		}
	} else if run != nil {
		run.closed.Add(1)
	}
	p.mu.Lock()
	p.drained = true
	p.mu.Unlock()
	p.backend().Close()
	h.end()
}

// learnLevel feeds the client's first bytes to the CONNECT sniffer until
// they tell the protocol level.
func (h *half) learnLevel(b []byte) {
	if l := h.sniff.feed(b); l != levelUnknown {
		h.p.level.Store(l)
		h.sniff = nil
	}
}
