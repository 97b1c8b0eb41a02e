package main

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/internal/broker"
	"github.com/tlsfront/tlsfront/internal/testnet"
)

// A dead or misbehaving broker is visible at once, with real parts: its
// MQTT clients are refused in their protocol, and the metrics, /status and
// the log say which backend and why, while tlsfront itself stays ready.

// connect5 is an MQTT 5 CONNECT for client id "dev".
var connect5 = []byte{0x10, 0x10, 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 60, 0, 0, 3, 'd', 'e', 'v'}

// mqttRefusedFrom connects from src, sends an MQTT 5 CONNECT and returns
// everything tlsfront answers before it closes.
func mqttRefusedFrom(t *testing.T, f *monFixture, addr, src string) []byte {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	c := tls.Client(raw, f.ca.ClientConfig("localhost"))
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(connect5); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(c)
	return got
}

func TestBrokerFailuresAreVisible(t *testing.T) {
	unavailable := []byte{0x20, 0x03, 0x00, 0x88, 0x00}
	for _, tt := range []struct {
		name    string
		backend func(t *testing.T) string // starts it and breaks it
		lastErr string
	}{
		{"stopped mosquitto", func(t *testing.T) string {
			b, err := broker.StartMosquitto(requireMosquitto(t), t.TempDir(), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			b.Close()
			return b.MQTT
		}, "connection refused"},
		{"broker that accepts then resets", func(t *testing.T) string {
			ln := testnet.Listen(t)
			testnet.Serve(t, ln, func(c net.Conn) {
				c.Read(make([]byte, 64))
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
			})
			return ln.Addr().String()
		}, "without answering"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newMonFixture(t)
			f.backend = tt.backend(t)
			ta := startApp(t, f.args("--probe-disabled", "--breaker-failures", "3", "--breaker-cooldown", "1m")...)
			addr := ta.Addr("main")
			for i := range 5 {
				if got := mqttRefusedFrom(t, f, addr, fmt.Sprintf("127.0.8.%d", i+1)); !bytes.Equal(got, unavailable) {
					t.Fatalf("client %d got % x, want CONNACK 0x88 (server unavailable)", i, got)
				}
			}
			if v := metricSum(t, ta, `tlsfront_backend_breaker_open{backend="`+f.backend+`"}`); v != 1 {
				t.Errorf("tlsfront_backend_breaker_open = %v, want 1", v)
			}
			if v := metricSum(t, ta, `tlsfront_backend_up{backend="`+f.backend+`"}`); v != 0 {
				t.Errorf("tlsfront_backend_up = %v, want 0", v)
			}
			if v := metricSum(t, ta, `tlsfront_limit_refusals_total{limit="backend_down"`); v != 2 {
				t.Errorf("backend_down refusals = %v, want 2 (after 3 failures)", v)
			}
			_, _, status := adminGet(t, ta, "/status", "application/json")
			if !strings.Contains(status, tt.lastErr) || !strings.Contains(status, `"breaker": "open"`) {
				t.Errorf("/status does not show the open breaker and %q: %s", tt.lastErr, status)
			}
			ta.WaitLog("backend breaker opened", 15*time.Second)
			if code, _, body := adminGet(t, ta, "/readyz", ""); code != http.StatusOK {
				t.Errorf("/readyz = %d %q: tlsfront itself is fine (ready_requires_backend is off)", code, body)
			}
		})
	}
}
