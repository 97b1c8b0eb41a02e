package testnet

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestEcho(t *testing.T) {
	c, err := net.DialTimeout("tcp", Echo(t), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "ping")
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
		t.Fatalf("echo = %q, %v; want ping", got, err)
	}
}

func TestServeStopsAtCleanup(t *testing.T) {
	// handled is closed once the handler has returned; a handler blocked
	// reading an open connection returns only because cleanup closed it.
	handled := make(chan struct{})
	var client net.Conn
	ok := t.Run("serve", func(t *testing.T) {
		ln := Listen(t)
		accepted := make(chan struct{})
		Serve(t, ln, func(c net.Conn) {
			defer close(handled)
			close(accepted)
			io.Copy(io.Discard, c)
		})
		var err error
		client, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-accepted:
		case <-time.After(5 * time.Second):
			t.Fatal("connection not handled within 5s")
		}
	})
	if !ok {
		return
	}
	defer client.Close()
	// The subtest's cleanup has run, so the handler must be done already.
	select {
	case <-handled:
	default:
		t.Fatal("handler still running after the test's cleanup")
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after cleanup = %v, want EOF (connection closed)", err)
	}
}

func TestBufferConcurrentWrites(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				b.Write([]byte("x"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if got := b.String(); got != strings.Repeat("x", 800) {
		t.Fatalf("len = %d, want 800", len(got))
	}
	if got := b.Bytes(); len(got) != 800 {
		t.Fatalf("Bytes len = %d, want 800", len(got))
	}
}
