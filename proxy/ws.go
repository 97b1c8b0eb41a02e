package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tlsfront/tlsfront/limits"
	"github.com/tlsfront/tlsfront/report"
)

// WebSocket connections are proxied message by message rather than as raw
// bytes, so that the proxy can ping idle clients (mobile networks drop
// quiet connections), cap message size, and close both sides with a proper
// close frame on shutdown.

var wsWriteBuffers = &sync.Pool{}

// wsHeadersToForward are the request headers a backend may need to accept
// the upgrade. The handshake headers themselves are made by the dialer.
var wsHeadersToForward = []string{"Origin", "Cookie", "Authorization", "User-Agent"}

func (h *httpForwarder) serveWebSocket(w http.ResponseWriter, r *http.Request, be Backend) {
	client, src, dst := clientOf(r.Context())
	log := h.logFor(r)
	hdr := http.Header{}
	for _, k := range wsHeadersToForward {
		if v := r.Header.Values(k); len(v) > 0 {
			hdr[k] = v
		}
	}
	hdr.Set("X-Forwarded-For", client.String())
	hdr.Set("X-Forwarded-Proto", "https")
	hdr.Set("X-Forwarded-Host", r.Host)
	d := websocket.Dialer{
		NetDialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return h.dialer.dial(ctx, be, client, src, dst)
		},
		HandshakeTimeout: 10 * time.Second,
		Subprotocols:     websocket.Subprotocols(r),
		ReadBufferSize:   1024,
		WriteBufferPool:  wsWriteBuffers,
	}
	host := be.Address
	if be.Network == "unix" {
		host = "backend"
	}
	u := "ws://" + host + r.URL.RequestURI()
	bconn, resp, err := d.DialContext(r.Context(), u, hdr)
	if err != nil {
		var refusal *limits.Refusal
		switch {
		case errors.As(err, &refusal):
			writeRetryLater(w, refusal.RetryAfter)
		case resp != nil && resp.StatusCode >= 400:
			// The backend refused the upgrade: pass its answer on.
			w.WriteHeader(resp.StatusCode)
		default:
			log.Warn("websocket backend dial failed", "backend", be.String(), "err", err)
			writeUnavailable(w)
		}
		return
	}
	// The client gets the subprotocol the backend chose ("mqtt").
	respHdr := http.Header{}
	if sp := bconn.Subprotocol(); sp != "" {
		respHdr.Set("Sec-WebSocket-Protocol", sp)
	}
	up := websocket.Upgrader{
		ReadBufferSize:  1024,
		WriteBufferPool: wsWriteBuffers,
		// The backend decides about origins: it got the client's Origin.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	cconn, err := up.Upgrade(w, r, respHdr)
	if err != nil {
		bconn.Close()
		return // Upgrade has answered the client
	}
	p := &wsPair{client: cconn, backend: bconn}
	if !h.ws.add(p) {
		p.closeBoth(websocket.CloseGoingAway, "server shutting down")
		return
	}
	defer h.ws.remove(p)
	start := time.Now()
	h.rep.ConnOpened(h.name)
	in, out := p.run(h.opts)
	cc := report.ConnClosed{Listener: h.name, Backend: be.String(), FromClient: in, ToClient: out, Duration: time.Since(start), End: "websocket"}
	if s := sessionFrom(r.Context()); s != nil {
		cc.ConnID, cc.Client, cc.SNI, cc.JA4 = s.id, s.client, s.sni, s.ja4
	}
	h.rep.ConnClosed(cc)
}

// writeRetryLater answers 503 with a Retry-After carrying jitter, so a herd
// of refused clients comes back spread out in time.
func writeRetryLater(w http.ResponseWriter, after time.Duration) {
	w.Header().Set("Retry-After", retryAfterValue(after))
	http.Error(w, "server busy, retry later", http.StatusServiceUnavailable)
}

func writeUnavailable(w http.ResponseWriter) { writeRetryLater(w, 5*time.Second) }

// wsPair is one proxied WebSocket: the client's side and the backend's.
type wsPair struct {
	client, backend *websocket.Conn
	closeOnce       sync.Once
}

// run relays messages both ways until either side ends, then closes both;
// it returns the message bytes carried from and to the client.
func (p *wsPair) run(o HTTPOptions) (fromClient, toClient int64) {
	p.client.SetReadLimit(o.MaxMessageSize)
	var stopPing func()
	if o.PingInterval > 0 {
		stopPing = p.keepalive(o.PingInterval)
	}
	errc := make(chan error, 2)
	go func() {
		n, err := copyMessages(p.backend, p.client)
		fromClient = n
		errc <- err
	}()
	go func() {
		n, err := copyMessages(p.client, p.backend)
		toClient = n
		errc <- err
	}()
	err := <-errc
	if stopPing != nil {
		stopPing()
	}
	code, text := websocket.CloseNormalClosure, ""
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		code, text = ce.Code, ce.Text
		if code == websocket.CloseNoStatusReceived {
			code = websocket.CloseNormalClosure
		}
	} else if errors.Is(err, websocket.ErrReadLimit) {
		code, text = websocket.CloseMessageTooBig, "message too big"
	}
	p.closeBoth(code, text)
	<-errc
	return fromClient, toClient
}

// keepalive pings the client every interval and expects some frame back
// within two intervals. Every pong extends the deadline.
func (p *wsPair) keepalive(interval time.Duration) (stop func()) {
	extend := func() { p.client.SetReadDeadline(time.Now().Add(2 * interval)) }
	extend()
	p.client.SetPongHandler(func(string) error { extend(); return nil })
	t := time.NewTicker(interval)
	quit := make(chan struct{})
	go func() {
		for {
			select {
			case <-t.C:
				if err := p.client.WriteControl(websocket.PingMessage, nil, time.Now().Add(interval)); err != nil {
					return
				}
			case <-quit:
				return
			}
		}
	}()
	return func() { t.Stop(); close(quit) }
}

func (p *wsPair) closeBoth(code int, text string) {
	p.closeOnce.Do(func() {
		msg := websocket.FormatCloseMessage(code, text)
		deadline := time.Now().Add(time.Second)
		for _, c := range []*websocket.Conn{p.client, p.backend} {
			c.WriteControl(websocket.CloseMessage, msg, deadline)
			c.Close()
		}
	})
}

// copyMessages streams messages from src to dst
// without buffering a whole message, and counts the payload bytes.
func copyMessages(dst, src *websocket.Conn) (written int64, err error) {
	for {
		mt, r, err := src.NextReader()
		if err != nil {
			return written, err
		}
		w, err := dst.NextWriter(mt)
		if err != nil {
			return written, err
		}
		n, err := io.Copy(w, r)
		written += n
		if err != nil {
			return written, err
		}
		if err := w.Close(); err != nil {
			return written, err
		}
	}
}

// wsRegistry holds hijacked WebSocket connections, which net/http no longer
// tracks, so that shutdown can wait for them and then close them.
type wsRegistry struct {
	mu     sync.Mutex
	closed bool
	conns  map[*wsPair]struct{}
	wg     sync.WaitGroup
}

func (r *wsRegistry) add(p *wsPair) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.conns[p] = struct{}{}
	r.wg.Add(1)
	return true
}

func (r *wsRegistry) remove(p *wsPair) {
	r.mu.Lock()
	delete(r.conns, p)
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

func (r *wsRegistry) closeAll() {
	r.mu.Lock()
	r.closed = true
	pairs := make([]*wsPair, 0, len(r.conns))
	for p := range r.conns {
		pairs = append(pairs, p)
	}
	r.mu.Unlock()
	for _, p := range pairs {
		p.closeBoth(websocket.CloseGoingAway, "server shutting down")
	}
}
