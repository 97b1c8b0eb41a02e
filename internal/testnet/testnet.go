package testnet

import (
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tlsfront/tlsfront/internal/freeport"
)

// Listen returns a TCP listener on a free port of 127.0.0.1. It is closed
// when the test ends; closing it earlier is fine.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on loopback: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// Serve accepts connections on ln until the test ends and calls handle
// for each on its own goroutine. The connection is closed when handle
// returns, so handle need not close it.
//
// When the test ends, Serve closes ln and every connection still open,
// then waits for the accept loop and every handle to return. A handle
// must therefore return once its connection is closed; one blocked on
// anything else (a full channel, say) stalls the test's cleanup.
// FreePort reserves a loopback port and frees it, for a program the test
// starts that cannot listen on port 0 and say which port it got (see
// freeport). Take several at once with FreePorts.
func FreePort(t testing.TB) int {
	t.Helper()
	return FreePorts(t, 1)[0]
}

// FreePorts is FreePort for n distinct ports (freeport.Take).
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports, err := freeport.Take(n)
	if err != nil {
		t.Fatalf("pick free loopback ports: %v", err)
	}
	return ports
}

func Serve(t testing.TB, ln net.Listener, handle func(net.Conn)) {
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		conns  = map[net.Conn]struct{}{}
		closed bool // set at cleanup; guards conns against a late Accept
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				// Accepted just as cleanup closed the others.
				mu.Unlock()
				c.Close()
				return
			}
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		closed = true
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// Echo starts a TCP server on loopback that writes back whatever each
// connection sends, and returns its address. It stops when the test
// ends, as Serve does.
func Echo(t testing.TB) string {
	t.Helper()
	ln := Listen(t)
	Serve(t, ln, func(c net.Conn) { io.Copy(c, c) })
	return ln.Addr().String()
}

// Buffer is a bytes.Buffer safe for concurrent use: a server, a process
// or a logger may write to it while the test reads it. The zero value is
// empty and ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p to the buffer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// Bytes returns a copy of what has been written so far.
func (b *Buffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.b.Bytes())
}

// String returns what has been written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Missing skips the test for a tool that is not installed, or fails it in
// CI (env CI set), where .ci/run must have installed it; install says how.
func Missing(t testing.TB, what, install string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing; .ci/run must install it (%s)", what, install)
	}
	t.Skipf("%s is missing (%s)", what, install)
}

// Process is a command started for a test by Run.
type Process struct {
	// Out is what it wrote to stdout and stderr.
	Out *Buffer
	// Exited is closed once it has exited.
	Exited <-chan struct{}
}

// Run starts cmd with its output kept in a Buffer. When the test ends it
// is killed and waited for, and its output is logged if the test failed.
func Run(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	out := &Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	exited := make(chan struct{})
	go func() { defer close(exited); cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(cmd.Path), out.String())
		}
	})
	return &Process{Out: out, Exited: exited}
}
