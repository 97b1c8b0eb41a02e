package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tlsfront/tlsfront/limits"
)

// HTTPOptions configure a KindHTTP listener.
type HTTPOptions struct {
	// PingInterval is how often an idle WebSocket client is pinged; a
	// client that answers nothing for two intervals is closed. Zero means
	// 30 s; negative turns pings off.
	PingInterval time.Duration
	// MaxMessageSize caps one WebSocket message from a client. Zero means
	// 16 MiB.
	MaxMessageSize int64
	// IdleTimeout closes keep-alive HTTP connections with no request for
	// this long. Zero means 2 minutes.
	IdleTimeout time.Duration
}

// httpFront serves handshaken TLS connections with net/http, which speaks
// HTTP/1.1 and, by ALPN, HTTP/2.
type httpFront struct {
	s       *Server
	opts    HTTPOptions
	srv     *http.Server
	ln      *chanListener
	proxies map[Backend]*httputil.ReverseProxy
	ws      wsRegistry
	served  chan struct{}
}

func newHTTPFront(s *Server, o HTTPOptions) (*httpFront, error) {
	if o.PingInterval == 0 {
		o.PingInterval = 30 * time.Second
	}
	if o.MaxMessageSize == 0 {
		o.MaxMessageSize = 16 << 20
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 2 * time.Minute
	}
	h := &httpFront{s: s, opts: o, proxies: map[Backend]*httputil.ReverseProxy{}, served: make(chan struct{})}
	h.ws.conns = map[*wsPair]struct{}{}
	for _, be := range append([]Backend{s.opts.Backend}, mapValues(s.opts.Routes)...) {
		if be.Address == "" {
			return nil, errors.New("no backend")
		}
		h.proxies[be] = h.reverseProxy(be)
	}
	h.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       o.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		// The client's address rides in every request's context, set once
		// per connection, for the PROXY header and the limiter.
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, clientAddrKey{}, c.RemoteAddr())
		},
	}
	h.ln = newChanListener()
	go func() {
		defer close(h.served)
		h.srv.Serve(h.ln)
	}()
	return h, nil
}

func mapValues(m map[string]Backend) []Backend {
	out := make([]Backend, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func (h *httpFront) reverseProxy(be Backend) *httputil.ReverseProxy {
	target := &url.URL{Scheme: "http", Host: be.Address}
	if be.Network == "unix" {
		target.Host = "backend" // any name: the transport dials the socket
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// New backend connections go through the same shield as tcp and
	// WebSocket ones: paced, and refused at once while the breaker is open.
	tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		src := clientAddrFrom(ctx)
		client := addrOfNil(src)
		done, refusal := h.s.opts.Limiter.BackendFor(ctx, be.String(), client)
		if refusal != nil {
			h.s.refused(client, refusal)
			return nil, refusal
		}
		start := time.Now()
		c, err := be.dial(ctx, src, nil)
		done(err)
		h.s.dialed(be, time.Since(start), err)
		return c, err
	}
	if be.ProxyProtocol != 0 {
		// A PROXY header names one client, so a backend connection can
		// never be shared between clients.
		tr.DisableKeepAlives = true
	}
	return &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
			r.SetXForwarded()
		},
		Transport: tr,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			var refusal *limits.Refusal
			if errors.As(err, &refusal) {
				writeRetryLater(w, refusal.RetryAfter)
				return
			}
			h.s.log.Warn("backend request failed", "backend", be.String(), "client", r.RemoteAddr, "err", err)
			writeUnavailable(w)
		},
	}
}

type clientAddrKey struct{}

// addrOfNil is addrOf for an address that may be missing.
func addrOfNil(a net.Addr) netip.Addr {
	if a == nil {
		return netip.Addr{}
	}
	return addrOf(a)
}

// clientAddrFrom returns the client address a request carried to the
// transport, for the PROXY header.
func clientAddrFrom(ctx context.Context) net.Addr {
	a, _ := ctx.Value(clientAddrKey{}).(net.Addr)
	return a
}

// serve hands a handshaken connection to net/http. It returns false when
// the listener is shutting down and the caller still owns tc.
func (h *httpFront) serve(tc *tls.Conn) bool {
	return h.ln.deliver(tc)
}

func (h *httpFront) backendFor(r *http.Request) Backend {
	if r.TLS != nil {
		return h.s.backendFor(r.TLS.ServerName)
	}
	return h.s.opts.Backend
}

func (h *httpFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	be := h.backendFor(r)
	if isWebSocketUpgrade(r) {
		h.serveWebSocket(w, r, be)
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

func (h *httpFront) shutdown(ctx context.Context) error {
	h.ln.Close()
	err := h.srv.Shutdown(ctx)
	<-h.served
	if werr := h.ws.wait(ctx); err == nil {
		err = werr
	}
	return err
}

func (h *httpFront) closeAll() {
	h.srv.Close()
	h.ws.closeAll()
}

// chanListener is a net.Listener fed by the proxy's own accept loop, so
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
