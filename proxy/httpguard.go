package proxy

import (
	"errors"
	"io"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// HTTP guards: what keeps one client of an http listener from using up
// what the backend and the other clients need.
const (
	// defaultMaxHeaderBytes caps a request's header block, HTTP/1.1 and
	// HTTP/2 alike (net/http's default is 1 MiB, which HTTP/2 then lets
	// through to the backend).
	defaultMaxHeaderBytes = 64 << 10
	// defaultClientStreams caps one client's requests in flight (HTTP/2
	// streams over all its connections, or HTTP/1.1 connections).
	defaultClientStreams = 100
	// defaultBodyRate and bodyGrace: a request body must arrive at least
	// this fast after the first bodyGrace, or the request is cut (slow
	// POST).
	defaultBodyRate  = 1 << 10 // bytes per second
	defaultBodyGrace = 10 * time.Second
)

// clientStreams counts each client's requests in flight. A client over
// its cap gets 429 at once, before anything reaches the backend: a
// flood of HTTP/2 streams opened and reset (rapid reset) costs the
// backend nothing.
type clientStreams struct {
	max int
	mu  sync.Mutex
	n   map[netip.Addr]int
}

func (c *clientStreams) acquire(client netip.Addr) bool {
	if c.max <= 0 {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[client] >= c.max {
		return false
	}
	c.n[client]++
	return true
}

func (c *clientStreams) release(client netip.Addr) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[client]--; c.n[client] <= 0 {
		delete(c.n, client)
	}
}

// errSlowBody is a request body that arrives slower than the minimum
// rate.
var errSlowBody = errors.New("request body arrives too slowly")

// clientBody reads a request body at no less than a minimum rate, and
// remembers whether a failure was the client's (a slow or malformed
// body) rather than the backend's.
type clientBody struct {
	io.ReadCloser
	rc    *http.ResponseController
	start time.Time
	rate  int64 // bytes per second; 0 for no minimum
	grace time.Duration
	n     int64
	err   error // the client's failure, if any
}

func (b *clientBody) Read(p []byte) (int, error) {
	if b.rate > 0 {
		// The deadline moves with what has arrived: a body must keep up
		// with rate after a grace period, whatever its size.
		b.rc.SetReadDeadline(b.start.Add(b.grace + time.Duration(b.n*int64(time.Second)/b.rate)))
	}
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if err != nil && !errors.Is(err, io.EOF) {
		if isTimeout(err) {
			err = errSlowBody
		}
		b.err = err
	}
	return n, err
}

type clientBodyKey struct{}

// Rapid reset: past resetsBeforeHold streams a connection reset before
// their answer, each new stream of it waits resetHold before it goes to
// the backend; a reset arrives well within that, so reset streams stop
// reaching the backend at all. Past resetsBeforeClose the connection is
// closed.
const (
	resetsBeforeHold  = 8
	resetHold         = 20 * time.Millisecond
	resetsBeforeClose = 1000
)

// holdForReset delays an HTTP/2 stream of a connection that resets its
// streams, and reports whether the stream should go on to the backend.
func (h *httpForwarder) holdForReset(r *http.Request) bool {
	s := sessionFrom(r.Context())
	if s == nil {
		return true
	}
	n := s.resets.Load()
	if n >= resetsBeforeClose {
		if s.resetClosed.CompareAndSwap(false, true) {
			s.log.Info("closing an HTTP/2 connection that resets its streams (rapid reset)", "resets", n)
			s.c.Close()
		}
		return false
	}
	if n < resetsBeforeHold {
		return true
	}
	t := time.NewTimer(resetHold)
	defer t.Stop()
	select {
	case <-t.C:
		return r.Context().Err() == nil
	case <-r.Context().Done():
		s.resets.Add(1)
		return false
	}
}
