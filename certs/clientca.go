package certs

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// ErrNoClientCert is returned to a client that sent no certificate when one
// is required.
var ErrNoClientCert = errors.New("client sent no certificate")

// ClientCAs verifies client certificates (mTLS) against a CA bundle that
// Reload can replace while serving.
//
// It keeps the listener's tls.Config as it is and adds to it (Configure):
// the server asks every client for a certificate and VerifyConnection
// checks it against the pool current at that moment. A new pool therefore
// applies to the next handshake, including resumed sessions, without
// rebuilding any configuration. Because the pool is not in
// tls.Config.ClientCAs, the server's certificate request names no
// acceptable CAs; clients with one certificate send it regardless.
//
// ClientCAs is safe for concurrent use.
type ClientCAs struct {
	required bool
	now      func() time.Time
	cur      atomic.Pointer[caPool]
}

// caPool is immutable once published.
type caPool struct {
	pool  *x509.CertPool
	sum   [sha256.Size]byte // of the DER, in order: tells an unchanged file
	count int
}

// NewClientCAs returns a verifier with no CAs, which refuses every client
// certificate until Reload succeeds. With required false, clients that
// send no certificate are let in; a certificate that is sent must verify.
func NewClientCAs(required bool) *ClientCAs {
	return &ClientCAs{required: required, now: time.Now}
}

// Reload reads a PEM CA bundle from file and, when it is a non-empty list
// of certificates and nothing else, verifies new handshakes against it. It
// returns how many CAs the file holds. On error the previous pool stays in
// use; the error names the file.
func (c *ClientCAs) Reload(file string) (Outcome, int, error) {
	// Bounded and non-blocking: the path is re-read on every reload.
	data, err := ReadFile(file, MaxFileBytes)
	if err != nil {
		return Failed, 0, &FileError{file, fmt.Errorf("read client CA bundle: %w", err)}
	}
	next, err := parseCAPool(data)
	if err != nil {
		return Failed, 0, &FileError{file, err}
	}
	if cur := c.cur.Load(); cur != nil && cur.sum == next.sum {
		return Unchanged, cur.count, nil
	}
	c.cur.Store(next)
	return Reloaded, next.count, nil
}

// ParseClientCAs parses a PEM bundle of CA certificates. Anything but
// CERTIFICATE blocks, a block that does not parse, trailing bytes that are
// not PEM (a truncated file) or no certificate at all is an error: a
// garbled bundle must not silently trust fewer or no CAs.
func ParseClientCAs(data []byte) (*x509.CertPool, int, error) {
	p, err := parseCAPool(data)
	if err != nil {
		return nil, 0, err
	}
	return p.pool, p.count, nil
}

func parseCAPool(data []byte) (*caPool, error) {
	pool := x509.NewCertPool()
	h := sha256.New()
	n := 0
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			// Never echo the block: it could be a private key.
			return nil, fmt.Errorf("client CA bundle: block %d is a %q, not a CERTIFICATE; the file should hold CA certificates only", n+1, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("client CA bundle: certificate %d: %w", n+1, err)
		}
		pool.AddCert(cert)
		h.Write(block.Bytes)
		n++
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, fmt.Errorf("client CA bundle: %d bytes after certificate %d are not a complete PEM block (truncated?)", len(bytes.TrimSpace(rest)), n)
	}
	if n == 0 {
		return nil, fmt.Errorf("client CA bundle: %w: the file is empty or not PEM", ErrNoCertificate)
	}
	p := &caPool{pool: pool, count: n}
	h.Sum(p.sum[:0])
	return p, nil
}

// Pool returns the CAs client certificates are verified against now, or
// nil before the first successful Reload.
func (c *ClientCAs) Pool() *x509.CertPool {
	if p := c.cur.Load(); p != nil {
		return p.pool
	}
	return nil
}

// Configure makes cfg ask clients for a certificate and verify it against
// the current pool. It wraps any VerifyConnection cfg already has, which
// runs after the client certificate verified. Call it once, before serving.
func (c *ClientCAs) Configure(cfg *tls.Config) {
	// The Require/RequestAny modes make the TLS stack skip its own
	// verification against cfg.ClientCAs, which could not follow a reload;
	// VerifyConnection does it against the current pool instead.
	cfg.ClientAuth = tls.RequestClientCert
	if c.required {
		cfg.ClientAuth = tls.RequireAnyClientCert
	}
	next := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if err := c.VerifyClient(cs); err != nil {
			return err
		}
		if next != nil {
			return next(cs)
		}
		return nil
	}
}

// VerifyClient checks the client certificate of a handshake against the
// current pool. It is what Configure installs as VerifyConnection.
func (c *ClientCAs) VerifyClient(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		if c.required {
			return ErrNoClientCert
		}
		return nil
	}
	leaf := cs.PeerCertificates[0]
	p := c.cur.Load()
	if p == nil {
		return fmt.Errorf("client certificate %q: no client CA bundle is loaded", leaf.Subject.CommonName)
	}
	inter := x509.NewCertPool()
	for _, ic := range cs.PeerCertificates[1:] {
		inter.AddCert(ic)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         p.pool,
		Intermediates: inter,
		CurrentTime:   c.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return fmt.Errorf("client certificate %q: %w", leaf.Subject.CommonName, err)
	}
	return nil
}
