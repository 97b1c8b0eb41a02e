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
)

// WebSocket connections are proxied message by message rather than as raw
// bytes, so that the proxy can ping idle clients (mobile networks drop
// quiet connections), cap message size, and close both sides with a proper
// close frame on shutdown.

var wsWriteBuffers = &sync.Pool{}

// wsHeadersToForward are the request headers a backend may need to accept
// the upgrade. The handshake headers themselves are made by the dialer.
var wsHeadersToForward = []string{"Origin", "Cookie", "Authorization", "User-Agent"}

func (h *httpFront) serveWebSocket(w http.ResponseWriter, r *http.Request, be Backend) {
	raddr := clientAddrFrom(r.Context())
	client := addrOfNil(raddr)
	done, refusal := h.s.opts.Limiter.BackendFor(r.Context(), be.String(), client)
	if refusal != nil {
		h.s.refused(client, refusal)
		writeRetryLater(w, refusal.RetryAfter)
		return
	}
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
			return be.dial(ctx, raddr, nil)
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
	start := time.Now()
	bconn, resp, err := d.DialContext(r.Context(), u, hdr)
	done(err)
	h.s.dialed(be, time.Since(start), err)
	if err != nil {
		h.s.log.Warn("websocket backend dial failed", "backend", be.String(), "client", client.String(), "err", err)
		if resp != nil && resp.StatusCode >= 400 {
			// The backend refused the upgrade: pass its answer on.
			w.WriteHeader(resp.StatusCode)
			return
		}
		writeUnavailable(w)
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
	h.s.opened()
	defer h.s.closed(0, 0)
	p.run(h.opts)
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

func (p *wsPair) run(o HTTPOptions) {
	p.client.SetReadLimit(o.MaxMessageSize)
	var stopPing func()
	if o.PingInterval > 0 {
		stopPing = p.keepalive(o.PingInterval)
	}
	errc := make(chan error, 2)
	go func() { errc <- copyMessages(p.backend, p.client) }()
	go func() { errc <- copyMessages(p.client, p.backend) }()
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

// copyMessages streams messages from src to dst without buffering a whole
// message.
func copyMessages(dst, src *websocket.Conn) error {
	for {
		mt, r, err := src.NextReader()
		if err != nil {
			return err
		}
		w, err := dst.NextWriter(mt)
		if err != nil {
			return err
		}
		if _, err := io.Copy(w, r); err != nil {
			return err
		}
		if err := w.Close(); err != nil {
			return err
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
