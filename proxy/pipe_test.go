package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/pki/pkitest"
	"github.com/tlsfront/tlsfront/internal/testnet"
	"github.com/tlsfront/tlsfront/report"
)

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 10s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// byteCounts is what ConnClosed reported for one connection.
type byteCounts struct{ in, out int64 }

// pushBackend echoes and hands each accepted connection to the test, which
// may also write to it.
func pushBackend(t *testing.T) (Backend, chan net.Conn) {
	ln := testnet.Listen(t)
	conns := make(chan net.Conn, 4)
	testnet.Serve(t, ln, func(c net.Conn) {
		conns <- c
		io.Copy(c, c)
	})
	return Backend{Network: "tcp", Address: ln.Addr().String()}, conns
}

func closedHook(o *Options) chan byteCounts {
	ch := make(chan byteCounts, 4)
	o.Reporter = closedTap{ch: ch}
	return ch
}

func waitClosed(t *testing.T, ch chan byteCounts) byteCounts {
	t.Helper()
	select {
	case bc := <-ch:
		return bc
	case <-time.After(10 * time.Second):
		t.Fatal("connection not reported closed within 10s")
		return byteCounts{}
	}
}

func readExactly(t *testing.T, c net.Conn, want string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, len(want))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read %q: %v", want, err)
	}
	if string(buf) != want {
		t.Fatalf("read %q, want %q", buf, want)
	}
}

func TestParkedConnectionWakesOnEitherSide(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking needs epoll")
	}
	be, conns := pushBackend(t)
	o := Options{Backend: be, ParkAfter: 10 * time.Millisecond}
	closed := closedHook(&o)
	p := startProxy(t, o)
	c := p.dial(t, "localhost")
	bc := <-conns
	parked := func() bool { return p.pipes.parked() == 2 }

	in, out := 0, 0
	for i := range 5 {
		waitFor(t, "both directions parked", parked)
		// The client speaks first, then the backend.
		msg := fmt.Sprintf("client %d", i)
		if got := roundTrip(t, c, msg); got != msg {
			t.Fatalf("echo = %q", got)
		}
		in, out = in+len(msg), out+len(msg)
		waitFor(t, "both directions parked", parked)
		push := fmt.Sprintf("backend %d", i)
		if _, err := io.WriteString(bc, push); err != nil {
			t.Fatal(err)
		}
		readExactly(t, c, push)
		out += len(push)
	}
	c.Close()
	if got := waitClosed(t, closed); got != (byteCounts{int64(in), int64(out)}) {
		t.Fatalf("bytes reported = %+v, want in %d out %d", got, in, out)
	}
	waitFor(t, "parked directions released", func() bool { return p.pipes.parked() == 0 })
}

func TestParkedHalfClose(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking needs epoll")
	}
	// The backend answers only after the client has finished sending, and
	// only when the test says so: the answering direction parks first.
	release := make(chan struct{})
	ln := testnet.Listen(t)
	testnet.Serve(t, ln, func(c net.Conn) {
		data, _ := io.ReadAll(c)
		<-release
		c.Write([]byte("got " + string(data)))
	})
	p := startProxy(t, Options{Backend: Backend{Network: "tcp", Address: ln.Addr().String()}, ParkAfter: 10 * time.Millisecond})
	c := p.dial(t, "localhost")
	io.WriteString(c, "request")
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the answering direction parked", func() bool { return p.pipes.parked() == 1 })
	close(release)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(reply) != "got request" {
		t.Fatalf("reply = %q", reply)
	}
}

func TestParkedIdleTimeout(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking needs epoll")
	}
	be, conns := pushBackend(t)
	// Long enough that a loaded machine's stalls between pushes stay
	// well under it.
	const idle = time.Second
	o := Options{Backend: be, ParkAfter: 10 * time.Millisecond, IdleTimeout: idle}
	closed := closedHook(&o)
	p := startProxy(t, o)
	c := p.dial(t, "localhost")
	bc := <-conns
	roundTrip(t, c, "hello")

	// Data one way keeps the connection open while the other way is
	// parked: the backend pushes for one and a half idle timeouts.
	waitFor(t, "both directions parked", func() bool { return p.pipes.parked() == 2 })
	tick := time.NewTicker(idle / 10)
	defer tick.Stop()
	for i := range 15 {
		<-tick.C
		push := fmt.Sprintf("%02d", i)
		io.WriteString(bc, push)
		readExactly(t, c, push)
	}
	tick.Stop()

	// Then quiet both ways: closed by the idle timeout.
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after idle = %d, %v; want EOF", n, err)
	}
	if took := time.Since(start); took < idle/2 {
		t.Fatalf("closed after %s, before the idle timeout %s", took, idle)
	}
	if got := waitClosed(t, closed); got != (byteCounts{5, 5 + 30}) {
		t.Fatalf("bytes reported = %+v", got)
	}
}

func TestShutdownClosesParked(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking needs epoll")
	}
	be, _ := pushBackend(t)
	o := Options{Backend: be, ParkAfter: 10 * time.Millisecond}
	closed := closedHook(&o)
	p := startProxy(t, o)
	c := p.dial(t, "localhost")
	roundTrip(t, c, "idle")
	waitFor(t, "both directions parked", func() bool { return p.pipes.parked() == 2 })

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- p.Shutdown(ctx) }()
	select {
	case err := <-shut:
		if err == nil {
			t.Fatal("Shutdown returned nil with a parked connection open past the grace")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return: the parked connection was not found")
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("parked connection not closed: %v", err)
	}
	if got := waitClosed(t, closed); got != (byteCounts{4, 4}) {
		t.Fatalf("bytes reported = %+v", got)
	}
}

// batchConn holds writes until flush, so that many TLS records reach the
// proxy in one segment.
type batchConn struct {
	net.Conn
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *batchConn) flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, err := b.Conn.Write(b.buf.Bytes())
	b.buf.Reset()
	return err
}

func TestParkedWakesOnManyRecordsAtOnce(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking needs epoll")
	}
	be := newEchoBackend(t, false)
	p := startProxy(t, Options{Backend: be.backend(), ParkAfter: 10 * time.Millisecond})
	raw, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	bc := &batchConn{Conn: raw}
	c := tls.Client(bc, p.ca.ClientConfig("localhost"))
	c.SetDeadline(time.Now().Add(5 * time.Second))
	hs := make(chan error, 1)
	go func() { hs <- c.Handshake() }()
	// The handshake's flights go out as they are written.
	for done := false; !done; {
		select {
		case err := <-hs:
			if err != nil {
				t.Fatal(err)
			}
			done = true
		case <-time.After(time.Millisecond):
		}
		if err := bc.flush(); err != nil {
			t.Fatal(err)
		}
	}
	bc.flush()
	for round := range 3 {
		waitFor(t, "the client's direction parked", func() bool { return p.pipes.parked() == 2 })
		var want bytes.Buffer
		for i := range 50 {
			msg := fmt.Sprintf("r%d m%02d;", round, i)
			want.WriteString(msg)
			io.WriteString(c, msg) // one record each
		}
		if err := bc.flush(); err != nil {
			t.Fatal(err)
		}
		readExactly(t, c, want.String())
	}
}

// writeSizes records the size of every write to the backend.
type writeSizes struct {
	net.Conn
	mu    sync.Mutex
	sizes []int
}

func (w *writeSizes) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.sizes = append(w.sizes, len(p))
	w.mu.Unlock()
	return w.Conn.Write(p)
}

func TestFullRecordsReachBackendWhole(t *testing.T) {
	// Records are never split; where the socket already holds the next
	// one, two may go in one write.
	ca := pkitest.NewCA(t)
	leaf := ca.Leaf(pki.Options{})
	serverConfig := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.DER, ca.Intermediate.DER}, PrivateKey: leaf.Key}}}
	clientConfig := ca.ClientConfig("localhost")
	// Whole records from the first byte, not Go's small ones for the
	// first 128 KiB.
	clientConfig.DynamicRecordSizingDisabled = true
	ln := testnet.Listen(t)
	accepted := make(chan *tls.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		tc := tls.Server(c, serverConfig)
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		tc.Handshake()
		tc.SetDeadline(time.Time{})
		accepted <- tc
	}()
	client, err := tls.Dial("tcp", ln.Addr().String(), clientConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	backendSide, backendFar := tcpPair(t)
	rec := &writeSizes{Conn: backendSide}
	ps := newPipes(pipeOptions{})
	defer ps.closeAll()
	finished := make(chan byteCounts, 1)
	ps.start(server, rec, 0, func(in, out int64) {
		server.Close()
		rec.Close()
		finished <- byteCounts{in, out}
	})

	const total = 64 << 14 // 64 full records
	go func() {
		chunk := bytes.Repeat([]byte{'x'}, 32<<10)
		for sent := 0; sent < total; sent += len(chunk) {
			if _, err := client.Write(chunk); err != nil {
				return
			}
		}
		client.CloseWrite()
	}()
	backendFar.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := io.Copy(io.Discard, backendFar); err != nil || n != total {
		t.Fatalf("backend got %d bytes, %v; want %d", n, err, total)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	t.Logf("%d writes for %d records", len(rec.sizes), total>>14)
	for i, n := range rec.sizes {
		if n == 0 || n%(16<<10) != 0 {
			t.Fatalf("write %d to the backend was %d bytes, want whole 16 KiB records (all: %v)", i, n, rec.sizes)
		}
	}
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln := testnet.Listen(t)
	far := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(far)
			return
		}
		far <- c
	}()
	near, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { near.Close() })
	f, ok := <-far
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { f.Close() })
	return near, f
}

func TestIdleTimeoutParkedOrNot(t *testing.T) {
	for _, tt := range []struct {
		name      string
		parkAfter time.Duration
	}{
		{"parking off", -1},
		{"parked", 10 * time.Millisecond},
		{"closed before parking", time.Hour},
	} {
		t.Run(tt.name, func(t *testing.T) {
			be := newEchoBackend(t, false)
			o := Options{Backend: be.backend(), ParkAfter: tt.parkAfter, IdleTimeout: 200 * time.Millisecond}
			closed := closedHook(&o)
			p := startProxy(t, o)
			c := p.dial(t, "localhost")
			for _, msg := range []string{"one", "two"} {
				if got := roundTrip(t, c, msg); got != msg {
					t.Fatalf("echo = %q", got)
				}
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if n, err := c.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("read after idle = %d, %v; want EOF", n, err)
			}
			if got := waitClosed(t, closed); got != (byteCounts{6, 6}) {
				t.Fatalf("bytes reported = %+v", got)
			}
			if tt.parkAfter < 0 && p.pipes.parked() != 0 {
				t.Fatal("parked with parking off")
			}
		})
	}
}

func TestParkingThroughWrappers(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking needs epoll")
	}
	tests := []struct {
		name    string
		opts    func(t *testing.T) Options
		connect func(t *testing.T, p *testProxy) net.Conn
	}{
		{
			name: "PROXY header from a load balancer",
			opts: func(t *testing.T) Options {
				return Options{Backend: newEchoBackend(t, false).backend(), AcceptProxyHeader: true, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
			},
			connect: func(t *testing.T, p *testProxy) net.Conn {
				raw, err := net.Dial("tcp", p.addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { raw.Close() })
				io.WriteString(raw, "PROXY TCP4 203.0.113.7 127.0.0.1 40000 8883\r\n")
				return tls.Client(raw, p.ca.ClientConfig("localhost"))
			},
		},
		{
			name: "unix socket backend",
			opts: func(t *testing.T) Options {
				ln, err := net.Listen("unix", t.TempDir()+"/broker.sock")
				if err != nil {
					t.Fatal(err)
				}
				testnet.Serve(t, ln, func(c net.Conn) { io.Copy(c, c) })
				return Options{Backend: Backend{Network: "unix", Address: ln.Addr().String()}}
			},
			connect: func(t *testing.T, p *testProxy) net.Conn { return p.dial(t, "localhost") },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts(t)
			o.ParkAfter = 10 * time.Millisecond
			p := startProxy(t, o)
			c := tt.connect(t, p)
			for i := range 3 {
				msg := fmt.Sprintf("message %d", i)
				if got := roundTrip(t, c, msg); got != msg {
					t.Fatalf("echo = %q", got)
				}
				waitFor(t, "both directions parked", func() bool { return p.pipes.parked() == 2 })
			}
		})
	}
}

// closedTap sends the bytes of each closed connection to a channel.
type closedTap struct {
	report.Nop
	ch chan byteCounts
}

func (c closedTap) ConnClosed(e report.ConnClosed) { c.ch <- byteCounts{e.FromClient, e.ToClient} }

// start is startAnswered with no answered hook, as a raw listener has.
func (ps *pipes) start(client halfCloser, backend net.Conn, level byte, finish func(fromClient, toClient int64)) {
	ps.startAnswered(client, backend, level, false, finishFunc(finish))
}

// finishFunc is a pipeOwner that hears only the end.
type finishFunc func(fromClient, toClient int64)

func (f finishFunc) answered(error)                    {}
func (f finishFunc) finish(fromClient, toClient int64) { f(fromClient, toClient) }
