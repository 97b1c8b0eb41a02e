package proxy

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/limits"
)

// TestLargeConnectThroughProxy: with CONNECTs read for the client-id
// limit, a legal CONNECT above 64 KiB reaches the broker whole, and one
// over the listener's maximum is answered with a CONNACK saying so.
func TestLargeConnectThroughProxy(t *testing.T) {
	be := newEchoBackend(t, false)
	lim := func() *limits.Limiter { return newLimiter(t, limits.Config{ClientIDRate: 1000, ClientIDBurst: 1000}) }
	def := startProxy(t, Options{Backend: be.backend(), Protocol: "mqtt", Limiter: lim()})
	small := startProxy(t, Options{Backend: be.backend(), Protocol: "mqtt", Limiter: lim(), MQTTMaxConnectSize: 1024})

	t.Run("100 KiB reaches the broker", func(t *testing.T) {
		pkt := bigConnect(4, 100<<10)
		c := def.dial(t, "localhost")
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go c.Write(pkt)
		got := make([]byte, len(pkt))
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, pkt) {
			t.Fatalf("backend echoed %d bytes (%v), want the CONNECT replayed whole", len(got), err)
		}
	})
	for _, tt := range []struct {
		name string
		p    *testProxy
		pkt  []byte
		want []byte
	}{
		{"300 KiB MQTT 5 over the default", def, bigConnect(5, 300<<10), []byte{0x20, 0x03, 0x00, 0x95, 0x00}},
		{"300 KiB MQTT 3.1.1 over the default", def, bigConnect(4, 300<<10), []byte{0x20, 0x02, 0x00, 0x03}},
		{"2000 bytes MQTT 5 over a 1024 maximum", small, bigConnect(5, 2000), []byte{0x20, 0x03, 0x00, 0x95, 0x00}},
		{"1024 bytes within a 1024 maximum", small, bigConnect(5, 1024), bigConnect(5, 1024)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.p.dial(t, "localhost")
			c.SetDeadline(time.Now().Add(10 * time.Second))
			go c.Write(tt.pkt)
			got := make([]byte, len(tt.want))
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, tt.want) {
				t.Fatalf("got % x (%v), want % x", got[:min(len(got), 16)], err, tt.want[:min(len(tt.want), 16)])
			}
		})
	}
}
