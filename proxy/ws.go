package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tlsfront/tlsfront/limits"
	"github.com/tlsfront/tlsfront/report"
)

// A WebSocket upgrade goes to the backend as the client sent it (with the
// forwarding headers and without hop-by-hop ones), and the backend's answer
// comes back as it is: a refusal with its headers and body, a 101 with
// the subprotocol and extensions the backend chose. After a 101 the two
// raw streams are relayed frame by frame: headers are parsed, payloads are
// not, so the proxy can ping idle clients, cap message size and close
// both sides with a proper close frame, while compression and everything
// else stays between client and backend.

const (
	// upgradeTimeout bounds sending the upgrade and reading the
	// backend's answer.
	upgradeTimeout = 10 * time.Second
	// wsCloseWait bounds waiting for a peer's close frame after tlsfront
	// sent its own, and for the other direction after one has ended.
	wsCloseWait = 3 * time.Second
	// wsReadBuffer is each side's read buffer: frame headers and small
	// frames are read through it, large payloads bypass it.
	wsReadBuffer = 1024
)

func (h *httpForwarder) serveUpgrade(w http.ResponseWriter, r *http.Request, be Backend) {
	log := h.logFor(r)
	client, src, dst := clientOf(r.Context())
	out := h.upgradeRequest(r, be, client)
	bc, err := h.dialer.dialHTTP(r.Context(), be, client, src, dst)
	if err != nil {
		h.dialFailed(w, r, be, err)
		return
	}
	// Until the client's connection is ours, a client that leaves ends
	// the wait for the backend.
	stop := context.AfterFunc(r.Context(), func() { bc.Close() })
	resp, br, err := sendUpgrade(bc, out)
	switch {
	case err != nil:
		stop()
		bc.Close()
		if r.Context().Err() != nil {
			return // the client left; nobody to answer
		}
		log.Warn("backend upgrade failed", "backend", be.String(), "err", err)
		http.Error(w, "bad gateway: the backend closed without answering", http.StatusBadGateway)
		return
	case resp.StatusCode != http.StatusSwitchingProtocols:
		// Any other answer (401, 403, 404, 302, even 200) is the
		// backend's to give: it passes as it is.
		copyAnswer(w, resp)
		resp.Body.Close()
		stop()
		bc.Close()
		return
	case !headerHasToken(resp.Header, "Upgrade", "websocket"):
		stop()
		bc.Close()
		log.Warn("backend switched to another protocol", "backend", be.String(), "upgrade", resp.Header.Get("Upgrade"))
		http.Error(w, "bad gateway: the backend switched to another protocol", http.StatusBadGateway)
		return
	}
	if !stop() {
		bc.Close()
		return // the client left
	}
	h.switchProtocols(w, r, resp, bc, br, log)
}

// sendUpgrade writes out to the backend and reads the head of its answer,
// within upgradeTimeout. br holds whatever the backend sent after it.
func sendUpgrade(bc net.Conn, out *http.Request) (resp *http.Response, br *bufio.Reader, err error) {
	bc.SetDeadline(time.Now().Add(upgradeTimeout))
	defer bc.SetDeadline(time.Time{})
	if err := out.Write(bc); err != nil {
		return nil, nil, err
	}
	br = bufio.NewReaderSize(bc, wsReadBuffer)
	resp, err = http.ReadResponse(br, out)
	return resp, br, err
}

// upgradeRequest is the request sent to the backend for an upgrade.
func (h *httpForwarder) upgradeRequest(r *http.Request, be Backend, peer netip.Addr) *http.Request {
	out := r.Clone(context.Background())
	out.RequestURI = ""
	out.URL = &url.URL{Scheme: "http", Host: backendHost(be), Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	out.Host = r.Host
	if h.opts.RewriteHost {
		out.Host = backendHost(be)
	}
	upgrade := r.Header.Get("Upgrade")
	removeHopHeaders(out.Header)
	out.Header.Set("Connection", "Upgrade")
	out.Header.Set("Upgrade", upgrade)
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header.Set("User-Agent", "") // no Go default in its place
	}
	h.setForwarding(out.Header, r, peer)
	out.Close = false
	if r.ContentLength == 0 {
		out.Body, out.ContentLength = nil, 0
	}
	return out
}

// backendHost is the backend's address as a Host.
func backendHost(be Backend) string {
	if be.Network == "unix" {
		return "backend" // any name: the socket is the address
	}
	return be.Address
}

// copyAnswer passes a backend's answer to the client: status, end-to-end
// headers and body.
func copyAnswer(w http.ResponseWriter, resp *http.Response) {
	removeHopHeaders(resp.Header)
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// dialFailed answers a request whose backend could not be reached: 503
// with a Retry-After, whether a limit refused it or the dial failed.
func (h *httpForwarder) dialFailed(w http.ResponseWriter, r *http.Request, be Backend, err error) {
	var refusal *limits.Refusal
	if errors.As(err, &refusal) {
		writeRetryLater(w, refusal.RetryAfter)
		return
	}
	h.logFor(r).Warn("backend dial failed", "backend", be.String(), "err", err)
	writeUnavailable(w)
}

// switchProtocols completes an upgrade the backend accepted: the client
// gets the backend's 101, and the relay starts on fresh goroutines.
func (h *httpForwarder) switchProtocols(w http.ResponseWriter, r *http.Request, resp *http.Response, bc net.Conn, br *bufio.Reader, log *slog.Logger) {
	upgrade := resp.Header.Get("Upgrade")
	removeHopHeaders(resp.Header)
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.Header().Set("Connection", "Upgrade")
	w.Header().Set("Upgrade", upgrade)
	w.WriteHeader(http.StatusSwitchingProtocols)
	cc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		log.Warn("websocket hijack failed", "err", err)
		bc.Close()
		return
	}
	if err := brw.Flush(); err != nil {
		cc.Close()
		bc.Close()
		return
	}
	cc.SetDeadline(time.Time{})
	// Bytes the client sent right after its request are already read.
	var crd io.Reader = cc
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ := brw.Reader.Peek(n)
		crd = io.MultiReader(bytes.NewReader(bytes.Clone(early)), cc)
	}
	rl := newWSRelay(h.opts, log,
		&wsEnd{conn: cc, r: bufio.NewReaderSize(crd, wsReadBuffer), wtok: make(chan struct{}, 1)},
		&wsEnd{conn: bc, r: br, mask: true, wtok: make(chan struct{}, 1)})
	if !h.ws.add(rl) {
		rl.start(func(int64, int64) {})
		rl.abort(goingAway("server shutting down"), goingAway("proxy shutting down"))
		return
	}
	start := time.Now()
	h.rep.ConnOpened(h.name)
	closed := report.ConnClosed{Listener: h.name, Backend: bc.RemoteAddr().String(), End: "websocket"}
	if s := sessionFrom(r.Context()); s != nil {
		closed.ConnID, closed.Client, closed.SNI, closed.JA4 = s.id, s.client, s.sni, s.ja4
	}
	rl.start(func(in, out int64) {
		closed.FromClient, closed.ToClient, closed.Duration = in, out, time.Since(start)
		h.rep.ConnClosed(closed)
		h.ws.remove(rl)
	})
}

// writeRetryLater answers 503 with a Retry-After carrying jitter, so a herd
// of refused clients comes back spread out in time.
func writeRetryLater(w http.ResponseWriter, after time.Duration) {
	w.Header().Set("Retry-After", retryAfterValue(after))
	http.Error(w, "server busy, retry later", http.StatusServiceUnavailable)
}

func writeUnavailable(w http.ResponseWriter) {
	w.Header().Set("Retry-After", retryAfterValue(5*time.Second))
	http.Error(w, "backend unavailable, retry later", http.StatusServiceUnavailable)
}

// wsEnd is one side of a relayed WebSocket.
type wsEnd struct {
	conn net.Conn
	r    *bufio.Reader
	// mask: frames tlsfront writes to this end are masked, as they must
	// be toward a server (the backend).
	mask bool
	// wtok is the write token, held from a frame's first byte to its
	// last, so that a frame tlsfront injects never lands inside another.
	wtok chan struct{}
	// midFrame: a forwarded frame is partly written (guarded by wtok);
	// nothing can be written to this end any more.
	midFrame bool
	// closeSent: a close frame was written to this end; closeRead: one
	// was read from it.
	closeSent, closeRead atomic.Bool
}

// acquire takes e's write token, waiting until deadline (zero: no limit).
func (e *wsEnd) acquire(deadline time.Time) bool {
	if deadline.IsZero() {
		e.wtok <- struct{}{}
		return true
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case e.wtok <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

func (e *wsEnd) release() { <-e.wtok }

// closeMsg is a close frame tlsfront sends; code 0 sends none.
type closeMsg struct {
	code   uint16
	reason string
}

func goingAway(reason string) closeMsg { return closeMsg{closeGoingAway, reason} }

// wsRelay relays frames between a client and a backend.
type wsRelay struct {
	client, backend *wsEnd
	maxMessage      int64
	interval        time.Duration
	log             *slog.Logger

	fromClient, toClient atomic.Int64 // data payload bytes
	heardAt              atomic.Int64 // unix ns of the client's last bytes
	closing              atomic.Bool  // tlsfront is closing: forward nothing more
	left                 atomic.Int32 // directions still running
	finish               func(fromClient, toClient int64)
	done                 chan struct{}

	mu       sync.Mutex // guards the fields below
	timer    *time.Timer
	stopped  bool
	awaiting bool      // a ping of ours has had no answer yet
	pingSent time.Time // when it went
	pingSeq  uint64
	lastPing []byte // payload of our latest ping, to know its pong
}

func newWSRelay(o HTTPOptions, log *slog.Logger, client, backend *wsEnd) *wsRelay {
	return &wsRelay{client: client, backend: backend, maxMessage: o.MaxMessageSize, interval: o.PingInterval, log: log, done: make(chan struct{})}
}

// start relays both ways on two fresh goroutines (a goroutine parked in
// a read keeps the largest stack it ever needed; these stay shallow) and
// returns. finish runs once both have ended and both connections are
// closed.
func (rl *wsRelay) start(finish func(fromClient, toClient int64)) {
	rl.finish = finish
	rl.left.Store(2)
	rl.heard()
	if rl.interval > 0 {
		rl.mu.Lock()
		rl.timer = time.AfterFunc(rl.interval, rl.tick)
		rl.mu.Unlock()
	}
	go rl.run(rl.client, rl.backend, true)
	go rl.run(rl.backend, rl.client, false)
}

func (rl *wsRelay) heard() { rl.heardAt.Store(time.Now().UnixNano()) }

// pumpEnd says why a direction stopped.
type pumpEnd int

const (
	srcEnded    pumpEnd = iota // the source closed or failed
	dstFailed                  // writing to the other side failed
	tooBig                     // the client's message is over the cap
	badFrame                   // a frame header no length fits
	closingDone                // tlsfront was closing and the source answered
)

func (e pumpEnd) String() string {
	return [...]string{"source ended", "write failed", "message too big", "bad frame", "close answered"}[e]
}

func (rl *wsRelay) run(src, dst *wsEnd, fromClient bool) {
	why, err := rl.pump(src, dst, fromClient)
	rl.ended(src, dst, fromClient, why, err)
	if rl.left.Add(-1) == 0 {
		rl.stopKeepalive()
		rl.client.conn.Close()
		rl.backend.conn.Close()
		close(rl.done)
		rl.finish(rl.fromClient.Load(), rl.toClient.Load())
	}
}

// pump relays frames from src to dst until one of them ends.
func (rl *wsRelay) pump(src, dst *wsEnd, fromClient bool) (pumpEnd, error) {
	var hb [maxFrameHeader]byte
	var msg int64 // payload bytes of the client's message so far
	for {
		h, err := readFrameHeader(src.r, &hb)
		if fromClient {
			rl.heard()
		}
		if errors.Is(err, errFrameLength) {
			return badFrame, err
		}
		if err != nil {
			return srcEnded, err
		}
		if rl.closing.Load() {
			// tlsfront has sent its own close: nothing more is
			// forwarded; the source's close frame is the answer.
			if _, err := io.CopyN(io.Discard, src.r, h.length); err != nil {
				return srcEnded, err
			}
			if h.opcode == opClose {
				src.closeRead.Store(true)
				return closingDone, nil
			}
			continue
		}
		head := hb[:h.size]
		if fromClient && h.opcode == opPong && h.length <= maxControlPayload {
			// A pong is tlsfront's when it answers tlsfront's ping,
			// masked as RFC 6455 asks or not (paho sends it unmasked).
			var pb [maxFrameHeader + maxControlPayload]byte
			n := copy(pb[:], head)
			if _, err := io.ReadFull(src.r, pb[n:n+int(h.length)]); err != nil {
				return srcEnded, err
			}
			if rl.ours(h, pb[n:n+int(h.length)]) {
				continue
			}
			head, h.length = pb[:n+int(h.length)], 0
		}
		if !h.control() {
			if h.opcode != opContinuation {
				msg = 0
			}
			if fromClient && rl.maxMessage > 0 && h.length > rl.maxMessage-msg {
				return tooBig, nil
			}
			msg += h.length
		}
		if h.opcode == opClose {
			src.closeRead.Store(true)
		}
		rerr, werr := forwardFrame(dst, head, src.r, h.length)
		if werr != nil {
			return dstFailed, werr
		}
		if rerr != nil {
			return srcEnded, rerr
		}
		if fromClient {
			rl.heard()
		}
		switch {
		case h.opcode == opClose:
			dst.closeSent.Store(true)
		case !h.control() && fromClient:
			rl.fromClient.Add(h.length)
		case !h.control():
			rl.toClient.Add(h.length)
		}
	}
}

// forwardFrame writes a frame's header and its n payload bytes, read from
// src, to dst, holding dst's write token throughout.
func forwardFrame(dst *wsEnd, head []byte, src io.Reader, n int64) (readErr, writeErr error) {
	bp := getBuf(int64(len(head))+n <= smallBuf)
	defer putBuf(bp)
	buf := *bp
	dst.acquire(time.Time{})
	defer dst.release()
	if dst.midFrame {
		return nil, errors.New("websocket: a frame to this side was cut off")
	}
	dst.midFrame = true
	k := copy(buf, head)
	for {
		if m := min(int64(len(buf)-k), n); m > 0 {
			var r int
			var err error
			if m == n {
				// The rest of the frame fits: one write carries it, as
				// one TLS record toward the client.
				r, err = io.ReadFull(src, buf[k:k+int(m)])
			} else {
				r, err = src.Read(buf[k : k+int(m)])
			}
			k += r
			n -= int64(r)
			if err != nil && n > 0 {
				dst.conn.Write(buf[:k]) // what arrived still goes
				return noEOF(err), nil
			}
		}
		if k > 0 {
			if _, err := dst.conn.Write(buf[:k]); err != nil {
				return nil, err
			}
		}
		k = 0
		if n == 0 {
			dst.midFrame = false
			return nil, nil
		}
	}
}

// ended decides what a direction's end means for the session.
func (rl *wsRelay) ended(src, dst *wsEnd, fromClient bool, why pumpEnd, err error) {
	if rl.log.Enabled(context.Background(), slog.LevelDebug) {
		rl.log.Debug("websocket direction ended", "from_client", fromClient, "why", why.String(), "err", err)
	}
	if rl.closing.Load() {
		return // tlsfront's own close is under way
	}
	lost := func(gone *wsEnd) {
		// One side vanished without a close handshake: tell the other,
		// never with 1006 (which RFC 6455 keeps off the wire).
		if gone == rl.backend {
			rl.abort(closeMsg{closeInternalError, "backend connection lost"}, closeMsg{})
		} else {
			rl.abort(closeMsg{}, goingAway("client connection lost"))
		}
	}
	switch why {
	case tooBig:
		rl.log.Info("websocket message over the size limit", "limit", rl.maxMessage)
		rl.abort(closeMsg{closeMessageTooBig, "message too big"}, goingAway("client message over the size limit"))
		drainUntilClosed(src)
	case badFrame:
		if fromClient {
			rl.abort(closeMsg{closeProtocolError, "bad frame length"}, goingAway("client protocol error"))
			drainUntilClosed(src)
		} else {
			rl.abort(closeMsg{closeInternalError, "backend protocol error"}, closeMsg{closeProtocolError, "bad frame length"})
		}
	case dstFailed:
		// The side we could not write to may still have frames in
		// flight, sent before it went (an MQTT DISCONNECT, whose loss
		// would fire the client's will): the other direction forwards
		// them until that side's stream ends, then reports it lost.
		// The deadline bounds a side that still sends but never reads.
		dst.conn.SetReadDeadline(time.Now().Add(wsCloseWait))
	case srcEnded:
		if !src.closeRead.Load() {
			lost(src)
			return
		}
		// A clean end after the close handshake: pass the end on and
		// give the other direction a bounded time to finish.
		if dst.acquire(time.Now().Add(wsCloseWait)) {
			closeWrite(dst.conn)
			dst.release()
		}
		dst.conn.SetReadDeadline(time.Now().Add(wsCloseWait))
	}
}

// drainUntilClosed reads and drops what a side still sends after tlsfront
// closed on it (the rest of an oversized message, its close answer) until
// it ends or the close deadline passes: closing a socket with unread bytes
// resets it, and a reset can destroy the close frame before the peer
// reads it.
func drainUntilClosed(e *wsEnd) {
	io.Copy(io.Discard, e.r)
}

// abort is tlsfront ending the session itself: a close frame to each side
// still there (a zero code skips one), then a bounded wait for their
// answers; the relay closes both connections when both directions end.
func (rl *wsRelay) abort(toClient, toBackend closeMsg) {
	if !rl.closing.CompareAndSwap(false, true) {
		return
	}
	deadline := time.Now().Add(wsCloseWait)
	rl.mu.Lock()
	rl.unsyncedStopKeepalive()
	// The deadline also frees a writer blocked on a peer that reads
	// nothing, so the close frames below wait for no one past it.
	rl.client.conn.SetDeadline(deadline)
	rl.backend.conn.SetDeadline(deadline)
	rl.mu.Unlock()
	for _, x := range []struct {
		e *wsEnd
		m closeMsg
	}{{rl.client, toClient}, {rl.backend, toBackend}} {
		if x.m.code == 0 {
			// That side is gone: stop waiting for it.
			x.e.conn.Close()
			continue
		}
		if !x.e.acquire(deadline) {
			continue
		}
		if !x.e.midFrame && !x.e.closeSent.Load() {
			x.e.closeSent.Store(true)
			x.e.conn.Write(appendControlFrame(nil, opClose, closePayload(x.m.code, x.m.reason), x.e.mask))
		}
		// The close frame is followed by the end of our writes, so it
		// is delivered before the socket closes.
		closeWrite(x.e.conn)
		x.e.release()
	}
}

// goAway closes the session with 1001 to both sides, for shutdown.
func (rl *wsRelay) goAway() {
	rl.abort(goingAway("server shutting down"), goingAway("proxy shutting down"))
}

// tick is the keepalive: it pings a client that has been quiet for an
// interval, and ends the session when a ping has gone an interval without
// the client sending anything.
func (rl *wsRelay) tick() {
	now := time.Now()
	heard := time.Unix(0, rl.heardAt.Load())
	rl.mu.Lock()
	if rl.stopped {
		rl.mu.Unlock()
		return
	}
	if rl.awaiting && heard.After(rl.pingSent) {
		rl.awaiting = false
	}
	if rl.awaiting && now.Sub(rl.pingSent) >= rl.interval {
		rl.mu.Unlock()
		rl.log.Info("websocket ping timeout", "interval", rl.interval.String())
		rl.abort(goingAway("ping timeout: the client did not answer"), goingAway("client ping timeout"))
		return
	}
	var ping []byte
	next := heard.Add(rl.interval).Sub(now)
	switch {
	case rl.awaiting:
		next = rl.pingSent.Add(rl.interval).Sub(now)
	case next <= 0:
		rl.pingSeq++
		ping = binary.BigEndian.AppendUint64([]byte("tlsfront"), rl.pingSeq)
		rl.lastPing, rl.awaiting, rl.pingSent = ping, true, now
		next = rl.interval
	}
	rl.timer.Reset(max(next, time.Millisecond))
	rl.mu.Unlock()
	if ping != nil {
		rl.sendPing(ping)
	}
}

// sendPing writes ping to the client unless a frame is being written for
// a whole interval, in which case the client is busy reading anyway.
func (rl *wsRelay) sendPing(ping []byte) {
	c := rl.client
	if !c.acquire(time.Now().Add(rl.interval)) {
		return
	}
	defer c.release()
	if c.midFrame || c.closeSent.Load() {
		return
	}
	c.conn.SetWriteDeadline(time.Now().Add(rl.interval))
	c.conn.Write(appendControlFrame(nil, opPing, ping, false))
	rl.mu.Lock()
	if !rl.closing.Load() {
		c.conn.SetWriteDeadline(time.Time{})
	}
	rl.mu.Unlock()
}

// ours reports whether a pong from the client (payload p as it came)
// answers tlsfront's latest ping.
func (rl *wsRelay) ours(h frameHeader, p []byte) bool {
	var b [maxControlPayload]byte
	q := b[:copy(b[:], p)]
	if h.masked {
		unmask(h.key, 0, q)
	}
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.lastPing == nil || !bytes.Equal(q, rl.lastPing) {
		return false
	}
	rl.awaiting = false
	return true
}

func (rl *wsRelay) stopKeepalive() {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	rl.unsyncedStopKeepalive()
}

// unsyncedStopKeepalive stops the ping timer; the caller holds rl.mu.
func (rl *wsRelay) unsyncedStopKeepalive() {
	rl.stopped = true
	if rl.timer != nil {
		rl.timer.Stop()
	}
}

// wsRegistry holds relayed WebSockets, which net/http no longer tracks
// once hijacked, so that shutdown can wait for them and then close them.
type wsRegistry struct {
	mu     sync.Mutex
	closed bool
	conns  map[*wsRelay]struct{}
	wg     sync.WaitGroup
	// stopDrain ends a running drain's schedule (closeAll); nil until a
	// drain starts.
	stopDrain chan struct{}
}

func (r *wsRegistry) add(rl *wsRelay) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.conns[rl] = struct{}{}
	r.wg.Add(1)
	return true
}

func (r *wsRegistry) remove(rl *wsRelay) {
	r.mu.Lock()
	delete(r.conns, rl)
	r.mu.Unlock()
	r.wg.Done()
}

// wait blocks until every WebSocket has ended or ctx ends.
func (r *wsRegistry) wait(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// drain ends every WebSocket with 1001 (going away) to both sides, one
// after another over window in random order, so that their clients come
// back spread out, on another instance, instead of all at once when the
// grace period ends (the tcp listener's MQTT drain does the same, see
// drain.go). New WebSockets are refused from now on. It does not wait.
func (r *wsRegistry) drain(window time.Duration) {
	r.mu.Lock()
	if r.stopDrain != nil {
		r.mu.Unlock()
		return
	}
	r.closed = true
	relays := make([]*wsRelay, 0, len(r.conns))
	for rl := range r.conns {
		relays = append(relays, rl)
	}
	stop := make(chan struct{})
	r.stopDrain = stop
	r.mu.Unlock()
	go spreadOver(relays, time.Now(), window, stop, (*wsRelay).goAway)
}

// closeAll sends 1001 to both sides of every WebSocket and waits, at most
// wsCloseWait and a little more, for them to end.
func (r *wsRegistry) closeAll() {
	r.mu.Lock()
	if r.stopDrain != nil {
		select {
		case <-r.stopDrain:
		default:
			close(r.stopDrain)
		}
	}
	r.closed = true
	relays := make([]*wsRelay, 0, len(r.conns))
	for rl := range r.conns {
		relays = append(relays, rl)
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, rl := range relays {
		wg.Go(func() {
			rl.goAway()
			t := time.NewTimer(wsCloseWait + time.Second)
			defer t.Stop()
			select {
			case <-rl.done:
			case <-t.C:
				rl.client.conn.Close()
				rl.backend.conn.Close()
			}
		})
	}
	wg.Wait()
}
