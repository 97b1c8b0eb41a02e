package proxy

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/tlsfront/tlsfront/limits"
	"github.com/tlsfront/tlsfront/report"
)

// tcpForwarder connects each session to its backend and copies bytes both
// ways. With protocol mqtt it answers refusals with a CONNACK and can limit
// by MQTT client ID.
type tcpForwarder struct {
	name     string
	ctx      context.Context // the front's: cancelled by Shutdown
	dialer   *dialer
	limiter  *limits.Limiter
	rep      report.Sink
	backend  Backend
	routes   map[string]Backend
	protocol string
	timeout  time.Duration // for reading a CONNECT and writing answers
	pipes    *pipes
	// clientIDLimit: MQTT CONNECTs are read before the backend is dialled,
	// to limit by client id.
	clientIDLimit bool
	// maxConnect is the largest MQTT CONNECT read, fixed header included.
	maxConnect int
	// proxyTLS adds the SSL TLV to the PROXY header; verified says TLS
	// verified the client certificates it accepted.
	proxyTLS, verified bool
}

func newTCPForwarder(s *Server, d *dialer) *tcpForwarder {
	o := s.opts
	return &tcpForwarder{
		name: o.Name, ctx: s.ctx, dialer: d, limiter: o.Limiter, rep: s.rep,
		backend: o.Backend, routes: o.Routes, protocol: o.Protocol,
		timeout: o.HandshakeTimeout, pipes: s.pipes,
		clientIDLimit: o.Protocol == "mqtt" && o.Limiter.Config().ClientIDRate > 0,
		maxConnect:    cmp.Or(o.MQTTMaxConnectSize, DefaultMQTTMaxConnectSize),
		proxyTLS:      o.ProxyProtocolTLS,
		verified:      o.ClientCertsVerified,
	}
}

func (f *tcpForwarder) start()    {}
func (f *tcpForwarder) closeAll() {}

// drainMargin is the part of the time left until Shutdown's deadline that
// a drain (MQTT over tcp, WebSockets) leaves free at its end, for the last
// clients to read their DISCONNECT or close frame and close.
const drainMargin = 10 // per cent

// shutdown starts the paced drain of MQTT connections (drain.go) over the
// time left until ctx's deadline, less drainMargin; without a deadline, or
// for other protocols, connections run on until ctx ends. The front's
// registry holds every session, so there is nothing else to wait for.
func (f *tcpForwarder) shutdown(ctx context.Context) error {
	if window, ok := drainWindow(ctx); ok && f.protocol == "mqtt" {
		f.pipes.drain(window)
	}
	return nil
}

// backendFor picks the route for the negotiated server name.
func backendFor(routes map[string]Backend, def Backend, sni string) Backend {
	if b, ok := routes[strings.ToLower(sni)]; ok {
		return b
	}
	return def
}

// forward connects the session to its backend and starts copying bytes
// both ways. It reports whether it did: the copy goroutines then own the
// session and end it when both directions are done.
func (f *tcpForwarder) forward(sess *session) bool {
	tc := sess.tc
	be := backendFor(f.routes, f.backend, sess.sni)
	client := sess.client.Addr()

	// With a per-client-id limit, the CONNECT is read first: the id is in
	// it. It is replayed to the backend once connected.
	var head []byte
	level := byte(0) // unknown until CONNECT is read
	if f.clientIDLimit {
		tc.SetReadDeadline(time.Now().Add(f.timeout))
		h, info, err := readConnect(tc, f.maxConnect)
		tc.SetReadDeadline(time.Time{})
		var big *connectTooLargeError
		if errors.As(err, &big) {
			sess.log.Warn("mqtt connect too large", "size", big.Size, "max", big.Max, "level", big.Level)
			if big.Level != 0 {
				f.answerMQTT(tc, big.Level, reasonTooLarge)
				f.linger(tc, big.Size)
			}
			return false
		}
		if err != nil {
			sess.log.Debug("no MQTT CONNECT", "err", err)
			return false
		}
		if r := f.limiter.AdmitClientID(info.ClientID); r != nil {
			f.rep.Refused(report.Refusal{Listener: f.name, Client: client, Limit: r.Limit})
			f.answerMQTT(tc, info.Level, reasonRateLimited)
			return false
		}
		head, level = h, info.Level
	}

	var tlvs []proxyproto.TLV
	if f.proxyTLS {
		var err error
		if tlvs, err = sslTLVs(tc.ConnectionState(), sess.c.served, f.verified); err != nil {
			sess.log.Warn("PROXY SSL TLV not built", "err", err)
			return false
		}
	}
	// An MQTT broker answers every CONNECT: until it does, the breaker
	// does not count the connection as a success (see pipe.unanswered).
	// done stays nil for other protocols; head is read only for MQTT.
	var done func(error)
	var bc net.Conn
	var err error
	if f.protocol == "mqtt" {
		bc, done, err = f.dialer.dialAwaitingAnswer(f.ctx, be, client, sess.c.RemoteAddr(), sess.c.LocalAddr(), tlvs)
	} else {
		bc, err = f.dialer.dialWith(f.ctx, be, client, sess.c.RemoteAddr(), sess.c.LocalAddr(), tlvs)
	}
	if err != nil {
		reason := reasonUnavailable
		var refusal *limits.Refusal
		if errors.As(err, &refusal) {
			if refusal.Busy {
				reason = reasonBusy
			}
		} else {
			sess.log.Warn("backend dial failed", "backend", be.String(), "err", err)
		}
		// Tell the client in its own protocol, so that it backs off
		// instead of retrying at once.
		f.refuseInProtocol(tc, head, level, reason)
		return false
	}
	if !sess.attach(bc) {
		if done != nil {
			f.dialer.answer(be, client, done, context.Canceled)
		}
		bc.Close()
		return false
	}
	if len(head) > 0 {
		bc.SetWriteDeadline(time.Now().Add(f.timeout))
		if _, err := bc.Write(head); err != nil {
			f.dialer.answer(be, client, done, fmt.Errorf("%w: %w", errNoAnswer, err))
			f.answerMQTT(tc, level, reasonUnavailable)
			bc.Close()
			return false
		}
		bc.SetWriteDeadline(time.Time{})
	}
	f.rep.ConnOpened(f.name)
	t := &tcpConn{f: f, c: sess.c, id: sess.id, sni: sess.sni, ja4: sess.ja4, start: sess.start, end: sess.end, extra: int64(len(head)), done: done}
	f.pipes.startAnswered(tc, bc, level, done != nil, t)
	return true
}

// tcpConn is a forwarded connection as its end needs it: the access line
// and, for MQTT, the breaker's answer. It lives as long as the
// connection, idle or not, so it keeps only what cannot be had at the end
// from the forwarder or the connection: the client's address is read
// from c, the backend is routed again from the server name.
type tcpConn struct {
	f     *tcpForwarder
	c     *conn
	id    string
	sni   string
	ja4   string
	start time.Time
	end   func() // the session's
	extra int64  // CONNECT bytes replayed to the backend before the pipe
	// done is the breaker's verdict on the dial, for an MQTT backend
	// whose answer is awaited; nil otherwise.
	done func(error)
}

// client is the client's address, as the session had it.
func (t *tcpConn) client() netip.AddrPort {
	ra := t.c.RemoteAddr()
	return netip.AddrPortFrom(addrOf(ra), portOf(ra))
}

func (t *tcpConn) answered(err error) {
	t.f.dialer.answer(backendFor(t.f.routes, t.f.backend, t.sni), t.client().Addr(), t.done, err)
}

func (t *tcpConn) finish(in, out int64) {
	f := t.f
	client := t.client() // before end closes the connection
	be := backendFor(f.routes, f.backend, t.sni)
	f.rep.ConnClosed(report.ConnClosed{
		Listener: f.name, ConnID: t.id, Client: client, SNI: t.sni, JA4: t.ja4, Backend: be.String(),
		FromClient: in + t.extra, ToClient: out, Duration: time.Since(t.start), End: f.endOf(),
	})
	t.end()
}

// endOf says how a connection ended: at shutdown, or closed by one of
// its sides.
func (f *tcpForwarder) endOf() string {
	if f.ctx.Err() != nil {
		return "shutdown"
	}
	return "closed"
}

// refuseInProtocol answers a client we will not forward: for MQTT with a
// CONNACK giving the reason (reading the CONNECT first unless head already
// holds it); otherwise the connection is just closed.
func (f *tcpForwarder) refuseInProtocol(tc *tls.Conn, head []byte, level byte, reason connackReason) {
	if f.protocol != "mqtt" {
		return
	}
	if head != nil {
		f.answerMQTT(tc, level, reason)
		return
	}
	refuseMQTT(tc, reason, f.timeout, f.maxConnect)
}

func (f *tcpForwarder) answerMQTT(tc *tls.Conn, level byte, reason connackReason) {
	tc.SetWriteDeadline(time.Now().Add(f.timeout))
	tc.Write(connack(level, reason))
}

// linger lets a client that is still sending read the CONNACK just
// written: closing a socket with unread bytes resets it, and a reset can
// reach the client before the CONNACK is read. Our side is half-closed,
// and what the client sends is discarded for a bounded time and size.
func (f *tcpForwarder) linger(tc *tls.Conn, size int) {
	if err := tc.CloseWrite(); err != nil {
		return
	}
	tc.SetReadDeadline(time.Now().Add(min(f.timeout, 2*time.Second)))
	io.CopyN(io.Discard, tc, int64(min(size, 4<<20)))
}
