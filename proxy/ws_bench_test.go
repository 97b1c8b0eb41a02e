package proxy

import (
	"runtime"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// BenchmarkWebSocketEcho is one 1 KiB binary message to the echo backend
// and back, through the proxy.
func BenchmarkWebSocketEcho(b *testing.B) {
	p := startProxy(b, Options{Kind: KindHTTP, Backend: startHTTPBackend(b)})
	d := websocket.Dialer{TLSClientConfig: p.ca.ClientConfig("localhost"), Subprotocols: []string{"mqtt"}}
	c, _, err := d.Dial("wss://"+p.addr+"/mqtt", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, 1024)
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for range b.N {
		if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.ReadMessage(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWebSocketIdle reports the memory (heap and stacks) and
// goroutines each idle WebSocket costs, client and backend included
// (both are in this process).
func BenchmarkWebSocketIdle(b *testing.B) {
	const n = 1500
	p := startProxy(b, Options{Kind: KindHTTP, Backend: startHTTPBackend(b)})
	d := websocket.Dialer{TLSClientConfig: p.ca.ClientConfig("localhost"), Subprotocols: []string{"mqtt"}}
	for range b.N {
		var conns []*websocket.Conn
		before := memNow()
		g0 := runtime.NumGoroutine()
		for range n {
			c, _, err := d.Dial("wss://"+p.addr+"/mqtt", nil)
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		// Each connection carried a message, as an MQTT CONNECT would.
		for _, c := range conns {
			c.WriteMessage(websocket.BinaryMessage, []byte("\x10\x0c hello"))
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			c.ReadMessage()
		}
		after := memNow()
		b.ReportMetric(float64(after-before)/n, "bytes/conn")
		b.ReportMetric(float64(runtime.NumGoroutine()-g0)/n, "goroutines/conn")
		for _, c := range conns {
			c.Close()
		}
	}
}

func memNow() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}
