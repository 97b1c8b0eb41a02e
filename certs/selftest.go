package certs

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
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
// memory, a server holding b against a client that trusts only v.Roots (the
// system roots when nil) and asks for each of b.Source.Names, or the leaf's
// first name when none are routed. TLS 1.3 is tried for every name and TLS
// 1.2 for the first, since a key can work in one and not the other.
//
// The error is a *FileError naming the key file and wrapping a
// *HandshakeError. SelfTest is safe for concurrent use.
func SelfTest(b *Bundle, v Verify) error {
	names := b.Source.Names
	if len(names) == 0 {
		names = []string{firstName(b.Leaf)}
	}
	keyFile := keyFileOf(b.Source)
	for i, name := range names {
		versions := []uint16{tls.VersionTLS13}
		if i == 0 {
			versions = append(versions, tls.VersionTLS12)
		}
		for _, ver := range versions {
			if err := handshakeInMemory(b, v, name, ver); err != nil {
				return &FileError{keyFile, &HandshakeError{Name: name, Version: ver, Err: err}}
			}
		}
	}
	return nil
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

func handshakeInMemory(b *Bundle, v Verify, name string, maxVersion uint16) error {
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
	if name == "" {
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
