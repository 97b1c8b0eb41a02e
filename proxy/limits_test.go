package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/internal/testnet"
	"github.com/tlsfront/tlsfront/limits"
)

func newLimiter(t *testing.T, cfg limits.Config) *limits.Limiter {
	t.Helper()
	l, err := limits.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// connect311 and connect5 are CONNECTs for client id "dev-1".
var (
	connect311 = []byte{0x10, 0x11, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 5, 'd', 'e', 'v', '-', '1'}
	connect5   = []byte{0x10, 0x12, 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 60, 0, 0, 5, 'd', 'e', 'v', '-', '1'}
)

func TestClientIDLimitAnswersConnectionRateExceeded(t *testing.T) {
	be := newEchoBackend(t, false)
	p := startProxy(t, Options{Backend: be.backend(), Protocol: "mqtt",
		Limiter: newLimiter(t, limits.Config{ClientIDRate: 0.001, ClientIDBurst: 1})})

	// The first CONNECT is admitted and reaches the backend whole: the
	// echo backend sends it back.
	c := p.dial(t, "localhost")
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write(connect5)
	got := make([]byte, len(connect5))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, connect5) {
		t.Fatalf("backend got % x (%v), want the CONNECT replayed", got, err)
	}

	// The same client id again at once: refused in MQTT's own words.
	for _, tt := range []struct {
		name    string
		connect []byte
		want    []byte
	}{
		{"mqtt5 connection rate exceeded", connect5, []byte{0x20, 0x03, 0x00, 0x9F, 0x00}},
		{"mqtt3.1.1 server unavailable", connect311, []byte{0x20, 0x02, 0x00, 0x03}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := p.dial(t, "localhost")
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Write(tt.connect)
			got, _ := io.ReadAll(c)
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("CONNACK = % x, want % x", got, tt.want)
			}
		})
	}
}

func TestBreakerAnswersUnavailableAtOnce(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	rec := newRecorder()
	p := startProxy(t, Options{Backend: Backend{Network: "tcp", Address: dead}, Protocol: "mqtt", Reporter: rec,
		Limiter: newLimiter(t, limits.Config{BreakerFailures: 2, BreakerCooldown: time.Minute})})
	dials := rec.dials

	for i := 0; i < 4; i++ {
		c := p.dial(t, "localhost")
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(connect5)
		got, _ := io.ReadAll(c)
		if want := []byte{0x20, 0x03, 0x00, 0x88, 0x00}; !bytes.Equal(got, want) {
			t.Fatalf("attempt %d: CONNACK = % x, want server unavailable % x", i, got, want)
		}
	}
	// Once open, the breaker answers without dialling the dead backend.
	if n := len(dials); n != 2 {
		t.Fatalf("backend dialled %d times, want 2 (then the breaker opens)", n)
	}
}

// A broker that accepts and then drops connections without a word is a
// failed backend: the client gets the CONNACK for "server unavailable" in
// its own protocol version instead of a bare close, the drop is reported,
// and once it has failed that many clients the breaker opens as it would
// for failed dials.
func TestBackendDroppingConnectionsAnswersUnavailable(t *testing.T) {
	for _, readAhead := range []bool{false, true} {
		t.Run(fmt.Sprintf("connect read ahead=%v", readAhead), func(t *testing.T) {
			ln := testnet.Listen(t)
			testnet.Serve(t, ln, func(c net.Conn) {
				c.Read(make([]byte, 64))
				c.(*net.TCPConn).SetLinger(0) // a reset, as an overloaded broker does
				c.Close()
			})
			rec := newRecorder()
			cfg := limits.Config{BreakerFailures: 3, BreakerCooldown: time.Minute}
			if readAhead {
				cfg.ClientIDRate, cfg.ClientIDBurst = 1000, 1000
			}
			p := startProxy(t, Options{Backend: Backend{Network: "tcp", Address: ln.Addr().String()}, Protocol: "mqtt", Reporter: rec,
				Limiter: newLimiter(t, cfg)})
			for i, tt := range []struct {
				connect, want []byte
			}{
				{connect5, []byte{0x20, 0x03, 0x00, 0x88, 0x00}},
				{connect311, []byte{0x20, 0x02, 0x00, 0x03}},
				{connect5, []byte{0x20, 0x03, 0x00, 0x88, 0x00}},
				{connect311, []byte{0x20, 0x02, 0x00, 0x03}}, // the breaker is open: answered without a dial
			} {
				c := p.dialFrom(t, fmt.Sprintf("127.0.6.%d", i+1), "localhost") // a client each
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.Write(tt.connect)
				got, _ := io.ReadAll(c)
				if !bytes.Equal(got, tt.want) {
					t.Fatalf("attempt %d: got % x, want CONNACK % x", i, got, tt.want)
				}
			}
			if n := len(rec.dials); n != 3 {
				t.Errorf("backend dialled %d times, want 3 (then the breaker opens)", n)
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if len(rec.resets) != 3 || !strings.Contains(rec.resets[0].Err.Error(), "without answering") {
				t.Errorf("resets reported: %+v, want 3", rec.resets)
			}
			if len(rec.refusals) != 1 || rec.refusals[0].Limit != "backend_down" {
				t.Errorf("refusals %+v, want one backend_down", rec.refusals)
			}
		})
	}
}

// A client that leaves before its broker answers, or a broker that
// answers, is no backend failure: many such connections never open the
// breaker.
func TestClientLeavingEarlyDoesNotTripBreaker(t *testing.T) {
	ln := testnet.Listen(t)
	testnet.Serve(t, ln, func(c net.Conn) {
		io.Copy(io.Discard, c) // until the client's end reaches it, then close without a word
		c.Close()
	})
	rec := newRecorder()
	p := startProxy(t, Options{Backend: Backend{Network: "tcp", Address: ln.Addr().String()}, Protocol: "mqtt", Reporter: rec,
		Limiter: newLimiter(t, limits.Config{BreakerFailures: 2, BreakerCooldown: time.Minute})})
	for i := range 6 {
		c := p.dial(t, "localhost")
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(connect5)
		c.CloseWrite()
		if got, _ := io.ReadAll(c); len(got) != 0 {
			t.Fatalf("attempt %d: got % x, want a plain end", i, got)
		}
		c.Close()
	}
	if n := len(rec.dials); n != 6 {
		t.Errorf("backend dialled %d times, want 6: the breaker must stay closed", n)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.resets) != 0 || len(rec.refusals) != 0 {
		t.Errorf("resets %+v, refusals %+v: a client leaving is not the backend failing", rec.resets, rec.refusals)
	}
}

// A broker also closes without a word a connection whose CONNECT it
// rejects. One client sending such CONNECTs again and again is answered
// each time, and reported, but counts against the broker once: it cannot
// open the breaker for everyone else.
func TestOneClientCannotOpenBreaker(t *testing.T) {
	ln := testnet.Listen(t)
	testnet.Serve(t, ln, func(c net.Conn) {
		c.Read(make([]byte, 64))
		c.Close()
	})
	rec := newRecorder()
	p := startProxy(t, Options{Backend: Backend{Network: "tcp", Address: ln.Addr().String()}, Protocol: "mqtt", Reporter: rec,
		Limiter: newLimiter(t, limits.Config{BreakerFailures: 2, BreakerCooldown: time.Minute})})
	for i := range 8 {
		c := p.dialFrom(t, "127.0.7.1", "localhost")
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(connect5)
		if got, _ := io.ReadAll(c); !bytes.Equal(got, []byte{0x20, 0x03, 0x00, 0x88, 0x00}) {
			t.Fatalf("attempt %d: got % x, want CONNACK 0x88", i, got)
		}
	}
	if n := len(rec.dials); n != 8 {
		t.Errorf("backend dialled %d times, want 8: one client must not open the breaker", n)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.resets) != 8 || len(rec.refusals) != 0 {
		t.Errorf("%d resets reported (want 8), refusals %+v (want none)", len(rec.resets), rec.refusals)
	}
}
