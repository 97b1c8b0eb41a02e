package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/testnet"
)

func TestTCPForwardServesCompleteChain(t *testing.T) {
	be := newEchoBackend(t, false)
	p := startProxy(t, Options{Backend: be.backend()})

	// The client trusts only the root: it can verify only if the proxy
	// serves the intermediate too.
	c := p.dial(t, "localhost")
	if got := roundTrip(t, c, "hello broker"); got != "hello broker" {
		t.Fatalf("echo = %q", got)
	}
	st := c.ConnectionState()
	if n := len(st.PeerCertificates); n != 2 {
		t.Fatalf("served %d certificates, want leaf + intermediate", n)
	}
	if st.Version < tls.VersionTLS12 {
		t.Fatalf("negotiated %x", st.Version)
	}
	ev := p.waitEvent(t)
	if ev.Err != nil || ev.Listener != "test" || !ev.Client.Addr().IsLoopback() {
		t.Fatalf("event = %+v", ev)
	}
}

func TestTLSPolicy(t *testing.T) {
	be := newEchoBackend(t, false)
	p := startProxy(t, Options{Backend: be.backend()})
	tests := []struct {
		name string
		cfg  func(*tls.Config)
		ok   bool
	}{
		{"tls13", func(c *tls.Config) {}, true},
		{"tls12 ecdhe gcm", func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
		}, true},
		{"tls11 refused", func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11 }, false},
		{"tls12 cbc refused", func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := p.ca.ClientConfig("localhost")
			tt.cfg(cfg)
			c, err := tls.Dial("tcp", p.addr, cfg)
			if err == nil {
				c.Close()
			}
			if (err == nil) != tt.ok {
				t.Fatalf("dial err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestHalfCloseIsHonoured(t *testing.T) {
	// The backend answers only after the client has finished sending, as
	// a request/response protocol over a half-closed socket does.
	ln := testnet.Listen(t)
	testnet.Serve(t, ln, func(c net.Conn) {
		data, _ := io.ReadAll(c)
		c.Write([]byte("got " + string(data)))
	})
	p := startProxy(t, Options{Backend: Backend{Network: "tcp", Address: ln.Addr().String()}})
	c := p.dial(t, "localhost")
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "request")
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(reply) != "got request" {
		t.Fatalf("reply = %q", reply)
	}
}

func TestSNIRouting(t *testing.T) {
	named := func(name string) Backend {
		ln := testnet.Listen(t)
		testnet.Serve(t, ln, func(c net.Conn) { io.WriteString(c, name) })
		return Backend{Network: "tcp", Address: ln.Addr().String()}
	}
	p := startProxy(t, Options{
		Backend: named("default"),
		Routes:  map[string]Backend{"a.example.test": named("a"), "b.example.test": named("b")},
	})
	// One certificate covering all names, as a SAN list.
	leaf := p.ca.Leaf(pki.Options{DNSNames: []string{"a.example.test", "b.example.test", "localhost"}})
	p.tls.Certificates = []tls.Certificate{{Certificate: [][]byte{leaf.DER, p.ca.Intermediate.DER}, PrivateKey: leaf.Key}}

	for _, tt := range []struct{ sni, want string }{
		{"a.example.test", "a"}, {"B.example.test", "b"}, {"localhost", "default"},
	} {
		t.Run(tt.sni, func(t *testing.T) {
			c := p.dial(t, tt.sni)
			c.SetDeadline(time.Now().Add(5 * time.Second))
			got, _ := io.ReadAll(c)
			if string(got) != tt.want {
				t.Fatalf("backend = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestProxyProtocolToBackend(t *testing.T) {
	for _, v := range []int{1, 2} {
		t.Run(map[int]string{1: "v1", 2: "v2"}[v], func(t *testing.T) {
			be := newEchoBackend(t, true)
			b := be.backend()
			b.ProxyProtocol = v
			p := startProxy(t, Options{Backend: b})
			c := p.dial(t, "localhost")
			roundTrip(t, c, "x")
			select {
			case h := <-be.headers:
				src := h.SourceAddr.(*net.TCPAddr)
				if src.String() != c.LocalAddr().String() {
					t.Fatalf("backend saw client %s, want %s", src, c.LocalAddr())
				}
				if h.Version != byte(v) {
					t.Fatalf("version %d", h.Version)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("backend got no PROXY header")
			}
		})
	}
}

// PROXY headers are believed only from the trusted load balancers: any
// other peer that sends one is refused and counted, since it would choose
// the address tlsfront limits and the backend sees. Without a header,
// everyone (the self-probe, a health check) is served as itself.
func TestAcceptProxyHeaderOnlyFromTrustedPeers(t *testing.T) {
	be := newEchoBackend(t, false)
	rec := newRecorder()
	p := startProxy(t, Options{Backend: be.backend(), AcceptProxyHeader: true, Reporter: rec,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	dialFrom := func(src string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		raw, err := d.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { raw.Close() })
		return raw
	}
	const header = "PROXY TCP4 203.0.113.7 127.0.0.1 40000 8883\r\n"
	for _, tc := range []struct {
		name, src string
		header    bool
		want      string // the client the front sees; "" for refused
	}{
		{"trusted balancer with a header", "127.0.0.1", true, "203.0.113.7"},
		{"trusted peer without one (the self-probe)", "127.0.0.1", false, "127.0.0.1"},
		{"any other peer without one", "127.0.0.2", false, "127.0.0.2"},
		{"any other peer with one", "127.0.0.3", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := dialFrom(tc.src)
			if tc.header {
				io.WriteString(raw, header)
			}
			c := tls.Client(raw, p.ca.ClientConfig("localhost"))
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if tc.want == "" {
				if err := c.Handshake(); err == nil {
					t.Fatal("a PROXY header from an untrusted peer was accepted")
				}
				eventually(t, "the refusal counted", 5*time.Second, func() bool {
					rec.mu.Lock()
					defer rec.mu.Unlock()
					for _, r := range rec.refusals {
						if r.Limit == LimitUntrustedProxyHeader && r.Client.String() == tc.src {
							return true
						}
					}
					return false
				})
				return
			}
			roundTrip(t, c, "hello")
			if got := p.waitEvent(t).Client.Addr().String(); got != tc.want {
				t.Fatalf("client = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestPlainTextClientDoesNotHurtOthers(t *testing.T) {
	be := newEchoBackend(t, false)
	p := startProxy(t, Options{Backend: be.backend()})
	good := p.dial(t, "localhost")
	roundTrip(t, good, "before")
	<-p.events

	for _, payload := range [][]byte{
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		{0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00},
	} {
		raw, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		raw.Write(payload)
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		// The proxy must close it (after at most an HTTP 400): reading to
		// EOF must end well before the deadline.
		if _, err := io.ReadAll(raw); err != nil {
			t.Fatalf("plain-text client was not closed: %v", err)
		}
		raw.Close()
		if ev := p.waitEvent(t); ev.Err == nil {
			t.Fatal("plain-text handshake reported as success")
		}
	}
	if got := roundTrip(t, good, "after"); got != "after" {
		t.Fatalf("established connection hurt: %q", got)
	}
}

func TestShutdownDrainsInFlightTransfer(t *testing.T) {
	be := newEchoBackend(t, false)
	p := startProxy(t, Options{Backend: be.backend()})
	c := p.dial(t, "localhost")
	// The proxy has dialled the backend once an echo comes back; shutting
	// down before that refuses the connection instead of draining it.
	roundTrip(t, c, "ready")

	payload := make([]byte, 8<<20)
	rand.Read(payload)
	want := sha256.Sum256(payload)
	got := make(chan [32]byte, 1)
	go func() {
		h := sha256.New()
		io.Copy(h, io.LimitReader(c, int64(len(payload))))
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		got <- sum
	}()
	// Start sending, then shut down in the middle of the transfer.
	if _, err := c.Write(payload[:1<<20]); err != nil {
		t.Fatal(err)
	}
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		shut <- p.Shutdown(ctx)
	}()
	// New connections are refused once shutdown has begun.
	deadline := time.Now().Add(5 * time.Second)
	for {
		nc, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err != nil {
			break
		}
		nc.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting after Shutdown")
		}
	}
	if _, err := c.Write(payload[1<<20:]); err != nil {
		t.Fatalf("in-flight write failed during drain: %v", err)
	}
	select {
	case sum := <-got:
		if !bytes.Equal(sum[:], want[:]) {
			t.Fatal("transfer corrupted during drain")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("transfer did not finish")
	}
	c.CloseWrite()
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown = %v, want a clean drain", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Shutdown did not return after the connection ended")
	}
}

func TestShutdownClosesIdleAfterGrace(t *testing.T) {
	be := newEchoBackend(t, false)
	p := startProxy(t, Options{Backend: be.backend()})
	c := p.dial(t, "localhost")
	roundTrip(t, c, "idle")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := p.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown returned nil with a connection still open past the grace")
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("connection not closed after grace: %v", err)
	}
}

func TestMQTTConnackWhenBackendDown(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	p := startProxy(t, Options{Backend: Backend{Network: "tcp", Address: dead}, Protocol: "mqtt"})
	tests := []struct {
		name    string
		connect []byte
		want    []byte
	}{
		{"3.1.1", []byte{0x10, 0x0e, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 2, 'i', 'd'}, []byte{0x20, 0x02, 0x00, 0x03}},
		{"5", []byte{0x10, 0x0f, 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 60, 0, 0, 2, 'i', 'd'}, []byte{0x20, 0x03, 0x00, 0x88, 0x00}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := p.dial(t, "localhost")
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.Write(tt.connect)
			got, _ := io.ReadAll(c)
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("CONNACK = % x, want % x", got, tt.want)
			}
		})
	}
}

func TestUnixSocketBackend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "broker.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	testnet.Serve(t, ln, func(c net.Conn) { io.Copy(c, c) })
	be, err := ParseBackend("unix:" + path)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, Options{Backend: be})
	if got := roundTrip(t, p.dial(t, "localhost"), "over a unix socket"); got != "over a unix socket" {
		t.Fatalf("echo = %q", got)
	}
}
