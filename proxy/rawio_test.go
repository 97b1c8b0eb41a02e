//go:build unix

package proxy

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// rawConn is a net.Conn whose Read and Write are rawRead and rawWrite, as
// the data path uses them.
type rawConn struct {
	*net.TCPConn
	rc syscall.RawConn
}

func (c rawConn) Read(b []byte) (int, error)  { return rawRead(c.rc, c.TCPConn, b) }
func (c rawConn) Write(b []byte) (int, error) { return rawWrite(c.rc, c.TCPConn, b) }

// tcpConns is tcpPair's two ends as *net.TCPConn.
func tcpConns(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	a, b := tcpPair(t)
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// TestRawIOBehavesAsNetConn runs the same cases through a net.TCPConn and
// through rawRead/rawWrite on one: what the data path sees (bytes, EOF,
// deadlines, resets, a close from another goroutine) must not change.
func TestRawIOBehavesAsNetConn(t *testing.T) {
	wrap := map[string]func(*net.TCPConn) net.Conn{
		"net.Conn": func(c *net.TCPConn) net.Conn { return c },
		"raw": func(c *net.TCPConn) net.Conn {
			rc, err := c.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			return rawConn{c, rc}
		},
	}
	for name, wrap := range wrap {
		t.Run(name, func(t *testing.T) {
			t.Run("bulk under backpressure", func(t *testing.T) {
				a, b := tcpConns(t)
				// Buffers far smaller than what is written, so the
				// write fills the socket and waits. (Smaller than the
				// loopback MSS would make TCP crawl.)
				a.SetWriteBuffer(128 << 10)
				b.SetReadBuffer(128 << 10)
				ra, rb := wrap(a), wrap(b)
				payload := make([]byte, 8<<20)
				rand.Read(payload)
				a.SetDeadline(time.Now().Add(30 * time.Second))
				b.SetDeadline(time.Now().Add(30 * time.Second))
				werr := make(chan error, 1)
				go func() {
					n, err := ra.Write(payload)
					if err == nil && n != len(payload) {
						err = io.ErrShortWrite
					}
					a.CloseWrite()
					werr <- err
				}()
				got, err := io.ReadAll(rb) // small reads: ReadAll grows from 512
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				if err := <-werr; err != nil {
					t.Fatalf("write: %v", err)
				}
				if !bytes.Equal(got, payload) {
					t.Fatalf("got %d bytes, want the %d written", len(got), len(payload))
				}
			})
			t.Run("EOF after the peer closes", func(t *testing.T) {
				a, b := tcpConns(t)
				a.Write([]byte("last"))
				a.Close()
				rb := wrap(b)
				b.SetReadDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 16)
				n, err := io.ReadFull(rb, buf[:4])
				if err != nil || string(buf[:n]) != "last" {
					t.Fatalf("read %q, %v", buf[:n], err)
				}
				if n, err := rb.Read(buf); n != 0 || err != io.EOF {
					t.Fatalf("read after close: %d, %v; want 0, io.EOF", n, err)
				}
			})
			t.Run("read deadline", func(t *testing.T) {
				_, b := tcpConns(t)
				rb := wrap(b)
				b.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
				_, err := rb.Read(make([]byte, 16))
				var ne net.Error
				if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
					t.Fatalf("read past the deadline: %v; want a timeout", err)
				}
				if op := opOf(err); op != "read" {
					t.Errorf("error's op %q, want read", op)
				}
			})
			t.Run("reset by the peer", func(t *testing.T) {
				a, b := tcpConns(t)
				a.SetLinger(0)
				a.Close()
				rb := wrap(b)
				b.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err := rb.Read(make([]byte, 16))
				if !errors.Is(err, syscall.ECONNRESET) {
					t.Fatalf("read from a reset connection: %v; want ECONNRESET", err)
				}
				if op := opOf(err); op != "read" {
					t.Errorf("error's op %q, want read", op)
				}
				// Writing to it fails, and does not kill the process
				// with SIGPIPE.
				b.SetWriteDeadline(time.Now().Add(10 * time.Second))
				var werr error
				for range 3 {
					if _, werr = rb.Write([]byte("x")); werr != nil {
						break
					}
				}
				if !errors.Is(werr, syscall.EPIPE) && !errors.Is(werr, syscall.ECONNRESET) {
					t.Fatalf("write to a reset connection: %v; want EPIPE or ECONNRESET", werr)
				}
			})
			t.Run("closed while waiting", func(t *testing.T) {
				_, b := tcpConns(t)
				rb := wrap(b)
				b.SetReadDeadline(time.Now().Add(10 * time.Second))
				done := make(chan error, 1)
				go func() {
					_, err := rb.Read(make([]byte, 16))
					done <- err
				}()
				b.Close()
				if err := <-done; !errors.Is(err, net.ErrClosed) {
					t.Fatalf("read while closed: %v; want net.ErrClosed", err)
				}
			})
			t.Run("empty buffers", func(t *testing.T) {
				a, b := tcpConns(t)
				ra, rb := wrap(a), wrap(b)
				if n, err := ra.Write(nil); n != 0 || err != nil {
					t.Errorf("empty write: %d, %v", n, err)
				}
				if n, err := rb.Read(nil); n != 0 || err != nil {
					t.Errorf("empty read: %d, %v", n, err)
				}
			})
		})
	}
}

func opOf(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Op
	}
	return ""
}
