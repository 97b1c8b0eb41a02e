package sdnotify

import (
	"errors"
	"log/slog"
	"net"
	"testing"
)

// TestSockets: a passed socket is taken by name or by address, others are
// bound, and what no one took is closed.
func TestSockets(t *testing.T) {
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln
	}
	byName, byAddr, unused := listen(), listen(), listen()
	s := &Sockets{log: slog.New(slog.DiscardHandler), passed: map[string]net.Listener{
		"main":                 byName,
		byAddr.Addr().String(): byAddr,
		unused.Addr().String(): unused,
	}}
	if ln, err := s.Listen("main", "127.0.0.1:1"); err != nil || ln != byName {
		t.Fatalf("by name: %v, %v", ln, err)
	}
	if ln, err := s.Listen("admin", byAddr.Addr().String()); err != nil || ln != byAddr {
		t.Fatalf("by address: %v, %v", ln, err)
	}
	fresh, err := s.Listen("ws", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if fresh == unused {
		t.Fatal("a new address got a passed socket")
	}
	s.CloseUnused()
	if _, err := unused.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("unused socket still open: %v", err)
	}
}
