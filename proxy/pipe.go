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
	smallBuf = 512
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

// startPipe copies both ways between the client (TLS) and the backend
// (plain), honouring half-close, on two new goroutines, and returns at
// once. finish runs once, on the goroutine that ends last, with the bytes
// carried each way.
//
// The caller does not wait: its goroutine ran the TLS handshake and the
// backend dial, which grew its stack, and a goroutine parked in a read
// keeps its stack at the largest size it needed. Copying on goroutines
// started from a shallow frame keeps an idle connection's stacks small.
func startPipe(client halfCloser, backend net.Conn, idle time.Duration, finish func(fromClient, toClient int64)) {
	p := &pipeState{client: client, backend: backend, finish: finish}
	p.lastActive.Store(time.Now().UnixNano())
	p.left.Store(2)
	go func() {
		p.fromClient, _ = copyFromTLS(backend, client, idle, &p.lastActive)
		closeWrite(backend)
		p.end()
	}()
	go func() {
		p.toClient, _ = copyFromPlain(client, backend, idle, &p.lastActive)
		client.CloseWrite()
		p.end()
	}()
}

// pipeState is what the two copy goroutines of one connection share.
type pipeState struct {
	client     halfCloser
	backend    net.Conn
	finish     func(fromClient, toClient int64)
	lastActive atomic.Int64
	left       atomic.Int32 // directions still copying
	fromClient int64        // written by its goroutine before end
	toClient   int64        // likewise
	mu         sync.Mutex
	grace      *time.Timer // set by the first direction to end
	done       bool        // both directions ended
}

// end is called by each direction when it is done.
func (p *pipeState) end() {
	if p.left.Add(-1) > 0 {
		// One side finished: give the other a bounded time to finish
		// too, without a goroutine waiting for it.
		p.mu.Lock()
		if !p.done { // the other side may have ended meanwhile
			p.grace = time.AfterFunc(closeGrace, func() {
				p.client.Close()
				p.backend.Close()
			})
		}
		p.mu.Unlock()
		return
	}
	p.mu.Lock()
	p.done = true
	if p.grace != nil {
		p.grace.Stop()
	}
	p.mu.Unlock()
	p.finish(p.fromClient, p.toClient)
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
