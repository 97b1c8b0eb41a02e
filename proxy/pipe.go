package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// bigBuf is what a direction reads into while data flows. crypto/tls
	// returns at most one record (16 KiB of plaintext) per Read, so a
	// record is never split across reads; two whole records fit.
	bigBuf = 32 << 10
	// smallBuf is what a quiet TLS direction blocks on where there is no
	// socket to wait on (not unix): crypto/tls needs a buffer to read into.
	// The first record after the quiet spell is split once.
	smallBuf = 512
	// maxPlaintextRecord is the most one TLS record carries: a read that
	// returns less is likely not part of a bulk flow.
	maxPlaintextRecord = 16 << 10
	// maxRecordOnWire is the most one TLS record takes on the wire: a
	// header, the plaintext and up to 256 bytes of expansion.
	maxRecordOnWire = 5 + maxPlaintextRecord + 256
	// closeGrace bounds how long one direction may stay open after the
	// other has finished, so a peer that never closes cannot hang us.
	closeGrace = 30 * time.Second
	// defaultParkAfter is how long a direction waits for data on its own
	// goroutine before it parks.
	defaultParkAfter = time.Second
)

var (
	bigPool   = sync.Pool{New: func() any { b := make([]byte, bigBuf); return &b }}
	smallPool = sync.Pool{New: func() any { b := make([]byte, smallBuf); return &b }}
)

// pipeOptions configure the pipes of one Server.
type pipeOptions struct {
	// IdleTimeout closes a connection with no traffic either way for
	// this long; zero means never.
	IdleTimeout time.Duration
	// ParkAfter is how long a direction with no data keeps its goroutine
	// before it parks: its socket waits in the shared readiness watcher,
	// with no goroutine and no buffer of ours. Zero means 1 s; negative
	// turns parking off: a quiet direction then waits on its goroutine,
	// still with no buffer.
	ParkAfter time.Duration
	// MQTT says the connections carry MQTT: their packet boundaries are
	// followed, so that a drain can end them between packets.
	MQTT bool
	Log  *slog.Logger
}

// pipes copies bytes both ways for the forwarded tcp connections of one
// Server and owns everything that does: the copy goroutines, the parked
// connections and the watcher they wait in. Its methods are safe for
// concurrent use.
type pipes struct {
	opts      pipeOptions
	quietWait time.Duration // how long a direction waits before going quiet
	park      bool          // ParkAfter >= 0

	mu     sync.Mutex
	closed bool
	all    map[*pipe]struct{}
	w      *watcher // created on the first park; nil until then or if it failed
	wErr   error    // why the watcher could not be made; parking is off then
	// dr is the running drain (see drain.go); nil before one starts.
	dr *drainRun
}

func newPipes(o pipeOptions) *pipes {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	ps := &pipes{opts: o, quietWait: o.ParkAfter, park: o.ParkAfter >= 0, all: map[*pipe]struct{}{}}
	if ps.quietWait <= 0 {
		ps.quietWait = defaultParkAfter
	}
	return ps
}

// pipeOwner hears how a pipe's connection went. The pipe keeps it for
// the connection's life, so an owner holds what the end needs instead of
// a closure over a filled report.
type pipeOwner interface {
	// answered hears once whether the backend answered the client's
	// first packet, as dialer.dialAwaitingAnswer says. It is called only
	// for a pipe started with awaitAnswer.
	answered(err error)
	// finish runs once, when both directions have ended and the
	// backend's connection is closed, with the bytes carried each way;
	// it must close the client's connection.
	finish(fromClient, toClient int64)
}

// startAnswered copies both ways between the client (TLS) and the backend
// (plain), honouring half-close, and returns at once. owner's finish runs
// once, when both directions have ended.
//
// Copying runs on fresh goroutines: the caller's goroutine ran the TLS
// handshake and the backend dial, which grew its stack, and a goroutine
// keeps its stack at the largest size it needed. A direction with no data
// for ParkAfter parks: its goroutine returns and the first readable byte
// starts a new one.
//
// level is the client's MQTT protocol level when the CONNECT was read
// before (it was replayed to the backend); zero lets the pipe learn it
// from the client's first bytes. It matters only with MQTT.
//
// awaitAnswer is for a backend that answers the client's first packet, an
// MQTT broker its CONNECT: owner's answered is then called once, and an
// MQTT client whose broker ends the connection unanswered gets a CONNACK
// refusing it (see unanswered).
func (ps *pipes) startAnswered(client halfCloser, backend net.Conn, level byte, awaitAnswer bool, owner pipeOwner) {
	p := &pipe{ps: ps, owner: owner, awaitAnswer: awaitAnswer}
	p.lastActive.Store(time.Now().UnixNano())
	p.left.Store(2)
	p.halves[0] = half{p: p, src: client, dst: backend}
	p.halves[1] = half{p: p, src: backend, dst: client, awaitsAnswer: awaitAnswer}
	if ps.opts.MQTT {
		// In the pipe, not beside it: one allocation less per
		// connection.
		p.halves[1].fr = &p.framer
		if level != 0 {
			p.level.Store(uint32(level))
		} else {
			p.halves[0].sniff = new(connectSniffer)
		}
	}
	// The client's socket is under crypto/tls (and maybe a PROXY header
	// reader); it serves only to wait for readability. The backend's is
	// read directly when it is a plain socket, so a quiet backend holds
	// no buffer even before it parks.
	p.halves[0].raw = socketOf(client)
	if raw := plainSocketOf(backend); raw != nil {
		p.halves[1].raw, p.halves[1].rawReads = raw, true
	}
	ps.mu.Lock()
	closed := ps.closed
	ps.all[p] = struct{}{}
	draining := ps.dr != nil
	ps.mu.Unlock()
	go p.halves[0].run(true)
	go p.halves[1].run(true)
	if closed {
		p.abort()
	} else if draining {
		// Set up while the drain ran: its turn is now.
		p.drain()
	}
}

// closeAll closes every connection the pipes carry, parked or not, and
// stops the watcher. Each connection's finish still runs, from the
// goroutine that ends it last. Pipes started afterwards are closed at
// once. It is safe to call more than once.
func (ps *pipes) closeAll() {
	ps.mu.Lock()
	ps.closed = true
	live := make([]*pipe, 0, len(ps.all))
	for p := range ps.all {
		live = append(live, p)
	}
	w := ps.w
	d := ps.dr
	ps.mu.Unlock()
	if d != nil {
		d.stopAndWait()
	}
	for _, p := range live {
		p.abort()
	}
	if w != nil {
		w.close()
	}
}

// watcher returns the readiness watcher, creating it on first use, or nil
// when parking is off, unavailable, or the pipes are closed.
func (ps *pipes) watcher() *watcher {
	if !ps.park {
		return nil
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed || ps.wErr != nil {
		return nil
	}
	if ps.w == nil {
		ps.w, ps.wErr = newWatcher(ps.opts.Log)
		if ps.wErr != nil {
			ps.opts.Log.Warn("parking idle connections is off", "err", ps.wErr)
			return nil
		}
	}
	return ps.w
}

// parked reports how many directions wait in the watcher, for tests.
func (ps *pipes) parked() int {
	ps.mu.Lock()
	w := ps.w
	ps.mu.Unlock()
	if w == nil {
		return 0
	}
	return w.len()
}

// pipe is one forwarded connection.
type pipe struct {
	ps *pipes
	// The client's and the backend's connections are halves[0].src and
	// halves[0].dst: a pipe lives as long as its connection, so it does
	// not keep them twice.
	owner      pipeOwner
	lastActive atomic.Int64 // unix nanoseconds of the last data either way
	halves     [2]half      // client to backend, backend to client
	left       atomic.Int32 // directions still copying

	// draining asks the backend-to-client direction to end at the next
	// packet boundary (drain.go); level is the client's MQTT protocol
	// level (levelUnknown, 3, 4, 5 or levelNotMQTT).
	draining atomic.Bool
	level    atomic.Uint32
	// framer is halves[1].fr with MQTT.
	framer mqttFramer

	// awaitAnswer: owner hears once whether the backend answered
	// (startAnswered); clientEnded is set when the client's direction
	// ended, so that a backend closing after the client left is not
	// blamed.
	awaitAnswer bool
	answeredSet atomic.Bool
	clientEnded atomic.Bool

	mu      sync.Mutex
	grace   *time.Timer // set by the first direction to end
	idle    *time.Timer // checks the idle timeout while a direction is parked
	done    bool        // both directions ended
	drained bool        // ended by the drain: the other side gets drainLinger
}

// half is one direction of a pipe. Whoever holds it (its goroutine, or
// the watcher while it is parked) is the only one touching n.
type half struct {
	p        *pipe
	src, dst net.Conn
	raw      syscall.RawConn // src's socket, or nil: this direction cannot park
	n        int64           // bytes copied
	// fr follows the MQTT packet boundaries of the backend-to-client
	// direction (it points into the pipe); sniff learns the level from
	// the client's CONNECT. Each is nil where it does not apply.
	fr    *mqttFramer
	sniff *connectSniffer
	token uint32 // the watcher's key while parked; guarded by the watcher
	// The flags sit together after token: a half is kept for every idle
	// connection, twice.
	rawReads bool // src is a plain socket read through raw
	// awaitsAnswer is set on the backend's direction until its first
	// byte, when the pipe's owner wants to hear of it.
	awaitsAnswer bool
}

// errParked ends a direction's goroutine without ending the direction.
var errParked = errors.New("parked")

// errIdle ends a direction on the idle timeout.
var errIdle = errors.New("idle timeout")

// run copies until the direction ends or parks. first is true when the
// direction starts, false when its socket woke it from parking.
func (h *half) run(first bool) {
	err := h.copy(first)
	switch err {
	case errParked:
		return
	case errDrained:
		h.endDrained()
		return
	}
	if h == &h.p.halves[0] {
		h.p.clientEnded.Store(true)
	} else if h.awaitsAnswer {
		h.unanswered(err)
	}
	h.end()
}

// unanswered handles a backend that ended the connection before its first
// byte. If the client had started an MQTT session and is still there, the
// backend failed it: the breaker hears of it, and the client gets the
// CONNACK for "server unavailable" rather than a bare close, so that it
// backs off as the protocol says. Otherwise (we closed the connection,
// the client left first, the idle timeout, not MQTT) nobody failed.
func (h *half) unanswered(err error) {
	p := h.p
	level := p.level.Load()
	if errors.Is(err, net.ErrClosed) || err == errIdle || p.clientEnded.Load() || level == levelUnknown || level == levelNotMQTT {
		p.answer(context.Canceled)
		return
	}
	if err == nil {
		err = io.EOF
	}
	p.answer(fmt.Errorf("%w: %w", errNoAnswer, err))
	h.dst.SetWriteDeadline(time.Now().Add(answerTimeout))
	h.dst.Write(connack(byte(level), reasonUnavailable))
}

// answerTimeout bounds writing the CONNACK to a client whose broker left
// it unanswered: one that reads nothing must not hold the connection.
const answerTimeout = 2 * time.Second

// answer calls the pipe's answered hook, once.
func (p *pipe) answer(err error) {
	if p.awaitAnswer && p.answeredSet.CompareAndSwap(false, true) {
		p.owner.answered(err)
	}
}

// end finishes the direction: the write side of dst is closed, and the
// pipe is finished if the other direction has ended too.
func (h *half) end() {
	closeWrite(h.dst)
	h.p.end()
}

// copy copies from src to dst. It returns nil at EOF, errParked when it
// parked, or the error that stopped it.
//
// No buffer is held while waiting: a plain socket is read through raw
// once readable (rawReadLazy). crypto/tls needs a buffer to read into, so
// after a read that was not a full record the TLS direction looks, without
// blocking, whether crypto/tls holds more (a read under an expired
// deadline); only once that timed out does it give the buffer back and
// wait for its socket to be readable. A timed-out read is also what
// allows parking (see park_linux.go).
//
// The read deadline is set when a quiet spell could start, not per read,
// and moved on when it fires after data came.
func (h *half) copy(first bool) error {
	ps := h.p.ps
	idle := ps.opts.IdleTimeout
	last := time.Now() // last data in this direction
	// deadline is the read deadline set on src (zero: none); recheck says
	// it must be worked out again before the next wait.
	var deadline time.Time
	recheck := true
	// Only for a TLS src without a socket to wait on: quiet, it blocks
	// on a small buffer.
	quiet := false
	// waits says the direction can wait for its socket to be readable:
	// a TLS src with a socket under it.
	waits := h.raw != nil && !h.rawReads
	// probe: crypto/tls may hold more, read without blocking. A new
	// direction starts so: the handshake may have read early data along
	// with its own. One woken from parking has bytes on its socket.
	probe := waits && first
	drained := false // nothing is buffered above the socket
	var buf *[]byte
	defer func() { putBuf(buf) }()
	for {
		if recheck {
			next := h.nextCheck(last, quiet)
			if next != deadline {
				h.src.SetReadDeadline(next)
				deadline = next
			}
			recheck = false
		}
		draining := h.fr != nil && h.p.draining.Load()
		if draining && h.fr.atBoundary() {
			return errDrained
		}
		var n int
		var err error
		switch {
		case h.rawReads:
			n, err = rawReadLazy(h.raw, h.src, &buf)
		case drained:
			if err = waitReadable(h.raw); err == nil {
				drained = false
				continue
			}
		default:
			if buf == nil {
				buf = getBuf(quiet)
			}
			if probe {
				n, err = h.readBuffered(*buf, deadline)
				probe = false
				if n == 0 && isTimeout(err) {
					putBuf(buf)
					buf = nil
					drained = true
					continue
				}
			} else {
				n, err = h.src.Read(*buf)
				if waits {
					n, err = h.readMore(*buf, n, err)
				}
			}
		}
		if n > 0 {
			last = time.Now()
			h.p.lastActive.Store(last.UnixNano())
			out := (*buf)[:n]
			if h.sniff != nil {
				h.learnLevel(out)
			}
			if h.fr != nil {
				// Draining, only up to the end of the packet under way:
				// what follows is not sent, the connection ends there.
				draining = h.p.draining.Load()
				out = out[:h.fr.advance(out, draining)]
			}
			w, werr := h.write(out)
			h.n += int64(w)
			if h.awaitsAnswer {
				h.awaitsAnswer = false
				h.p.answer(nil)
			}
			if werr != nil {
				return werr
			}
			if draining && h.fr.atBoundary() {
				putBuf(buf)
				buf = nil
				return errDrained
			}
			switch {
			case h.rawReads:
				putBuf(buf)
				buf = nil
			case quiet:
				// Data again: back to the big buffer.
				quiet = false
				putBuf(buf)
				buf = nil
				recheck = true
			case waits && n < maxPlaintextRecord:
				// Not a full record, so likely not a bulk flow.
				probe = true
			}
		}
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if !isTimeout(err) {
			return err
		}
		if draining || (h.fr != nil && h.p.draining.Load()) {
			// The drain may have set an expired deadline to wake us
			// (pipe.drain): set ours again whatever we last set.
			deadline = aLongTimeAgo
		}
		if waits {
			// The read timed out: nothing is buffered above the socket.
			drained = true
			putBuf(buf)
			buf = nil
		}
		now := time.Now()
		if idle > 0 && now.Sub(time.Unix(0, h.p.lastActive.Load())) >= idle {
			return errIdle
		}
		recheck = true
		if quiet || now.Sub(last) < ps.quietWait {
			continue // data came since the deadline was set
		}
		if buf != nil {
			putBuf(buf)
			buf = nil
		}
		if h.park() {
			return errParked
		}
		// Cannot park. A reader that has no socket to wait on waits on a
		// small buffer.
		quiet = h.raw == nil
	}
}

// write writes b to dst: to the backend's socket directly when it is a
// plain one (see rawio.go), else through its net.Conn.
func (h *half) write(b []byte) (int, error) {
	if be := &h.p.halves[1]; h != be && be.rawReads {
		return rawWrite(be.raw, h.dst, b)
	}
	return h.dst.Write(b)
}

// readBuffered reads what crypto/tls holds above the socket without
// touching the socket: it fails with a timeout when that is nothing.
// deadline is the read deadline the direction has set.
func (h *half) readBuffered(buf []byte, deadline time.Time) (int, error) {
	if tc, ok := h.src.(*tls.Conn); ok {
		if c, ok := tc.NetConn().(*conn); ok {
			// Without a deadline dance: two timer updates and an
			// error allocated per message.
			c.bufferedOnly = true
			n, err := tc.Read(buf)
			c.bufferedOnly = false
			return n, err
		}
	}
	h.src.SetReadDeadline(aLongTimeAgo)
	n, err := h.src.Read(buf)
	h.src.SetReadDeadline(deadline)
	return n, err
}

// readMore adds whole records to buf[:n] while a full record came, the
// buffer has room for another and the socket already holds one, so that
// a bulk flow reaches the backend in writes of up to len(buf).
//
// The socket holding a whole record's worth of bytes means the next Read
// does not block: crypto/tls needs at most that many (fewer if it buffered
// part of the record already). Only a peer that sends that much in
// post-handshake messages could make it wait, delaying its own data.
func (h *half) readMore(buf []byte, n int, err error) (int, error) {
	for err == nil && n%maxPlaintextRecord == 0 && len(buf)-n >= maxPlaintextRecord && pendingBytes(h.raw) >= maxRecordOnWire {
		var m int
		m, err = h.src.Read(buf[n:])
		n += m
	}
	return n, err
}

// aLongTimeAgo is an expired deadline: a read under it returns what is
// buffered or times out at once.
var aLongTimeAgo = time.Unix(1, 0)

// nextCheck is when a quiet spell that starts now should be looked at:
// when it would let the direction park or go quiet, or hit the idle
// timeout. Zero means never.
func (h *half) nextCheck(last time.Time, quiet bool) time.Time {
	var t time.Time
	// A draining direction does not park or go quiet: it waits on its
	// goroutine for the rest of the packet under way.
	draining := h.fr != nil && h.p.draining.Load()
	if !quiet && !draining && (h.raw == nil || h.p.ps.park) {
		t = last.Add(h.p.ps.quietWait)
	}
	if idle := h.p.ps.opts.IdleTimeout; idle > 0 {
		at := time.Unix(0, h.p.lastActive.Load()).Add(idle)
		if t.IsZero() || at.Before(t) {
			t = at
		}
	}
	return t
}

func getBuf(small bool) *[]byte {
	if small {
		return smallPool.Get().(*[]byte)
	}
	return bigPool.Get().(*[]byte)
}

func putBuf(b *[]byte) {
	if b == nil {
		return
	}
	if len(*b) == smallBuf {
		smallPool.Put(b)
		return
	}
	bigPool.Put(b)
}

// end is called once per direction when it is done.
func (p *pipe) end() {
	if p.left.Add(-1) > 0 {
		// One side finished: give the other a bounded time to finish
		// too, without a goroutine waiting for it.
		p.mu.Lock()
		if !p.done { // the other side may have ended meanwhile
			grace := closeGrace
			if p.drained {
				grace = drainLinger
			}
			p.grace = time.AfterFunc(grace, p.abort)
		}
		p.mu.Unlock()
		return
	}
	p.mu.Lock()
	p.done = true
	if p.grace != nil {
		p.grace.Stop()
	}
	if p.idle != nil {
		p.idle.Stop()
	}
	p.mu.Unlock()
	p.ps.mu.Lock()
	delete(p.ps.all, p)
	p.ps.mu.Unlock()
	p.answer(context.Canceled) // ended before any answer, by our doing
	// The backend's connection is ours to close: the owner need not keep
	// it for the connection's life only to close it here.
	p.backend().Close()
	p.owner.finish(p.halves[0].n, p.halves[1].n)
}

// abort closes both connections. A running direction then fails and
// ends; a parked one is taken back from the watcher and ended here.
//
// Closing comes first: a direction about to park finds its socket closed
// and does not; one parked before is still in the watcher to take back.
// The client's connection is closed under TLS: a close_notify could wait
// up to 5 s for a client that reads nothing, and closeAll aborts one
// connection after another.
func (p *pipe) abort() {
	if tc, ok := p.client().(*tls.Conn); ok {
		tc.NetConn().Close()
	} else {
		p.client().Close()
	}
	p.backend().Close()
	p.endParked()
}

// client is the client's connection.
func (p *pipe) client() net.Conn { return p.halves[0].src }

// backend is the backend's connection.
func (p *pipe) backend() net.Conn { return p.halves[0].dst }

// endParked ends the directions that are parked.
func (p *pipe) endParked() {
	p.ps.mu.Lock()
	w := p.ps.w
	p.ps.mu.Unlock()
	if w == nil {
		return
	}
	for i := range p.halves {
		if h := &p.halves[i]; w.unpark(h) {
			h.end()
		}
	}
}

// park hands the direction to the watcher. If it reports true the caller
// must return at once: the watcher owns the direction now.
func (h *half) park() bool {
	if h.raw == nil {
		return false
	}
	w := h.p.ps.watcher()
	if w == nil || !w.park(h) {
		return false
	}
	h.p.armIdle()
	return true
}

// armIdle makes sure the idle timeout is checked while a direction is
// parked, since no read deadline does it then.
func (p *pipe) armIdle() {
	idle := p.ps.opts.IdleTimeout
	if idle <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return
	}
	wait := max(time.Until(time.Unix(0, p.lastActive.Load()).Add(idle)), 0)
	if p.idle == nil {
		p.idle = time.AfterFunc(wait, p.checkIdle)
		return
	}
	p.idle.Reset(wait)
}

// checkIdle runs on the idle timer: past the timeout, parked directions
// end (running ones see it on their own read deadline); before it, the
// timer is set again.
func (p *pipe) checkIdle() {
	since := time.Since(time.Unix(0, p.lastActive.Load()))
	if idle := p.ps.opts.IdleTimeout; since < idle {
		p.mu.Lock()
		if !p.done {
			p.idle.Reset(idle - since)
		}
		p.mu.Unlock()
		return
	}
	p.endParked()
}

type halfCloser interface {
	net.Conn
	CloseWrite() error
}

func closeWrite(c net.Conn) {
	if hc, ok := c.(interface{ CloseWrite() error }); ok {
		hc.CloseWrite()
		return
	}
	c.Close()
}
