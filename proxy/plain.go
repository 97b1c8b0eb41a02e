package proxy

import (
	"net"
	"net/netip"
	"sync"

	"github.com/tlsfront/tlsfront/limits"
)

// PlainLimits bound what a plain listener (redirect, admin, metrics) may
// hold, so that idle sockets there cannot take the descriptors the TLS
// listeners need.
type PlainLimits struct {
	// Limiter's global connection slots are taken without waiting; nil
	// takes none.
	Limiter *limits.Limiter
	// MaxConns caps the listener's open connections; 0 means 256.
	MaxConns int
	// PerClient caps one client address's open connections; 0 means 16.
	PerClient int
}

// LimitListener returns ln with o's caps: a connection over any of them
// is closed at once, before a byte is read.
func LimitListener(ln net.Listener, o PlainLimits) net.Listener {
	if o.MaxConns <= 0 {
		o.MaxConns = 256
	}
	if o.PerClient <= 0 {
		o.PerClient = 16
	}
	return &plainListener{Listener: ln, o: o, perClient: map[netip.Addr]int{}}
}

type plainListener struct {
	net.Listener
	o         PlainLimits
	mu        sync.Mutex
	open      int
	perClient map[netip.Addr]int
}

func (l *plainListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if pc, ok := l.admit(c); ok {
			return pc, nil
		}
		c.Close()
	}
}

func (l *plainListener) admit(c net.Conn) (net.Conn, bool) {
	client := addrOf(c.RemoteAddr())
	l.mu.Lock()
	if l.open >= l.o.MaxConns || l.perClient[client] >= l.o.PerClient {
		l.mu.Unlock()
		return nil, false
	}
	release, ok := l.o.Limiter.TryAcquireSlot()
	if !ok {
		l.mu.Unlock()
		return nil, false
	}
	l.open++
	l.perClient[client]++
	l.mu.Unlock()
	// conn for its close-once release, without handshake state: nothing
	// here reads the handshake bytes conn would otherwise keep on every
	// read.
	pc := &conn{Conn: c}
	pc.onClose = func() {
		release()
		l.mu.Lock()
		l.open--
		if l.perClient[client]--; l.perClient[client] <= 0 {
			delete(l.perClient, client)
		}
		l.mu.Unlock()
	}
	return pc, true
}
