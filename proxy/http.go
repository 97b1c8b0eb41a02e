package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tlsfront/tlsfront/limits"
	"github.com/tlsfront/tlsfront/report"
)

// HTTPOptions configure a KindHTTP listener.
type HTTPOptions struct {
	// PingInterval: a WebSocket client that has sent nothing for this long
	// is pinged, and closed (1001 "ping timeout") when another interval
	// passes without a byte from it. Its pong, masked or not, is taken by
	// tlsfront; the backend's own pings and their pongs pass through.
	// Zero means 30 s; negative turns pings off.
	PingInterval time.Duration
	// MaxMessageSize caps one WebSocket message from a client: the sum of
	// its fragments' payloads as they are on the wire (compressed, with
	// permessage-deflate). Over it the client gets 1009 and the backend
	// 1001. Zero means 16 MiB; negative turns the cap off.
	MaxMessageSize int64
	// IdleTimeout closes keep-alive HTTP connections with no request for
	// this long. Zero means 2 minutes.
	IdleTimeout time.Duration
	// Routes pick a backend by server name, Host and path prefix (see
	// HTTPRoute for the precedence); Options.Routes (by server name) are
	// added after them.
	Routes []HTTPRoute
	// RewriteHost sends the backend its own address as Host; by default
	// the client's Host is kept.
	RewriteHost bool
	// TrustedProxies are the peers (TCP peer, or the source of an
	// accepted PROXY header) whose X-Forwarded-For and Forwarded are
	// appended to; anyone else's are replaced.
	TrustedProxies limits.Networks
	// ForwardedHeader also sends RFC 7239 Forwarded.
	ForwardedHeader bool
	// MaxHeaderBytes caps a request's headers, HTTP/1.1 (431) and HTTP/2
	// alike; zero means 64 KiB.
	MaxHeaderBytes int
	// ClientStreams caps one client's requests in flight, HTTP/2 streams
	// over all its connections included; beyond it the client gets 429
	// and the backend nothing. Zero means 100; negative turns it off.
	ClientStreams int
	// MinBodyRate is the least rate (bytes per second) a request body
	// must arrive at after a 10 s grace, or the request is cut (slow
	// POST). Zero means 1 KiB/s; negative turns it off.
	MinBodyRate int64
	// BodyGrace is how long a body may take before MinBodyRate applies;
	// zero means 10 s.
	BodyGrace time.Duration
}

// httpForwarder serves handshaken sessions with net/http, which speaks
// HTTP/1.1 and, by ALPN, HTTP/2, and proxies requests and WebSocket
// upgrades to the backends.
type httpForwarder struct {
	name    string
	log     *slog.Logger
	rep     report.Sink
	dialer  *dialer
	opts    HTTPOptions
	backend Backend
	routes  []HTTPRoute
	srv     *http.Server
	ln      *chanListener
	proxies map[Backend]*httputil.ReverseProxy
	ws      wsRegistry
	streams clientStreams
	// certsVerified is Options.ClientCertsVerified: a client's certificate
	// is then forwarded in X-Forwarded-Client-Cert, a header always
	// dropped from what clients send.
	certsVerified bool
	started       bool
	served        chan struct{}
}

func newHTTPForwarder(s *Server, d *dialer, o HTTPOptions) (*httpForwarder, error) {
	if o.PingInterval == 0 {
		o.PingInterval = 30 * time.Second
	}
	if o.MaxMessageSize == 0 {
		o.MaxMessageSize = 16 << 20
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 2 * time.Minute
	}
	if o.MaxHeaderBytes == 0 {
		o.MaxHeaderBytes = defaultMaxHeaderBytes
	}
	if o.ClientStreams == 0 {
		o.ClientStreams = defaultClientStreams
	}
	if o.MinBodyRate == 0 {
		o.MinBodyRate = defaultBodyRate
	}
	if o.BodyGrace == 0 {
		o.BodyGrace = defaultBodyGrace
	}
	h := &httpForwarder{
		name: s.opts.Name, log: s.log, rep: s.rep, dialer: d, opts: o, certsVerified: s.opts.ClientCertsVerified,
		backend: s.opts.Backend, routes: slices.Clone(o.Routes),
		proxies: map[Backend]*httputil.ReverseProxy{}, served: make(chan struct{}),
		streams: clientStreams{max: o.ClientStreams, n: map[netip.Addr]int{}},
	}
	for _, name := range slices.Sorted(maps.Keys(s.opts.Routes)) {
		h.routes = append(h.routes, HTTPRoute{SNI: []string{name}, Backend: s.opts.Routes[name]})
	}
	h.ws.conns = map[*wsRelay]struct{}{}
	backends := []Backend{s.opts.Backend}
	for _, rt := range h.routes {
		backends = append(backends, rt.Backend)
	}
	for _, be := range backends {
		if be.Address == "" {
			return nil, errors.New("no backend")
		}
		if h.proxies[be] == nil {
			h.proxies[be] = h.reverseProxy(be)
		}
	}
	h.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       o.IdleTimeout,
		// HTTP/2 takes its header list limit from this too.
		MaxHeaderBytes: o.MaxHeaderBytes,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		// The session rides in every request's context, set once per
		// connection, for the PROXY header, the limiter and the logs.
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if tc, ok := c.(*tls.Conn); ok {
				if pc, ok := tc.NetConn().(*conn); ok && pc.session != nil {
					return context.WithValue(ctx, sessionKey{}, pc.session)
				}
			}
			return ctx
		},
	}
	h.ln = newChanListener()
	return h, nil
}

// start runs net/http on the sessions forward delivers.
func (h *httpForwarder) start() {
	h.started = true
	go func() {
		defer close(h.served)
		h.srv.Serve(h.ln)
	}()
}

// forward hands a session to net/http, which owns the connection from
// there: closing it ends the session. It returns false when the listener
// is shutting down.
func (h *httpForwarder) forward(sess *session) bool {
	c := sess.c
	prev := c.onClose
	c.session = sess
	c.onClose = func() {
		prev()
		sess.release()
	}
	if !h.ln.deliver(sess.tc) {
		c.onClose, c.session = prev, nil
		return false
	}
	return true
}

type sessionKey struct{}

// sessionFrom returns the session a request belongs to, nil for none.
func sessionFrom(ctx context.Context) *session {
	s, _ := ctx.Value(sessionKey{}).(*session)
	return s
}

// clientOf returns the client's address and the addresses its connection
// came from and arrived at, for the limiter and the PROXY header.
func clientOf(ctx context.Context) (client netip.Addr, src, dst net.Addr) {
	if s := sessionFrom(ctx); s != nil {
		return s.client.Addr(), s.c.RemoteAddr(), s.c.LocalAddr()
	}
	return netip.Addr{}, nil, nil
}

func (h *httpForwarder) reverseProxy(be Backend) *httputil.ReverseProxy {
	target := &url.URL{Scheme: "http", Host: backendHost(be)}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// New backend connections go through the same shield as tcp and
	// WebSocket ones: paced, and refused at once while the breaker is open.
	// Only transport failures reach the breaker (a failed dial, or a
	// connection closed before a byte of answer); an HTTP answer, of any
	// status, is the backend working.
	tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		client, src, dst := clientOf(ctx)
		c, err := h.dialer.dialHTTP(ctx, be, client, src, dst)
		if err != nil {
			return nil, &dialError{err}
		}
		return c, nil
	}
	// Backend connections are reused, not dialled per request or per
	// HTTP/2 stream: a flood of streams cannot turn into a flood of dials.
	tr.MaxIdleConnsPerHost = 64
	tr.MaxConnsPerHost = 512
	if be.ProxyProtocol != 0 {
		// A PROXY header names one client, so a backend connection can
		// never be shared between clients.
		tr.DisableKeepAlives = true
	}
	return &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			if !h.opts.RewriteHost {
				r.Out.Host = r.In.Host
			}
			client, _, _ := clientOf(r.In.Context())
			h.setForwarding(r.Out.Header, r.In, client)
		},
		Transport: tr,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			var de *dialError
			if errors.As(err, &de) {
				h.dialFailed(w, r, be, de.err)
				return
			}
			if b, _ := r.Context().Value(clientBodyKey{}).(*clientBody); b != nil && b.err != nil {
				// The client's body was malformed or too slow: its fault,
				// not the backend's.
				h.logFor(r).Debug("request body refused", "err", b.err)
				code := http.StatusBadRequest
				if errors.Is(b.err, errSlowBody) {
					code = http.StatusRequestTimeout
				}
				http.Error(w, b.err.Error(), code)
				return
			}
			if errors.Is(err, context.Canceled) {
				if s := sessionFrom(r.Context()); s != nil {
					s.resets.Add(1)
				}
				return // the client left, or reset the stream
			}
			// Connected, but no answer: the backend failed, not a limit.
			h.logFor(r).Warn("backend request failed", "backend", be.String(), "err", err)
			http.Error(w, "bad gateway: the backend closed without answering", http.StatusBadGateway)
		},
	}
}

// dialError is a failure to reach the backend, as opposed to one after
// connecting.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// logFor is the request's connection-scoped logger.
func (h *httpForwarder) logFor(r *http.Request) *slog.Logger {
	if s := sessionFrom(r.Context()); s != nil {
		return s.log
	}
	return h.log
}

func (h *httpForwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	client, _, _ := clientOf(r.Context())
	if !h.streams.acquire(client) {
		// Over its share: answered here, the backend never sees it.
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many requests in flight from this client", http.StatusTooManyRequests)
		return
	}
	defer h.streams.release(client)
	if r.ProtoMajor == 2 && !h.holdForReset(r) {
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		rate := h.opts.MinBodyRate
		if rate < 0 {
			rate = 0
		}
		cb := &clientBody{ReadCloser: r.Body, rc: http.NewResponseController(w), start: time.Now(), rate: rate, grace: h.opts.BodyGrace}
		r = r.WithContext(context.WithValue(r.Context(), clientBodyKey{}, cb))
		r.Body = cb
	}
	be := pickRoute(h.routes, h.backend, r)
	if r.ProtoMajor == 1 && isWebSocketUpgrade(r) {
		h.serveUpgrade(w, r, be)
		return
	}
	h.proxies[be].ServeHTTP(w, r)
}

func isWebSocketUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func (h *httpForwarder) shutdown(ctx context.Context) error {
	h.ln.Close()
	if !h.started {
		return nil
	}
	if window, ok := drainWindow(ctx); ok {
		h.ws.drain(window)
	}
	err := h.srv.Shutdown(ctx)
	<-h.served
	if werr := h.ws.wait(ctx); err == nil {
		err = werr
	}
	return err
}

func (h *httpForwarder) closeAll() {
	h.srv.Close()
	h.ws.closeAll()
}

// chanListener is a net.Listener fed by the front's own accept loop, so
// that admission and the handshake stay in one place for every kind.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{} }

var _ http.Handler = (*httpForwarder)(nil)
