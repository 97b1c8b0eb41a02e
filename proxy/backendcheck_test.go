package proxy

import (
	"net"
	"strings"
	"testing"
)

// TestBackendCheck: a backend that is down names its listener, kinds
// without a backend are skipped, and the result stands for a while.
func TestBackendCheck(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downAddr := down.Addr().String()
	down.Close()

	c := &BackendCheck{Listeners: []ListenerConfig{
		{Name: "up", Kind: "tcp", Backend: up.Addr().String()},
		{Name: "plain", Kind: "redirect"},
	}}
	if err := c.Reachable(); err != nil {
		t.Fatalf("backend up: %v", err)
	}

	c = &BackendCheck{Listeners: []ListenerConfig{
		{Name: "up", Kind: "tcp", Backend: up.Addr().String()},
		{Name: "down", Kind: "http", Backend: downAddr},
	}}
	err = c.Reachable()
	if err == nil || !strings.Contains(err.Error(), "listener down: backend "+downAddr+" unreachable") || strings.Contains(err.Error(), "listener up") {
		t.Fatalf("err = %v", err)
	}
	// Within the interval the answer is the cached one, even though
	// nothing listens any more.
	up.Close()
	c.Listeners[1].Backend = up.Addr().String()
	if again := c.Reachable(); again == nil || again.Error() != err.Error() {
		t.Fatalf("second check %v, want the cached %v", again, err)
	}
}
