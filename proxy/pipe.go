package proxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Copy buffers are pooled and held only while data flows, so that an idle
// connection costs no buffer of ours. Bulk transfers read in large chunks;
// a connection that goes quiet drops back to waiting without one.
const (
	bigBuf   = 32 << 10
	smallBuf = 2 << 10
	// maxPlaintextRecord is the most a single TLS record can carry; a read
	// that returns less means the sender is not saturating the link.
	maxPlaintextRecord = 16 << 10
	// closeGrace bounds how long one direction may stay open after the
	// other has finished, so a peer that never closes cannot hang us.
	closeGrace = 30 * time.Second
)

var (
	bigPool   = sync.Pool{New: func() any { b := make([]byte, bigBuf); return &b }}
	smallPool = sync.Pool{New: func() any { b := make([]byte, smallBuf); return &b }}
)

// pipe copies both ways between the client (TLS) and the backend (plain)
// until both directions end, honouring half-close. It returns the bytes
// carried each way.
func (s *Server) pipe(client halfCloser, backend net.Conn) (fromClient, toClient int64) {
	var lastActive atomic.Int64
	lastActive.Store(time.Now().UnixNano())
	idle := s.opts.IdleTimeout

	done := make(chan struct{})
	go func() {
		defer close(done)
		fromClient, _ = copyFromTLS(backend, client, idle, &lastActive)
		closeWrite(backend)
	}()
	toClient, _ = copyFromPlain(client, backend, idle, &lastActive)
	client.CloseWrite()

	// One side finished: give the other a bounded time to finish too.
	t := time.NewTimer(closeGrace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		client.Close()
		backend.Close()
		<-done
	}
	return fromClient, toClient
}

type halfCloser interface {
	net.Conn
	CloseWrite() error
}

func closeWrite(c net.Conn) {
	if hc, ok := c.(interface{ CloseWrite() error }); ok {
		hc.CloseWrite()
		return
	}
	c.Close()
}

// stillActive reports whether a read that timed out should go on waiting
// because the other direction carried data within the idle timeout.
func stillActive(err error, idle time.Duration, lastActive *atomic.Int64) bool {
	return idle > 0 && isTimeout(err) && time.Since(time.Unix(0, lastActive.Load())) < idle
}

// copyFromTLS copies from a TLS connection. crypto/tls needs a buffer to
// read into, so it blocks on a small one and switches to a large one while
// full records keep coming.
func copyFromTLS(dst, src net.Conn, idle time.Duration, lastActive *atomic.Int64) (written int64, err error) {
	small := smallPool.Get().(*[]byte)
	defer smallPool.Put(small)
	var big *[]byte
	defer func() {
		if big != nil {
			bigPool.Put(big)
		}
	}()
	for {
		buf := *small
		if big != nil {
			buf = *big
		}
		if idle > 0 {
			src.SetReadDeadline(time.Now().Add(idle))
		}
		n, rerr := src.Read(buf)
		if n > 0 {
			lastActive.Store(time.Now().UnixNano())
			w, werr := dst.Write(buf[:n])
			written += int64(w)
			if werr != nil {
				return written, werr
			}
		}
		if rerr != nil {
			if stillActive(rerr, idle, lastActive) {
				continue
			}
			if errors.Is(rerr, io.EOF) {
				return written, nil
			}
			return written, rerr
		}
		switch {
		case big == nil && n == len(buf):
			big = bigPool.Get().(*[]byte)
		case big != nil && n < maxPlaintextRecord:
			bigPool.Put(big)
			big = nil
		}
	}
}
