package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/tlsfront/tlsfront/limits"
)

// Kind is what a listener speaks after TLS.
type Kind string

// Listener kinds.
const (
	KindTCP  Kind = "tcp"  // bytes both ways, e.g. MQTT over TLS to plain MQTT
	KindHTTP Kind = "http" // HTTP/1.1, HTTP/2 and WebSocket
)

// Options configure one TLS listener.
type Options struct {
	// Name identifies the listener in logs, events and metrics.
	Name string
	Kind Kind
	// TLS supplies certificates through GetCertificate (or
	// GetConfigForClient). The proxy clones it and fills in safe defaults
	// where it leaves them unset: TLS 1.2 minimum, ECDHE AEAD suites.
	TLS *tls.Config
	// Backend is the default route. For KindHTTP it may also be given as
	// an http:// URL through HTTPBackend.
	Backend Backend
	// Routes maps a lower-case server name to its own backend.
	Routes map[string]Backend
	// HandshakeTimeout bounds the TLS handshake; zero means 10 s.
	HandshakeTimeout time.Duration
	// IdleTimeout closes a tcp connection with no traffic either way for
	// this long; zero means never (MQTT keepalive does the job).
	IdleTimeout time.Duration
	// ParkAfter: a tcp connection direction with no data for this long
	// waits with no goroutine or buffer of ours; zero means 1 s, negative never.
	ParkAfter time.Duration
	// AcceptProxyHeader reads a PROXY protocol header from a trusted load
	// balancer in front, and treats its source as the client.
	AcceptProxyHeader bool
	// Protocol is what a tcp listener carries, for refusals in the
	// client's own protocol: "mqtt" or "" (close the connection).
	Protocol string
	// Limiter decides admission; nil admits everything.
	Limiter *limits.Limiter
	// Observe is called once for every handshake, failed or not, from the
	// connection's goroutine. It must not block.
	Observe func(*HandshakeEvent)
	// KnownName reports whether a certificate covers a server name, so a
	// failed handshake for any other name is reported as unknown_sni.
	// Nil turns that reason off.
	KnownName func(serverName string) bool
	// OnRefuse is called for every refusal by the limiter.
	OnRefuse func(listener string, client netip.Addr, r *limits.Refusal)
	// Hooks report connections, bytes and backend dials.
	Hooks Hooks
	// HTTP configures KindHTTP listeners.
	HTTP HTTPOptions
	Log  *slog.Logger
}

// HandshakeEvent is the outcome of one TLS handshake.
type HandshakeEvent struct {
	Listener string
	Client   netip.AddrPort
	// Hello is the parsed ClientHello, nil when none arrived.
	Hello *tls.ClientHelloInfo
	// FirstBytes are up to the first 8 bytes the client sent.
	FirstBytes []byte
	// State is the negotiated connection state when Err is nil.
	State    tls.ConnectionState
	Duration time.Duration
	Err      error
	// TimedOut is true when the handshake timeout ended it.
	TimedOut bool
	// Reason classifies a failure (see classify.go); empty on success.
	Reason Reason
	// JA4 fingerprints the ClientHello; empty when none arrived.
	JA4 string
}

// Hooks report what happens to connections after the handshake. Each is
// optional, called from connection goroutines, and must not block.
type Hooks struct {
	// ConnOpened and ConnClosed bracket every proxied connection;
	// ConnClosed gets the bytes carried each way.
	ConnOpened func(listener string)
	ConnClosed func(listener string, fromClient, toClient int64)
	// BackendDial reports each backend connection attempt.
	BackendDial func(listener, backend string, took time.Duration, err error)
}

// Server serves one listener. It owns its accept loop and every
// connection it accepted.
type Server struct {
	opts  Options
	tls   *tls.Config
	log   *slog.Logger
	http  *httpFront // KindHTTP only
	pipes *pipes     // KindTCP copying
	// clientIDLimit: MQTT CONNECTs are read before the backend is dialled,
	// to limit by client id.
	clientIDLimit bool

	ctx    context.Context // cancelled by Shutdown: stops accept and slot waits
	cancel context.CancelFunc

	mu        sync.Mutex
	closing   bool
	listeners []net.Listener
	active    map[*conn]net.Conn // client conn -> backend conn (nil until dialled)
	wg        sync.WaitGroup
	stopOnce  sync.Once
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("proxy: server closed")

// New checks o and returns a Server ready to Serve.
func New(o Options) (*Server, error) {
	if o.Name == "" {
		return nil, errors.New("listener needs a name")
	}
	if o.TLS == nil || (o.TLS.GetCertificate == nil && o.TLS.GetConfigForClient == nil && len(o.TLS.Certificates) == 0) {
		return nil, fmt.Errorf("listener %s: no certificates", o.Name)
	}
	if o.HandshakeTimeout == 0 {
		o.HandshakeTimeout = 10 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: o, log: o.Log.With("listener", o.Name), active: map[*conn]net.Conn{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.tls = serverTLSConfig(o.TLS)
	s.pipes = newPipes(pipeOptions{IdleTimeout: o.IdleTimeout, ParkAfter: o.ParkAfter, Log: s.log})
	s.clientIDLimit = o.Kind == KindTCP && o.Protocol == "mqtt" && o.Limiter.Config().ClientIDRate > 0
	switch o.Kind {
	case KindTCP:
		if o.Backend.Address == "" {
			return nil, fmt.Errorf("listener %s: no backend", o.Name)
		}
	case KindHTTP:
		s.tls.NextProtos = []string{"h2", "http/1.1"}
		h, err := newHTTPFront(s, o.HTTP)
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", o.Name, err)
		}
		s.http = h
	default:
		return nil, fmt.Errorf("listener %s: unknown kind %q (want tcp or http)", o.Name, o.Kind)
	}
	return s, nil
}

// modernSuites are the TLS 1.2 suites offered: ECDHE key exchange with AEAD
// ciphers only. TLS 1.3 suites are not configurable in Go and are all
// modern.
var modernSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

func serverTLSConfig(base *tls.Config) *tls.Config {
	cfg := base.Clone()
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if cfg.CipherSuites == nil {
		cfg.CipherSuites = modernSuites
	}
	inner := cfg.GetConfigForClient
	// Remember the ClientHello on our conn so a failed handshake can be
	// reported with what the client offered.
	cfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		if c, ok := h.Conn.(*conn); ok {
			c.hello = h
		}
		if inner != nil {
			return inner(h)
		}
		return nil, nil
	}
	return cfg
}

// Serve accepts on ln until Shutdown. It returns ErrServerClosed after
// Shutdown, or the error that stopped it.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	s.log.Info("listening", "addr", ln.Addr().String(), "kind", string(s.opts.Kind))

	var backoff time.Duration
	for {
		// Take the slot before Accept: when full, connections wait in the
		// kernel's backlog instead of in our memory.
		release, err := s.opts.Limiter.AcquireSlot(s.ctx)
		if err != nil {
			return ErrServerClosed
		}
		raw, err := ln.Accept()
		if err != nil {
			release()
			if s.isClosing() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of descriptors or an aborted connection: back off
			// instead of spinning, and keep serving.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-s.ctx.Done():
				return ErrServerClosed
			}
			continue
		}
		backoff = 0
		c := &conn{Conn: raw, onClose: release}
		if !s.track(c) {
			c.Close()
			return ErrServerClosed
		}
		go s.serveConn(c)
	}
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// track registers c; it fails once Shutdown has begun.
func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.active[c] = nil
	s.wg.Add(1)
	return true
}

func (s *Server) setBackend(c *conn, b net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.active[c]; !ok {
		return false // force-closed by Shutdown meanwhile
	}
	s.active[c] = b
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.active, c)
	s.mu.Unlock()
	s.wg.Done()
}

// serveConn runs one connection: admit, handshake, forward.
func (s *Server) serveConn(c *conn) {
	handedOver := false
	// continued: the connection's copy goroutines own it from here and
	// close and untrack it when both directions end.
	continued := false
	defer func() {
		if continued {
			return
		}
		if !handedOver {
			c.Close()
		}
		s.untrack(c)
	}()
	if s.opts.AcceptProxyHeader {
		pc := proxyproto.NewConn(c.Conn, proxyproto.SetReadHeaderTimeout(s.opts.HandshakeTimeout))
		c.Conn = pc
		// Reading the header is what makes RemoteAddr the client's. A peer
		// that sends none is refused: anyone could otherwise connect
		// directly and skip the per-client limits.
		if pc.ProxyHeader() == nil {
			s.log.Debug("no PROXY header from load balancer", "remote", pc.Raw().RemoteAddr().String())
			return
		}
	}
	client := addrOf(c.RemoteAddr())
	ticket, refusal := s.opts.Limiter.Admit(client)
	if refusal != nil {
		s.refused(client, refusal)
		s.holdThenClose(c, refusal.Delay)
		return
	}
	release := c.onClose
	c.onClose = func() {
		ticket.Close()
		release()
	}

	tc := tls.Server(c, s.tls)
	ev := s.handshake(tc, c)
	ticket.Handshake(ev.Err == nil)
	if s.opts.Observe != nil {
		s.opts.Observe(ev)
	}
	c.hello = nil // the hello holds its slices; idle connections should not
	c.handshook = true
	if ev.Err != nil {
		return
	}
	// A CA's TLS-ALPN-01 validation (RFC 8737) checks only the handshake;
	// it must not reach a backend.
	if ev.State.NegotiatedProtocol == "acme-tls/1" {
		return
	}
	switch s.opts.Kind {
	case KindTCP:
		continued = s.forwardTCP(tc, c)
	case KindHTTP:
		// net/http owns the connection from here; closing it releases the
		// admission ticket through c.onClose.
		handedOver = s.http.serve(tc)
	}
}

func (s *Server) handshake(tc *tls.Conn, c *conn) *HandshakeEvent {
	start := time.Now()
	// The deadline bounds the handshake, a client that trickles bytes
	// too; s.ctx only cuts it short at shutdown.
	c.SetDeadline(start.Add(s.opts.HandshakeTimeout))
	err := tc.HandshakeContext(s.ctx)
	c.SetDeadline(time.Time{})
	ev := &HandshakeEvent{
		Listener:   s.opts.Name,
		Client:     netip.AddrPortFrom(addrOf(c.RemoteAddr()), portOf(c.RemoteAddr())),
		Hello:      c.hello,
		FirstBytes: c.firstBytes(),
		Duration:   time.Since(start),
		Err:        err,
	}
	if err != nil {
		ev.TimedOut = errors.Is(err, context.DeadlineExceeded) || isTimeout(err)
		ev.Reason = classifier{knownName: s.opts.KnownName, minVersion: s.tls.MinVersion}.classify(ev)
	} else {
		ev.State = tc.ConnectionState()
	}
	if ev.Hello != nil {
		ev.JA4 = fingerprint(ev.Hello)
	}
	return ev
}

func portOf(a net.Addr) uint16 {
	if t, ok := a.(*net.TCPAddr); ok {
		return uint16(t.Port)
	}
	return 0
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (s *Server) refused(client netip.Addr, r *limits.Refusal) {
	if s.opts.OnRefuse != nil {
		s.opts.OnRefuse(s.opts.Name, client, r)
	}
}

// holdThenClose keeps a refused socket open for a bounded delay, which slows
// a client retrying in a tight loop, then closes it. Shutdown cuts the
// delay short.
func (s *Server) holdThenClose(c *conn, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.ctx.Done():
	}
}

// backendFor picks the route for the negotiated server name.
func (s *Server) backendFor(sni string) Backend {
	if b, ok := s.opts.Routes[strings.ToLower(sni)]; ok {
		return b
	}
	return s.opts.Backend
}

// Addrs returns the addresses being served.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []net.Addr
	for _, l := range s.listeners {
		out = append(out, l.Addr())
	}
	return out
}

// Shutdown stops accepting, lets open connections finish until ctx ends,
// then closes the rest. It is safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		for _, l := range s.listeners {
			l.Close()
		}
		s.mu.Unlock()
		s.cancel()
	})
	var httpErr error
	done := make(chan struct{})
	go func() {
		if s.http != nil {
			httpErr = s.http.shutdown(ctx)
		}
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.pipes.closeAll() // stops the watcher
		return httpErr
	case <-ctx.Done():
	}
	s.pipes.closeAll()
	s.mu.Lock()
	n := len(s.active)
	for c, b := range s.active {
		c.Close()
		if b != nil {
			b.Close()
		}
	}
	s.mu.Unlock()
	if s.http != nil {
		s.http.closeAll()
	}
	<-done
	if n > 0 {
		s.log.Warn("closed connections still open after grace period", "count", n)
	}
	return ctx.Err()
}

var _ http.Handler = (*httpFront)(nil)
