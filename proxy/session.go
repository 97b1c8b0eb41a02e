package proxy

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"
)

// session is a handshaken connection the front hands to a forwarder.
type session struct {
	tc     *tls.Conn
	c      *conn // the accepted connection under tc
	client netip.AddrPort
	sni    string
	ja4    string
	id     string // in every log line about the connection
	start  time.Time
	// resets counts HTTP/2 streams the client reset before their answer;
	// resetClosed is set once the connection was closed for it.
	resets      atomic.Int64
	resetClosed atomic.Bool
	// log carries the listener, connection ID, client and server name.
	log *slog.Logger
	// attach registers the backend connection with the front, so that a
	// shutdown past its grace period closes it; false means the front
	// has already closed the session.
	attach func(backend net.Conn) bool
	// end closes the client connection and tells the front the session
	// is over. The forwarder that took the session calls it, or release,
	// exactly once.
	end func()
	// release tells the front the session is over without closing
	// anything, for a forwarder that closes the connection itself.
	release func()
}

// forwarder is what a listener kind does with a handshaken session.
type forwarder interface {
	// start begins the forwarder's own background work; Serve calls it
	// once.
	start()
	// forward takes sess and reports whether it did: it then ends it.
	// Otherwise the front closes the connection.
	forward(sess *session) bool
	// shutdown waits for the sessions the forwarder holds apart from the
	// front's registry until ctx ends.
	shutdown(ctx context.Context) error
	// closeAll closes whatever is left after the grace period, each
	// session in its own protocol where it has one (a WebSocket close
	// frame); it returns once they are closed, in bounded time.
	closeAll()
}
