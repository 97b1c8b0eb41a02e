package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/tlsfront/tlsfront/certs"
	"github.com/tlsfront/tlsfront/internal/ja4"
	"github.com/tlsfront/tlsfront/limits"
	"github.com/tlsfront/tlsfront/report"
)

// Kind is what a listener speaks after TLS.
type Kind string

// Listener kinds.
const (
	KindTCP  Kind = "tcp"  // bytes both ways, e.g. MQTT over TLS to plain MQTT
	KindHTTP Kind = "http" // HTTP/1.1, HTTP/2 and WebSocket
)

// Listener is what every listener kind offers its owner: the TLS front
// (Server) and the plain redirect listener alike.
type Listener interface {
	// Serve accepts on ln until Shutdown; it returns ErrServerClosed
	// after Shutdown.
	Serve(ln net.Listener) error
	// Shutdown stops accepting, lets open connections finish until ctx
	// ends, then closes the rest. It is safe to call more than once.
	Shutdown(ctx context.Context) error
}

// Options configure one TLS listener.
type Options struct {
	// Name identifies the listener in logs, events and metrics.
	Name string
	Kind Kind
	// TLS supplies certificates through GetCertificate (or
	// GetConfigForClient). The proxy clones it and fills in safe defaults
	// where it leaves them unset: TLS 1.2 minimum, ECDHE AEAD suites.
	TLS *tls.Config
	// Backend is the default route.
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
	// balancer in front, and treats its source as the client. Only peers
	// in TrustedProxies may send one (it is optional from them, so the
	// self-probe and health checks work); a header from anyone else is
	// refused and counted, since it would let any client pick the address
	// tlsfront limits and the backend sees.
	AcceptProxyHeader bool
	TrustedProxies    limits.Networks
	// Protocol is what a tcp listener carries, for refusals in the
	// client's own protocol: "mqtt" or "" (close the connection).
	Protocol string
	// MQTTMaxConnectSize is the largest MQTT CONNECT packet (fixed header
	// included) a tcp listener with protocol mqtt reads, when it reads
	// CONNECTs (to limit by client id, or to refuse); a larger one is
	// answered with a CONNACK "packet too large" (MQTT 5; 3.x: "server
	// unavailable") and closed. Zero means DefaultMQTTMaxConnectSize.
	MQTTMaxConnectSize int
	// Limiter decides admission and shields the backends; nil admits
	// everything.
	Limiter *limits.Limiter
	// Reporter receives every handshake, refusal, connection and backend
	// dial. Nil drops them.
	Reporter report.Sink
	// KnownName reports whether a certificate covers a server name, so a
	// failed handshake for any other name is reported as unknown_sni.
	// Nil turns that reason off.
	KnownName func(serverName string) bool
	// ProxyProtocolTLS adds the SSL TLV of PROXY protocol v2 to the header
	// a tcp listener writes to its backends (which must all use version
	// 2): TLS version, cipher, whether the client sent a certificate and
	// it verified, its CN when it did (see sslTLVs).
	ProxyProtocolTLS bool
	// ClientCertsVerified says that TLS verifies every client certificate
	// it accepts (certs.ClientCAs is configured). Without it the SSL TLV
	// never says a certificate verified, nor carries its CN.
	ClientCertsVerified bool
	// ClientAllow, when it lists anything, lets in only the client
	// certificates it lists, checked in VerifyConnection once the chain
	// verified; TLS must ask for client certificates.
	ClientAllow *ClientAllow
	// TLSPolicy is what the listener accepts of a client's TLS stack;
	// the zero value is the modern profile.
	TLSPolicy TLSPolicy
	// HTTP configures KindHTTP listeners.
	HTTP HTTPOptions
	Log  *slog.Logger
}

// HandshakeEvent is what the front knows of one TLS handshake: what the
// classifier needs and what is reported.
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
	// RawServerName is the server name read from the raw ClientHello
	// when crypto/tls refused to parse it (Hello is nil), e.g. a name
	// with a trailing dot; empty otherwise.
	RawServerName string
	// Probe is set for tlsfront's own self-probe.
	Probe bool
}

// Server is the TLS front of one listener: it takes a slot, accepts,
// admits, runs the handshake, classifies and reports it, then hands the
// session to the listener kind's forwarder. It owns its accept loop and
// every connection it accepted.
type Server struct {
	opts     Options
	tls      *tls.Config
	probeTLS *tls.Config // answers tlsfront's own self-probe
	log      *slog.Logger
	rep      report.Sink
	fwd      forwarder
	pipes    *pipes        // tcp copying, with parking
	ids      atomic.Uint64 // connection IDs
	// helloBufs recycles the buffers that keep each ClientHello during
	// its handshake (conn.helloBuf).
	helloBufs sync.Pool
	// observe, when set, sees every handshake event before it is
	// reported; a test seam.
	observe func(*HandshakeEvent)
	// drainLogged makes the drain's summary one log line however often
	// Shutdown is called.
	drainLogged sync.Once

	ctx    context.Context // cancelled by Shutdown: stops accept and slot waits
	cancel context.CancelFunc

	mu        sync.Mutex
	closing   bool
	started   bool
	listeners []net.Listener
	active    map[*conn]net.Conn // client conn -> backend conn (nil until dialled)
	wg        sync.WaitGroup
	stopOnce  sync.Once
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("proxy: server closed")

// New checks o and returns a Server ready to Serve. It starts nothing.
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
	if o.AcceptProxyHeader && len(o.TrustedProxies) == 0 {
		return nil, fmt.Errorf("listener %s: accepting PROXY headers needs the trusted proxies' networks", o.Name)
	}
	if o.MQTTMaxConnectSize < 0 || o.MQTTMaxConnectSize > MaxMQTTPacketSize {
		return nil, fmt.Errorf("listener %s: MQTT CONNECT maximum %d is not between 0 (default) and %d", o.Name, o.MQTTMaxConnectSize, MaxMQTTPacketSize)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: o, log: o.Log.With("listener", o.Name), rep: report.OrDiscard(o.Reporter), active: map[*conn]net.Conn{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.tls = serverTLSConfig(o.TLS, o.TLSPolicy)
	if !o.ClientAllow.Empty() {
		if s.tls.ClientAuth == tls.NoClientCert {
			return nil, fmt.Errorf("listener %s: a client allow list needs client certificates, and the TLS configuration asks for none", o.Name)
		}
		s.tls.VerifyConnection = verifyAllowed(o.ClientAllow, s.tls.VerifyConnection)
	}
	if o.ProxyProtocolTLS {
		if o.Kind != KindTCP {
			return nil, fmt.Errorf("listener %s: the PROXY protocol SSL TLV is for tcp listeners", o.Name)
		}
		for _, be := range append([]Backend{o.Backend}, slices.Collect(maps.Values(o.Routes))...) {
			if be.ProxyProtocol != 2 {
				return nil, fmt.Errorf("listener %s: the PROXY protocol SSL TLV needs PROXY protocol version 2 to %s", o.Name, be)
			}
		}
		recordServed(s.tls)
	}
	s.pipes = newPipes(pipeOptions{IdleTimeout: o.IdleTimeout, ParkAfter: o.ParkAfter, MQTT: o.Kind == KindTCP && o.Protocol == "mqtt", Log: s.log})
	d := &dialer{listener: o.Name, shield: o.Limiter, rep: s.rep}
	switch o.Kind {
	case KindTCP:
		if o.Backend.Address == "" {
			return nil, fmt.Errorf("listener %s: no backend", o.Name)
		}
		s.fwd = newTCPForwarder(s, d)
	case KindHTTP:
		s.tls.NextProtos = []string{"h2", "http/1.1"}
		h, err := newHTTPForwarder(s, d, o.HTTP)
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", o.Name, err)
		}
		s.fwd = h
	default:
		return nil, fmt.Errorf("listener %s: unknown kind %q (want tcp or http)", o.Name, o.Kind)
	}
	s.probeTLS = probeConfig(s.tls)
	s.tls.GetConfigForClient = s.configForClient(s.tls.GetConfigForClient)
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

func serverTLSConfig(base *tls.Config, p TLSPolicy) *tls.Config {
	cfg := base.Clone()
	p.apply(cfg)
	return cfg
}

// probeConfig is the configuration a self-probe's hello gets: the same
// certificates, the probe's ALPN, and no client certificate asked for,
// since the probe checks what clients are served, not who they are. A
// connection that claims to be a probe is closed right after its
// handshake, so skipping client authentication gives it nothing.
func probeConfig(cfg *tls.Config) *tls.Config {
	p := cfg.Clone()
	p.NextProtos = []string{report.ProbeALPN}
	p.GetConfigForClient = nil
	p.ClientAuth = tls.NoClientCert
	p.VerifyConnection = nil
	p.VerifyPeerCertificate = nil
	return p
}

func isProbeHello(h *tls.ClientHelloInfo) bool {
	return len(h.SupportedProtos) == 1 && h.SupportedProtos[0] == report.ProbeALPN
}

// configForClient remembers the ClientHello on our conn, so that a failed
// handshake can be reported with what the client offered, and sends the
// self-probe to its own configuration.
func (s *Server) configForClient(inner func(*tls.ClientHelloInfo) (*tls.Config, error)) func(*tls.ClientHelloInfo) (*tls.Config, error) {
	return func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		c, _ := h.Conn.(*conn)
		if c != nil && c.hs != nil {
			c.hs.hello = h
		}
		if isProbeHello(h) {
			if c != nil && c.hs != nil {
				c.hs.probe = true
			}
			return s.probeTLS, nil
		}
		if inner != nil {
			return inner(h)
		}
		return nil, nil
	}
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
	if !s.started {
		s.started = true
		s.fwd.start()
	}
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
			s.log.Warn("accept failed", "err", err, "retry_in", backoff.String())
			select {
			case <-time.After(backoff):
			case <-s.ctx.Done():
				return ErrServerClosed
			}
			continue
		}
		backoff = 0
		// The handshake's state is a separate object, dropped once the
		// handshake ends: conn lives as long as the connection.
		c := &conn{Conn: raw, rc: plainSocketOf(raw), onClose: release, hs: new(connHandshake)}
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

// serveConn runs one connection through the front, then hands it to the
// forwarder.
func (s *Server) serveConn(c *conn) {
	// owned: the forwarder took the session and ends it (closing c and
	// untracking it) when it is done.
	owned := false
	defer func() {
		if !owned {
			c.Close()
			s.untrack(c)
		}
	}()
	if s.opts.AcceptProxyHeader {
		peer := addrOf(c.RemoteAddr())
		policy := proxyproto.REJECT
		if s.trustedProxy(peer) {
			policy = proxyproto.USE
		}
		pc := proxyproto.NewConn(c.Conn, proxyproto.WithPolicy(policy), proxyproto.SetReadHeaderTimeout(s.helloTimeout()))
		// The header reader buffers what follows the header: reads go
		// through it, not straight to the socket.
		c.Conn, c.rc = pc, nil
		// Reading the header is what makes RemoteAddr the client's.
		if _, err := pc.Read(nil); err != nil {
			if errors.Is(err, proxyproto.ErrSuperfluousProxyHeader) {
				s.rep.Refused(report.Refusal{Listener: s.opts.Name, Client: peer, Limit: LimitUntrustedProxyHeader})
			}
			s.log.Debug("PROXY header refused", "peer", peer.String(), "err", err)
			return
		}
	}
	client := addrOf(c.RemoteAddr())
	ticket, refusal := s.opts.Limiter.Admit(client)
	if refusal != nil {
		s.refused(client, refusal)
		s.holdThenClose(refusal.Delay)
		return
	}
	release := c.onClose
	c.onClose = func() {
		ticket.Close()
		release()
	}

	// The handshake slot (CPU) is taken only once the ClientHello has
	// arrived: a socket that sends nothing, or half a hello, holds a
	// connection slot and counts against its client, but cannot keep
	// anyone else from a handshake.
	start := time.Now()
	if err := c.awaitHello(s.helloTimeout()); err != nil {
		ticket.Handshake(false)
		s.report(s.event(c, start, err))
		return
	}
	if refusal := ticket.StartHandshake(); refusal != nil {
		s.refused(client, refusal)
		s.holdThenClose(refusal.Delay)
		return
	}

	tc := tls.Server(c, s.tls)
	buf, _ := s.helloBufs.Get().(*[helloCaptureLen]byte)
	if buf == nil {
		buf = new([helloCaptureLen]byte)
	}
	// What awaitHello read ahead is the start of the hello.
	c.hs.helloBuf, c.hs.helloLen = buf, copy(buf[:], c.hs.pending)
	ev := s.handshake(tc, c)
	if ev.Err != nil && isIssuance(ev.Err) {
		// The name's certificate is not here yet: not the client's
		// failure, so no penalty for its address.
		ticket.HandshakeEnded()
	} else {
		ticket.Handshake(ev.Err == nil)
	}
	s.report(ev)
	// The hello holds its slices, and the capture a pooled buffer: idle
	// connections keep neither.
	c.endHandshake()
	s.helloBufs.Put(buf)
	if ev.Err != nil || ev.Probe {
		return
	}
	// A CA's TLS-ALPN-01 validation (RFC 8737) checks only the handshake;
	// it must not reach a backend.
	if ev.State.NegotiatedProtocol == "acme-tls/1" {
		return
	}
	owned = s.fwd.forward(s.newSession(tc, c, ev))
}

func (s *Server) newSession(tc *tls.Conn, c *conn, ev *HandshakeEvent) *session {
	sess := &session{
		tc:      tc,
		c:       c,
		client:  ev.Client,
		sni:     ev.State.ServerName,
		start:   time.Now(),
		end:     func() { c.Close(); s.untrack(c) },
		release: func() { s.untrack(c) },
		attach:  func(b net.Conn) bool { return s.setBackend(c, b) },
	}
	sess.id, sess.ja4 = strconv.FormatUint(s.ids.Add(1), 10), ev.JA4
	sess.log = s.log.With("conn", sess.id, "client", ev.Client.String(), "sni", sess.sni)
	return sess
}

// LimitUntrustedProxyHeader names the refusal of a PROXY header from a
// peer outside the listener's trusted proxies.
const LimitUntrustedProxyHeader = "untrusted_proxy_header"

func (s *Server) trustedProxy(peer netip.Addr) bool {
	return s.opts.TrustedProxies.Contains(peer)
}

// helloTimeout is how long a new connection may stay silent: the
// limiter's client_hello_timeout, at most the handshake timeout.
func (s *Server) helloTimeout() time.Duration {
	if t := s.opts.Limiter.Config().ClientHelloTimeout; t > 0 && t < s.opts.HandshakeTimeout {
		return t
	}
	return s.opts.HandshakeTimeout
}

func isIssuance(err error) bool {
	return errors.Is(err, certs.ErrIssuancePending) || errors.Is(err, certs.ErrIssuanceFailing) || errors.Is(err, certs.ErrIssuanceLimited)
}

func (s *Server) handshake(tc *tls.Conn, c *conn) *HandshakeEvent {
	start := time.Now()
	// The deadline bounds the handshake, a client that trickles bytes
	// too; s.ctx only cuts it short at shutdown.
	c.SetDeadline(start.Add(s.opts.HandshakeTimeout))
	err := tc.HandshakeContext(s.ctx)
	c.SetDeadline(time.Time{})
	ev := s.event(c, start, err)
	if err == nil {
		ev.State = tc.ConnectionState()
	}
	return ev
}

// event describes a handshake that started at start and ended with err,
// classifying a failure.
func (s *Server) event(c *conn, start time.Time, err error) *HandshakeEvent {
	ev := &HandshakeEvent{
		Listener:   s.opts.Name,
		Client:     netip.AddrPortFrom(addrOf(c.RemoteAddr()), portOf(c.RemoteAddr())),
		Hello:      c.hs.hello,
		FirstBytes: c.firstBytes(),
		Duration:   time.Since(start),
		Err:        err,
		Probe:      c.hs.probe,
	}
	if err != nil {
		ev.TimedOut = errors.Is(err, context.DeadlineExceeded) || isTimeout(err)
		if ev.Hello == nil {
			// crypto/tls did not get as far as a ClientHelloInfo: read
			// what the client asked for from its bytes, if they are a
			// hello at all.
			raw := c.helloBytes()
			ev.RawServerName, _ = ja4.ServerName(raw)
			ev.JA4, _ = ja4.FromClientHello(raw)
		}
		ev.Reason = classifier{knownName: s.opts.KnownName, minVersion: s.tls.MinVersion}.classify(ev)
	}
	if ev.Hello != nil {
		ev.JA4 = fingerprint(ev.Hello)
	}
	return ev
}

// report passes ev to the reporter without copying the hello's slices:
// the reporter does not keep them past the call.
func (s *Server) report(ev *HandshakeEvent) {
	if s.observe != nil {
		s.observe(ev)
	}
	h := report.Handshake{Listener: ev.Listener, Client: ev.Client, Err: ev.Err, Reason: string(ev.Reason), JA4: ev.JA4, Duration: ev.Duration, Probe: ev.Probe, Resumed: ev.State.DidResume}
	if ev.Err == nil {
		h.Version, h.SNI = ev.State.Version, ev.State.ServerName
	}
	if ev.Hello != nil {
		h.Offered = ev.Hello.SupportedVersions
		if h.SNI == "" {
			h.SNI = ev.Hello.ServerName
		}
	}
	if h.SNI == "" {
		h.SNI = ev.RawServerName
	}
	s.rep.Handshake(&h)
}

func portOf(a net.Addr) uint16 {
	if t, ok := a.(*net.TCPAddr); ok {
		return uint16(t.Port)
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Port()
	}
	return 0
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true // the usual case, without allocating
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (s *Server) refused(client netip.Addr, r *limits.Refusal) {
	s.rep.Refused(report.Refusal{Listener: s.opts.Name, Client: client, Limit: r.Limit})
}

// holdThenClose keeps a refused socket open for a bounded delay, which slows
// a client retrying in a tight loop, then lets it be closed. Shutdown cuts
// the delay short.
func (s *Server) holdThenClose(d time.Duration) {
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
// then closes the rest. It is safe to call more than once, and before
// Serve. With a deadline on ctx, a tcp listener with protocol mqtt does
// not wait for its clients: it ends their connections one after another
// over the time left (see drain.go), and what is left at the deadline is
// closed.
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
	var fwdErr error
	done := make(chan struct{})
	go func() {
		fwdErr = s.fwd.shutdown(ctx)
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.pipes.closeAll() // stops the watcher
		s.logDrain(0)
		return fwdErr
	case <-ctx.Done():
	}
	s.pipes.closeAll()
	// The forwarder's own sessions first: a WebSocket gets its close
	// frame (1001) before its socket is closed below.
	s.fwd.closeAll()
	s.mu.Lock()
	n := len(s.active)
	conns := slices.Collect(func(yield func(net.Conn) bool) {
		for c, b := range s.active {
			if !yield(c) {
				return
			}
			if b != nil && !yield(b) {
				return
			}
		}
	})
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	<-done
	s.logDrain(n)
	if n > 0 {
		s.log.Warn("closed connections still open after grace period", "count", n)
	}
	return ctx.Err()
}

// logDrain logs what the MQTT drain did, if one ran; forced is how many
// connections were still open when the grace period ended.
func (s *Server) logDrain(forced int) {
	d := s.pipes.drainStats()
	if d.Started.IsZero() {
		return
	}
	s.drainLogged.Do(func() {
		s.log.Info("mqtt sessions drained", "sessions", d.Scheduled, "over", d.Window.String(),
			"disconnect_0x8b", d.Disconnected, "closed", d.Closed, "cut_at_deadline", forced, "took", time.Since(d.Started).String())
	})
}
