package proxy

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/limits"
)

// Idle sockets on a plain listener are capped per client and in all, and
// never take more global slots than the cap, so the TLS listeners keep
// theirs.
func TestPlainListenerCaps(t *testing.T) {
	l := newLimiter(t, limits.Config{MaxConns: 40})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := NewRedirect(RedirectOptions{Limits: PlainLimits{Limiter: l, MaxConns: 12, PerClient: 4}})
	go r.Serve(ln)
	t.Cleanup(func() { r.srv.Close() })

	open := func(src string, n int) (kept int) {
		t.Helper()
		for range n {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
			c, err := d.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			// A refused socket is closed at once; a kept one stays open
			// (it sent nothing, so the header timeout has not passed).
			c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if _, err := c.Read(make([]byte, 1)); err != io.EOF {
				kept++
			}
		}
		return kept
	}
	if kept := open("127.0.0.5", 10); kept != 4 {
		t.Errorf("one client kept %d idle sockets, want its cap of 4", kept)
	}
	kept := 0
	for i := range 5 {
		kept += open(fmt.Sprintf("127.0.1.%d", i+1), 4)
	}
	if kept != 8 {
		t.Errorf("other clients kept %d more, want 8 (the listener's cap of 12)", kept)
	}
	if st := l.Stats(); st.OpenConns != 12 {
		t.Errorf("global slots taken: %d, want 12", st.OpenConns)
	}
}
