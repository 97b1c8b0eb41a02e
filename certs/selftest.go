package certs

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// selfTestTimeout bounds one in-memory handshake. Both ends are in this
// process, so anything near it means the TLS stack is stuck, not slow.
const selfTestTimeout = 5 * time.Second

// HandshakeError is a certificate that parsed and verified but that the TLS
// stack could not complete a handshake with, such as an RSA key under 1024
// bits or an ECDSA key on a curve TLS 1.3 does not allow (P-224).
type HandshakeError struct {
	// Name is the server name the test client asked for ("" for none).
	Name string
	// Version is the TLS version the client offered at most.
	Version uint16
	// Err is the server side's error when it has one (it says why), else
	// the client's.
	Err error
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("self-test %s handshake for %q failed: %v; clients cannot connect with this key and certificate: use an ECDSA P-256/P-384 or RSA 2048+ key", tls.VersionName(e.Version), e.Name, e.Err)
}

func (e *HandshakeError) Unwrap() error { return e.Err }

// SelfTest proves that b can be served: it runs real TLS handshakes in
// memory, TLS 1.3 and TLS 1.2 (a key can work in one and not the other),
// a server holding b against a client that trusts only v.Roots (the
// system roots when nil) and asks for the first of b.Source.Names, or the
// leaf's first name when none are routed. The other routed names are
// checked against the leaf with x509, as a client would: a handshake per
// name would prove nothing more.
//
// The error is a *FileError naming the key file and wrapping a
// *HandshakeError, or, for a routed name the leaf does not cover, naming
// the certificate file and wrapping ErrNameMismatch. SelfTest is safe for
// concurrent use.
func SelfTest(b *Bundle, v Verify) error {
	if err := checkNames(b); err != nil {
		return err
	}
	return handshakes(b, v, true)
}

// handshakes runs a TLS 1.3 and a TLS 1.2 handshake in memory with b, for
// the first routed name (else the leaf's), the client verifying the chain
// against v when verifyChain is set.
func handshakes(b *Bundle, v Verify, verifyChain bool) error {
	name := firstName(b.Leaf)
	if len(b.Source.Names) > 0 {
		name = b.Source.Names[0]
	}
	for _, ver := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		if err := handshakeInMemory(b, v, name, ver, verifyChain); err != nil {
			return &FileError{keyFileOf(b.Source), &HandshakeError{Name: name, Version: ver, Err: err}}
		}
	}
	return nil
}

// checkNames checks that b's leaf covers every name routed to it.
func checkNames(b *Bundle) error {
	for _, n := range b.Source.Names {
		if err := b.Leaf.VerifyHostname(n); err != nil {
			return &FileError{b.Source.CertFile, fmt.Errorf("%w: %q: %w", ErrNameMismatch, n, err)}
		}
	}
	return nil
}

// keyProver is the Manager's self-test. What a handshake proves beyond
// the doctor's x509 checks (key matches, chain verifies, names covered)
// is that the TLS stack can sign with this kind of key in TLS 1.3 and
// 1.2: a P-224 key cannot in 1.3, an RSA key under 1024 bits cannot at
// all. That depends on the key's algorithm and size, not on the
// certificate, so the handshakes run once per kind of key (ECDSA P-256,
// RSA 2048, ...) that passes, and again for every certificate whose kind
// failed, so that each failure is its own. A thousand ECDSA P-256
// certificates cost two handshakes, not two thousand.
//
// keyProver is safe for concurrent use.
type keyProver struct {
	mu     sync.Mutex
	proven map[string]bool
}

func (p *keyProver) selfTest(b *Bundle, v Verify) error {
	if err := checkNames(b); err != nil {
		return err
	}
	kind := keyKind(b.Cert.PrivateKey)
	p.mu.Lock()
	done := p.proven[kind]
	p.mu.Unlock()
	if done {
		return nil
	}
	// The chain was verified by the doctor; the client here checks only
	// that the server could sign.
	if err := handshakes(b, v, false); err != nil {
		return err
	}
	p.mu.Lock()
	if p.proven == nil {
		p.proven = map[string]bool{}
	}
	p.proven[kind] = true
	p.mu.Unlock()
	return nil
}

// keyKind names what about a key decides whether the TLS stack can use
// it: algorithm and curve or size.
func keyKind(k crypto.PrivateKey) string {
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PrivateKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case ed25519.PrivateKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", k)
}

// firstName is what a client would most likely ask the leaf for; "" when it
// has no SAN at all.
func firstName(leaf *x509.Certificate) string {
	if len(leaf.DNSNames) > 0 {
		return leaf.DNSNames[0]
	}
	if len(leaf.IPAddresses) > 0 {
		return leaf.IPAddresses[0].String()
	}
	return ""
}

// handshakeInMemory runs one handshake against b, the client offering at
// most maxVersion and asking for name; with verify false the client
// checks nothing of the chain.
func handshakeInMemory(b *Bundle, v Verify, name string, maxVersion uint16, verify bool) error {
	srvConf := &tls.Config{
		Certificates: []tls.Certificate{*b.Cert},
		MinVersion:   tls.VersionTLS12,
		Time:         v.Now,
	}
	cliConf := &tls.Config{
		RootCAs:    v.Roots,
		ServerName: name,
		MinVersion: tls.VersionTLS12,
		MaxVersion: maxVersion,
		Time:       v.Now,
	}
	switch {
	case !verify:
		cliConf.InsecureSkipVerify = true
	case name == "":
		// Nothing to check a name against: verify only the chain, as a
		// client that dials by an unlisted address and pins nothing would.
		cliConf.InsecureSkipVerify = true
		cliConf.VerifyConnection = func(cs tls.ConnectionState) error {
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: v.Roots, Intermediates: inter, CurrentTime: v.now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			return err
		}
	}
	sc, cc := net.Pipe()
	defer sc.Close()
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), selfTestTimeout)
	defer cancel()
	srv, cli := tls.Server(sc, srvConf), tls.Client(cc, cliConf)
	srvErr := make(chan error, 1)
	go func() {
		err := srv.HandshakeContext(ctx)
		// Unblock a client still waiting for a flight that will not come.
		sc.Close()
		srvErr <- err
	}()
	cliErr := cli.HandshakeContext(ctx)
	cc.Close()
	sErr := <-srvErr
	// Each side knows its own reason ("RSA key size too small" on the
	// server, "unknown authority" on the client) and sees only an alert
	// from the other: report the side that failed first.
	switch {
	case sErr != nil && !isRemoteAlert(sErr) && cliErr != nil:
		return sErr
	case cliErr != nil:
		return cliErr
	}
	return sErr
}

// isRemoteAlert reports an error that only relays the peer's alert.
func isRemoteAlert(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error"
}

// keyWarnings are problems with a key that Go's TLS stack accepts but many
// clients do not.
func keyWarnings(b *Bundle) []string {
	if _, ok := b.Cert.PrivateKey.(ed25519.PrivateKey); ok {
		return []string{keyFileOf(b.Source) + ": Ed25519 keys are not supported by browsers, older OpenSSL or many MQTT client libraries; serve an ECDSA P-256 key unless every client is known to support Ed25519"}
	}
	return nil
}

// keyFileOf is where src's private key is read from.
func keyFileOf(src Source) string {
	if src.KeyFile == "" {
		return src.CertFile
	}
	return src.KeyFile
}
