package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/tlsfront/tlsfront/limits"
	"github.com/tlsfront/tlsfront/report"
)

// Shield paces new backend connections and refuses them while a backend is
// down (*limits.Limiter; a nil one admits everything).
type Shield interface {
	BackendFor(ctx context.Context, backend string, client netip.Addr) (done func(dialErr error), refused *limits.Refusal)
}

// dialer connects to backends through the shield and reports each attempt
// and refusal. Every forwarder dials through it.
type dialer struct {
	listener string
	shield   Shield
	rep      report.Sink
	blame    unanswered
}

// unanswered remembers, per backend, the clients whose connections the
// backend ended without answering since it last answered anyone. Only
// the first such connection of each client counts against the backend:
// a broker closes a connection whose CONNECT it rejects without a word,
// so a single client sending those could otherwise open the breaker for
// everyone. A broker that drops connections fails many clients at once.
type unanswered struct {
	mu      sync.Mutex
	clients map[string]map[netip.Addr]struct{} // by backend
	n       atomic.Int32                       // clients held, to skip the lock on success
}

// maxUnanswered bounds the clients remembered per backend; past it every
// unanswered connection counts (that many clients failing is an outage).
const maxUnanswered = 256

// first records client's unanswered connection to backend and says
// whether it is the client's first since the backend last answered.
func (u *unanswered) first(backend string, client netip.Addr) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.clients == nil {
		u.clients = map[string]map[netip.Addr]struct{}{}
	}
	set := u.clients[backend]
	if set == nil {
		set = map[netip.Addr]struct{}{}
		u.clients[backend] = set
	}
	if _, seen := set[client]; seen {
		return false
	}
	if len(set) < maxUnanswered {
		set[client] = struct{}{}
		u.n.Add(1)
	}
	return true
}

// answered forgets backend's unanswered clients: it works again.
func (u *unanswered) answered(backend string) {
	if u.n.Load() == 0 {
		return
	}
	u.mu.Lock()
	u.n.Add(-int32(len(u.clients[backend])))
	delete(u.clients, backend)
	u.mu.Unlock()
}

// dialWith connects to be for client, whose connection arrived from src
// at dst, with tlvs for a PROXY protocol v2 header. A refusal by the
// shield is returned as a *limits.Refusal error, already reported. The
// breaker learns the dial's outcome.
func (d *dialer) dialWith(ctx context.Context, be Backend, client netip.Addr, src, dst net.Addr, tlvs []proxyproto.TLV) (net.Conn, error) {
	c, done, err := d.dialDeferred(ctx, be, client, src, dst, tlvs)
	if err == nil {
		done(nil)
	}
	return c, err
}

// dialHTTP is dial for a backend that speaks first once asked: the breaker
// learns of a success only when the backend sends its first byte, and of
// a failure when the connection ends before one, so a backend that
// accepts and closes without answering counts as down. Whatever it
// answers, any HTTP status, counts as up.
func (d *dialer) dialHTTP(ctx context.Context, be Backend, client netip.Addr, src, dst net.Addr) (net.Conn, error) {
	c, done, err := d.dialDeferred(ctx, be, client, src, dst, nil)
	if err != nil {
		return nil, err
	}
	return &answerConn{Conn: c, done: d.answered(be, client, done)}, nil
}

// dialAwaitingAnswer is dial for a backend that answers the client's
// first packet (an MQTT broker its CONNECT): the caller must pass done to
// answer once, with nil when the backend sent its first byte, with an
// error wrapping errNoAnswer when it ended the connection before, or with
// context.Canceled when we or the client gave up first. It keeps done
// rather than a closure: the connection may stay idle for long.
func (d *dialer) dialAwaitingAnswer(ctx context.Context, be Backend, client netip.Addr, src, dst net.Addr, tlvs []proxyproto.TLV) (c net.Conn, done func(error), err error) {
	return d.dialDeferred(ctx, be, client, src, dst, tlvs)
}

// answered is answer as a hook.
func (d *dialer) answered(be Backend, client netip.Addr, done func(error)) func(error) {
	return func(err error) { d.answer(be, client, done, err) }
}

// answer passes a connection's first answer, or its lack, to the
// breaker (done) and reports a connection that ended unanswered. A
// client's repeated unanswered connections count against the backend
// once (see unanswered).
func (d *dialer) answer(be Backend, client netip.Addr, done func(error), err error) {
	switch {
	case err == nil:
		d.blame.answered(be.String())
	case errors.Is(err, errNoAnswer):
		d.rep.BackendReset(report.BackendReset{Listener: d.listener, Backend: be.String(), Err: err})
		if !d.blame.first(be.String(), client) {
			err = context.Canceled // not the backend's failure a second time
		}
	}
	done(err)
}

// dialDeferred dials and reports a failed dial to the breaker; the caller
// reports the outcome of a successful one with done.
func (d *dialer) dialDeferred(ctx context.Context, be Backend, client netip.Addr, src, dst net.Addr, tlvs []proxyproto.TLV) (net.Conn, func(error), error) {
	done, refusal := d.shield.BackendFor(ctx, be.String(), client)
	if refusal != nil {
		d.rep.Refused(report.Refusal{Listener: d.listener, Client: client, Limit: refusal.Limit})
		return nil, nil, refusal
	}
	start := time.Now()
	c, err := be.dialTLVs(ctx, src, dst, tlvs)
	d.rep.BackendDial(report.BackendDial{Listener: d.listener, Backend: be.String(), Took: time.Since(start), Err: err})
	if err != nil {
		done(err)
		return nil, nil, err
	}
	return c, done, nil
}

// errNoAnswer is a backend connection that ended before the backend sent
// a byte.
var errNoAnswer = errors.New("backend closed the connection without answering")

// answerConn reports to the breaker when the backend first answers, or
// fails to.
type answerConn struct {
	net.Conn
	once  sync.Once
	done  func(error)
	asked atomic.Bool // a request was written
}

func (c *answerConn) Write(b []byte) (int, error) {
	c.asked.Store(true)
	return c.Conn.Write(b)
}

func (c *answerConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	switch {
	case n > 0:
		c.report(nil)
	case err == nil:
	case errors.Is(err, net.ErrClosed), !c.asked.Load():
		// We closed it, or the backend closed a connection the HTTP
		// transport dialled but never used (its keep-alive timeout):
		// nothing went unanswered.
		c.report(context.Canceled)
	default:
		c.report(fmt.Errorf("%w: %w", errNoAnswer, err))
	}
	return n, err
}

func (c *answerConn) report(err error) { c.once.Do(func() { c.done(err) }) }

// Close before any answer is our giving up (the client left, shutdown).
func (c *answerConn) Close() error {
	c.report(context.Canceled)
	return c.Conn.Close()
}

// CloseWrite half-closes the backend connection.
func (c *answerConn) CloseWrite() error {
	if hc, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return hc.CloseWrite()
	}
	return c.Conn.Close()
}
