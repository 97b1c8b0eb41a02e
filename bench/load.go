package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// client dials one target the same way for every measurement.
type client struct {
	addr string
	tls  *tls.Config // nil: plain TCP
}

// newClientTLS returns the load generator's TLS config: TLS 1.3 full
// handshakes (no session cache), X25519 or P-256 only, verifying the served
// chain against the bench root for "localhost".
//
// Go's default would offer the X25519MLKEM768 hybrid, which OpenSSL 3.0
// cannot pick; offering it to tlsfront only would not be a like-for-like
// comparison.
//
// Chain verification is done once per distinct served chain and then
// reused for byte-identical chains. The handshake's CertificateVerify
// signature is still checked on every connection by crypto/tls. This keeps
// the single-core load generator from spending two extra ECDSA verifies per
// connection, which would make it, not the proxy, the bottleneck.
func newClientTLS(roots *x509.CertPool) *tls.Config {
	var mu sync.Mutex
	var verified [][]byte
	return &tls.Config{
		ServerName:         "localhost",
		MinVersion:         tls.VersionTLS13,
		CurvePreferences:   []tls.CurveID{tls.X25519, tls.CurveP256},
		InsecureSkipVerify: true, // replaced by VerifyConnection below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server sent no certificate")
			}
			mu.Lock()
			defer mu.Unlock()
			if len(verified) == len(cs.PeerCertificates) {
				same := true
				for i, c := range cs.PeerCertificates {
					same = same && bytes.Equal(c.Raw, verified[i])
				}
				if same {
					return nil
				}
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: "localhost", Roots: roots, Intermediates: inter}); err != nil {
				return fmt.Errorf("verify served chain: %w", err)
			}
			verified = verified[:0]
			for _, c := range cs.PeerCertificates {
				verified = append(verified, c.Raw)
			}
			return nil
		},
	}
}

// ipBindAddressNoPort (IP_BIND_ADDRESS_NO_PORT) lets connect pick the port
// for a socket bound to a source address, so each source address has the
// whole ephemeral range per destination.
const ipBindAddressNoPort = 24

// dial connects from src, completes the TLS handshake if the target speaks
// TLS, and returns the connection with no deadline set.
func (cl *client) dial(ctx context.Context, src netip.Addr) (net.Conn, error) {
	d := net.Dialer{
		Timeout:   10 * time.Second,
		LocalAddr: &net.TCPAddr{IP: src.AsSlice()},
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
			})
			return errors.Join(err, serr)
		},
	}
	c, err := d.DialContext(ctx, "tcp", cl.addr)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if cl.tls == nil {
		return c, nil
	}
	tc := tls.Client(c, cl.tls)
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	return tc, nil
}

// echoOnce sends msg and reads it back.
func echoOnce(c net.Conn, msg, buf []byte) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if _, err := io.ReadFull(c, buf[:len(msg)]); err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if !bytes.Equal(buf[:len(msg)], msg) {
		return errors.New("echo returned different bytes")
	}
	return nil
}

// errCount keeps the number of errors and the first one.
type errCount struct {
	mu    sync.Mutex
	n     int
	first error
}

func (e *errCount) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	if e.first == nil {
		e.first = err
	}
}

func (e *errCount) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == 0 {
		return ""
	}
	return fmt.Sprintf("%d errors, first: %v", e.n, e.first)
}

// handshakeResult is the outcome of the connection-rate test.
type handshakeResult struct {
	conns   int
	elapsed time.Duration
	errs    errCount
	suite   string
	curve   string
}

// handshakes runs workers that each connect, handshake, do one echo round
// trip and close, until d has passed or maxConns have been started.
func (cl *client) handshakes(ctx context.Context, src netip.Addr, workers int, d time.Duration, maxConns int64) *handshakeResult {
	res := &handshakeResult{}
	ctx, cancel := context.WithTimeout(ctx, d+15*time.Second) // hard stop for stuck dials
	defer cancel()
	stopAt := time.Now().Add(d)
	var started, done atomic.Int64
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			msg := bytes.Repeat([]byte("x"), 64)
			buf := make([]byte, len(msg))
			for time.Now().Before(stopAt) && ctx.Err() == nil && started.Add(1) <= maxConns {
				c, err := cl.dial(ctx, src)
				if err != nil {
					res.errs.add(err)
					continue
				}
				if err := echoOnce(c, msg, buf); err != nil {
					res.errs.add(err)
					c.Close()
					continue
				}
				if tc, ok := c.(*tls.Conn); ok {
					once.Do(func() {
						st := tc.ConnectionState()
						res.suite = tls.CipherSuiteName(st.CipherSuite)
						res.curve = st.CurveID.String()
					})
				}
				c.Close()
				done.Add(1)
			}
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.conns = int(done.Load())
	return res
}

// bulkResult is the outcome of a throughput test.
type bulkResult struct {
	bytes   int64 // payload echoed back, one way
	elapsed time.Duration
	errs    errCount
}

// bulk opens conns connections and on each writes 32 KiB chunks while
// reading the echo back, until maxBytes have been written in total or d
// has passed. Each reader stops once it has read back everything its
// writer wrote, so the result does not depend on how a proxy handles
// half-close.
func (cl *client) bulk(ctx context.Context, src netip.Addr, conns int, d time.Duration, maxBytes int64) *bulkResult {
	res := &bulkResult{}
	var cs []net.Conn
	for range conns {
		c, err := cl.dial(ctx, src)
		if err != nil {
			res.errs.add(err)
			for _, c := range cs {
				c.Close()
			}
			return res
		}
		cs = append(cs, c)
	}
	chunk := make([]byte, 32<<10)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	var budget atomic.Int64
	budget.Store(maxBytes)
	var total atomic.Int64
	start := time.Now()
	stopAt := start.Add(d)
	var wg sync.WaitGroup
	for _, c := range cs {
		hardStop := stopAt.Add(20 * time.Second)
		c.SetDeadline(hardStop)
		// final is what the writer wrote in all, -1 while it is writing.
		var final atomic.Int64
		final.Store(-1)
		wg.Go(func() {
			var written int64
			defer func() {
				final.Store(written)
				// Wake the reader if it already has everything and is
				// blocked in Read.
				c.SetReadDeadline(time.Now())
			}()
			for time.Now().Before(stopAt) && ctx.Err() == nil && budget.Add(-int64(len(chunk))) >= 0 {
				n, err := c.Write(chunk)
				written += int64(n)
				if err != nil {
					res.errs.add(fmt.Errorf("bulk write: %w", err))
					return
				}
			}
		})
		wg.Go(func() {
			defer c.Close()
			buf := make([]byte, 64<<10)
			var read int64
			defer func() { total.Add(read) }()
			for {
				if f := final.Load(); f >= 0 && read >= f {
					return
				}
				n, err := c.Read(buf)
				read += int64(n)
				if err != nil {
					if isTimeout(err) && time.Now().Before(hardStop) {
						c.SetReadDeadline(hardStop)
						continue
					}
					res.errs.add(fmt.Errorf("bulk read after %d bytes: %w", read, err))
					return
				}
			}
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.bytes = total.Load()
	return res
}

// rttResult holds round-trip times of the ping-pong test.
type rttResult struct {
	samples []time.Duration
	errs    errCount
}

func (r *rttResult) pct(p float64) time.Duration {
	if len(r.samples) == 0 {
		return 0
	}
	i := int(p / 100 * float64(len(r.samples)-1))
	return r.samples[i]
}

// rtt does warmup+n round trips of size bytes on one connection, within d.
func (cl *client) rtt(ctx context.Context, src netip.Addr, size, warmup, n int, d time.Duration) *rttResult {
	res := &rttResult{}
	c, err := cl.dial(ctx, src)
	if err != nil {
		res.errs.add(err)
		return res
	}
	defer c.Close()
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = byte(i)
	}
	buf := make([]byte, size)
	stopAt := time.Now().Add(d)
	c.SetDeadline(stopAt.Add(5 * time.Second))
	res.samples = make([]time.Duration, 0, n)
	for i := 0; i < warmup+n && time.Now().Before(stopAt) && ctx.Err() == nil; i++ {
		t0 := time.Now()
		if _, err := c.Write(msg); err != nil {
			res.errs.add(err)
			break
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			res.errs.add(err)
			break
		}
		if i >= warmup {
			res.samples = append(res.samples, time.Since(t0))
		}
	}
	slices.Sort(res.samples)
	return res
}

// wakeResult pairs, per connection, the round trip of the first message
// after a quiet spell with the one right after it.
type wakeResult struct {
	cold, warm []time.Duration // same order: cold[i] and warm[i] are one connection's
	errs       errCount
}

// extra is the median over connections of cold minus warm.
func (w *wakeResult) extra() (time.Duration, bool) {
	if len(w.cold) == 0 {
		return 0, false
	}
	d := make([]time.Duration, len(w.cold))
	for i := range w.cold {
		d[i] = w.cold[i] - w.warm[i]
	}
	slices.Sort(d)
	return d[len(d)/2], true
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// wake opens n connections (handshake and one echo each), leaves them all
// quiet for quiet, then on each in turn times one 1 KiB round trip (cold:
// a proxy that parks idle connections has parked it) and at once a second
// (warm). Bounded by n and by d.
func (cl *client) wake(ctx context.Context, src netip.Addr, n int, quiet, d time.Duration) *wakeResult {
	res := &wakeResult{}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var set idleSet
	defer set.closeAll()
	set.open(ctx, cl, src, n, 4, d/2)
	if set.errs.n > 0 {
		res.errs.add(set.errs.first)
	}
	select {
	case <-time.After(quiet):
	case <-ctx.Done():
		return res
	}
	msg := make([]byte, 1024)
	buf := make([]byte, len(msg))
	for _, c := range set.conns {
		if ctx.Err() != nil {
			break
		}
		var rt [2]time.Duration
		var err error
		for i := range rt {
			t0 := time.Now()
			if err = echoOnce(c, msg, buf); err != nil {
				break
			}
			rt[i] = time.Since(t0)
		}
		if err != nil {
			res.errs.add(err)
			continue
		}
		res.cold = append(res.cold, rt[0])
		res.warm = append(res.warm, rt[1])
	}
	return res
}

// idleSet is a set of open, quiet connections.
type idleSet struct {
	conns []net.Conn
	errs  errCount
}

// open adds connections, each after a handshake and one echo round trip,
// until the set holds want or d has passed.
func (s *idleSet) open(ctx context.Context, cl *client, src netip.Addr, want, workers int, d time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	need := want - len(s.conns)
	if need <= 0 {
		return
	}
	var claimed atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			msg := []byte("ping")
			buf := make([]byte, len(msg))
			for ctx.Err() == nil && claimed.Add(1) <= int64(need) {
				c, err := cl.dial(ctx, src)
				if err == nil {
					err = echoOnce(c, msg, buf)
					if err != nil {
						c.Close()
					}
				}
				if err != nil {
					s.errs.add(err)
					// A failed slot is retried, within the time bound.
					claimed.Add(-1)
					if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.EADDRNOTAVAIL) {
						return
					}
					continue
				}
				mu.Lock()
				s.conns = append(s.conns, c)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

func (s *idleSet) closeAll() {
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
