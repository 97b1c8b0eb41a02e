package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tlsfront/tlsfront/internal/testnet"
	"github.com/tlsfront/tlsfront/report"
)

// A self-probe completes its handshake and is ended there: no backend
// connection, no dial reported, and it is reported as a probe.
func TestProbeNeverReachesBackend(t *testing.T) {
	var accepted atomic.Int64
	ln := testnet.Listen(t)
	testnet.Serve(t, ln, func(c net.Conn) { accepted.Add(1) })
	for _, kind := range []Kind{KindTCP, KindHTTP} {
		t.Run(string(kind), func(t *testing.T) {
			rec := newRecorder()
			p := startProxy(t, Options{Kind: kind, Backend: Backend{Network: "tcp", Address: ln.Addr().String()}, Protocol: "mqtt", Reporter: rec})
			for range 5 {
				cfg := p.ca.ClientConfig("localhost")
				cfg.NextProtos = []string{report.ProbeALPN}
				c, err := tls.Dial("tcp", p.addr, cfg)
				if err != nil {
					t.Fatalf("probe handshake: %v", err)
				}
				if got := c.ConnectionState().NegotiatedProtocol; got != report.ProbeALPN {
					t.Errorf("negotiated %q, want %q", got, report.ProbeALPN)
				}
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Read(make([]byte, 1)); err == nil {
					t.Error("probe connection carried data; want it closed after the handshake")
				}
				c.Close()
			}
			eventually(t, "5 probe handshakes reported", 5*time.Second, func() bool {
				hs, _ := rec.snapshot()
				return len(hs) == 5
			})
			hs, _ := rec.snapshot()
			for _, h := range hs {
				if !h.Probe || h.Err != nil {
					t.Errorf("handshake reported as probe=%v err=%v, want a successful probe", h.Probe, h.Err)
				}
			}
			if n := len(rec.dials); n != 0 {
				t.Errorf("%d backend dials for probes, want 0", n)
			}
			if n := accepted.Load(); n != 0 {
				t.Errorf("backend accepted %d connections from probes, want 0", n)
			}
		})
	}
}

// Building a listener starts nothing, so a start that fails later (another
// listener not binding) leaves no goroutine behind.
func TestNewStartsNoGoroutine(t *testing.T) {
	ca := newTestTLS(t)
	before := runtime.NumGoroutine()
	var servers []*Server
	for range 20 {
		s, err := New(Options{Name: "h", Kind: KindHTTP, TLS: ca, Backend: Backend{Network: "tcp", Address: "127.0.0.1:1"}})
		if err != nil {
			t.Fatal(err)
		}
		servers = append(servers, s)
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("New started %d goroutines", after-before)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range servers {
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown before serve: %v", err)
		}
	}
}

func newTestTLS(t *testing.T) *tls.Config {
	p := startProxy(t, Options{Backend: Backend{Network: "tcp", Address: "127.0.0.1:1"}})
	return p.opts.TLS
}

// A WebSocket session reports the bytes it carried each way.
func TestWebSocketBytesReported(t *testing.T) {
	rec := newRecorder()
	p := startProxy(t, Options{Kind: KindHTTP, Backend: startHTTPBackend(t), Reporter: rec})
	d := websocket.Dialer{TLSClientConfig: p.ca.ClientConfig("localhost"), Subprotocols: []string{"mqtt"}}
	c, _, err := d.Dial("wss://"+p.addr+"/mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, 1000)
	for range 3 {
		c.WriteMessage(websocket.BinaryMessage, msg)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := c.ReadMessage(); err != nil {
			t.Fatal(err)
		}
	}
	c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.Close()
	eventually(t, "websocket close reported", 5*time.Second, func() bool {
		_, closed := rec.snapshot()
		return len(closed) == 1
	})
	_, closed := rec.snapshot()
	if closed[0].FromClient != 3000 || closed[0].ToClient != 3000 {
		t.Errorf("bytes from/to client = %d/%d, want 3000/3000", closed[0].FromClient, closed[0].ToClient)
	}
}
