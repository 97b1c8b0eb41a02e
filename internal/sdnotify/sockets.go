package sdnotify

import (
	"context"
	"log/slog"
	"net"
)

// Sockets opens a program's listening sockets, taking those systemd
// passed (socket activation) before binding new ones. It is not safe for
// concurrent use.
type Sockets struct {
	reusePort bool
	log       *slog.Logger
	passed    map[string]net.Listener
}

// OpenSockets takes the sockets systemd passed (see Listeners); new
// sockets are bound with SO_REUSEPORT when reusePort is set.
func OpenSockets(reusePort bool, log *slog.Logger) (*Sockets, error) {
	passed, err := Listeners()
	if err != nil {
		return nil, err
	}
	return &Sockets{reusePort: reusePort, log: log, passed: passed}, nil
}

// Listen takes the socket systemd passed for name (or for its address),
// else binds addr.
func (s *Sockets) Listen(name, addr string) (net.Listener, error) {
	for _, key := range []string{name, addr} {
		if ln, ok := s.passed[key]; ok {
			delete(s.passed, key)
			s.log.Info("using the socket systemd passed", "listener", name, "addr", ln.Addr().String())
			return ln, nil
		}
	}
	lc := net.ListenConfig{}
	if s.reusePort {
		lc.Control = ReusePort
	}
	return lc.Listen(context.Background(), "tcp", addr)
}

// CloseUnused closes, with a warning each, the sockets systemd passed
// that no Listen took.
func (s *Sockets) CloseUnused() {
	for name, ln := range s.passed {
		s.log.Warn("socket activation: a socket matches no listener; closing it", "socket", name)
		ln.Close()
	}
	s.passed = nil
}
