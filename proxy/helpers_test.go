package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/pki/pkitest"
	"github.com/tlsfront/tlsfront/internal/testnet"
	"github.com/tlsfront/tlsfront/report"
)

// echoBackend is a TCP server that echoes, optionally after reading a
// PROXY header, which it reports on headers.
type echoBackend struct {
	ln      net.Listener
	headers chan *proxyproto.Header
}

func newEchoBackend(t *testing.T, expectProxy bool) *echoBackend {
	t.Helper()
	b := &echoBackend{ln: testnet.Listen(t), headers: make(chan *proxyproto.Header, 16)}
	testnet.Serve(t, b.ln, func(c net.Conn) {
		var r io.Reader = c
		if expectProxy {
			br := bufio.NewReader(c)
			h, err := proxyproto.Read(br)
			if err != nil {
				return
			}
			b.headers <- h
			r = br
		}
		io.Copy(c, r)
	})
	return b
}

func (b *echoBackend) backend() Backend {
	return Backend{Network: "tcp", Address: b.ln.Addr().String()}
}

type testProxy struct {
	*Server
	addr   string
	ca     *pkitest.CA
	events chan *HandshakeEvent
	served chan error
}

// startProxy serves o on 127.0.0.1:0 with a fresh CA and a localhost leaf,
// unless o.TLS is set.
func startProxy(t testing.TB, o Options) *testProxy {
	t.Helper()
	ca := pkitest.NewCA(t)
	if o.TLS == nil {
		leaf := ca.Leaf(pki.Options{})
		cert := &tls.Certificate{Certificate: [][]byte{leaf.DER, ca.Intermediate.DER}, PrivateKey: leaf.Key}
		o.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
	}
	if o.Name == "" {
		o.Name = "test"
	}
	if o.Kind == "" {
		o.Kind = KindTCP
	}
	events := make(chan *HandshakeEvent, 64)
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	s.observe = func(ev *HandshakeEvent) {
		select {
		case events <- ev:
		default:
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &testProxy{Server: s, addr: ln.Addr().String(), ca: ca, events: events, served: make(chan error, 1)}
	go func() { p.served <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-p.served
	})
	return p
}

func (p *testProxy) dial(t *testing.T, serverName string) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", p.addr, p.ca.ClientConfig(serverName))
	if err != nil {
		t.Fatalf("dial %s: %v", p.addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialFrom is dial from the loopback address src, another client as far
// as per-client limits and blame go.
func (p *testProxy) dialFrom(t *testing.T, src, serverName string) *tls.Conn {
	t.Helper()
	d := &tls.Dialer{NetDialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}, Config: p.ca.ClientConfig(serverName)}
	c, err := d.Dial("tcp", p.addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", p.addr, src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*tls.Conn)
}

// roundTrip writes msg and reads back exactly as many bytes.
func roundTrip(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(buf)
}

// waitEvent returns the next handshake event or fails after a deadline.
func (p *testProxy) waitEvent(t *testing.T) *HandshakeEvent {
	t.Helper()
	select {
	case ev := <-p.events:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no handshake event within 10s")
		return nil
	}
}

// recorder is a report.Sink that keeps what tests look at.
type recorder struct {
	report.Nop
	mu         sync.Mutex
	handshakes []report.Handshake
	closed     []report.ConnClosed
	refusals   []report.Refusal
	resets     []report.BackendReset
	dials      chan report.BackendDial
}

func newRecorder() *recorder { return &recorder{dials: make(chan report.BackendDial, 64)} }

func (r *recorder) Handshake(h *report.Handshake) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.handshakes = append(r.handshakes, *h)
}

func (r *recorder) ConnClosed(c report.ConnClosed) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = append(r.closed, c)
}

func (r *recorder) Refused(rf report.Refusal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refusals = append(r.refusals, rf)
}

func (r *recorder) BackendReset(rs report.BackendReset) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resets = append(r.resets, rs)
}

func (r *recorder) BackendDial(d report.BackendDial) {
	select {
	case r.dials <- d:
	default:
	}
}

// snapshot returns copies of what was recorded so far.
func (r *recorder) snapshot() (hs []report.Handshake, closed []report.ConnClosed) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append(hs, r.handshakes...), append(closed, r.closed...)
}

// eventually polls cond until it holds or fails the test after d.
func eventually(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with a deadline
	}
}
