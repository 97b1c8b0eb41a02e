package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"
)

// Source says where one certificate comes from.
type Source struct {
	// CertFile holds the leaf, optionally followed by intermediates.
	CertFile string
	// KeyFile holds the private key. Empty means the key is in CertFile.
	KeyFile string
	// Names are the server names routed to this certificate; each must be
	// covered by the leaf's SANs.
	Names []string
}

// Verify says what a certificate is checked against.
type Verify struct {
	// Roots is the trust store clients use. Nil means the system roots.
	Roots *x509.CertPool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (v Verify) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// Bundle is a validated certificate, ready to serve.
type Bundle struct {
	Source Source
	// Cert is what the TLS stack serves: leaf first, then intermediates,
	// never the root.
	Cert *tls.Certificate
	// Leaf is Cert's parsed first certificate.
	Leaf *x509.Certificate
	// Chain is the verified path from the leaf up to and including the
	// root that anchors it.
	Chain []*x509.Certificate
	// Warnings are problems that do not stop clients from connecting, such
	// as a key file readable by others.
	Warnings []string
	// LoadedAt is when the files were read.
	LoadedAt time.Time
}

// FileError is a certificate or key file that cannot be served. Its message
// names the file and says what to do.
type FileError struct {
	File string
	Err  error
}

func (e *FileError) Error() string { return e.File + ": " + e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }

// Problems a certificate can have. Callers branch on them to tell a bad
// renewal from an unreadable file.
var (
	ErrKeyMismatch   = errors.New("private key does not match the certificate")
	ErrExpired       = errors.New("certificate has expired")
	ErrNotYetValid   = errors.New("certificate is not valid yet")
	ErrUntrusted     = errors.New("chain does not verify against the trust store")
	ErrNameMismatch  = errors.New("certificate does not cover a routed name")
	ErrNoCertificate = errors.New("no certificate found")
)

// LoadFile reads src and checks it against v. Only a certificate that clients
// trusting v.Roots could connect to is returned.
func LoadFile(src Source, v Verify) (*Bundle, error) {
	certPEM, err := os.ReadFile(src.CertFile)
	if err != nil {
		return nil, &FileError{src.CertFile, fmt.Errorf("read certificate: %w", err)}
	}
	keyFile := src.KeyFile
	if keyFile == "" {
		keyFile = src.CertFile
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, &FileError{keyFile, fmt.Errorf("read private key: %w", err)}
	}
	b, err := Parse(src, certPEM, keyPEM, v)
	if err != nil {
		return nil, err
	}
	if w := keyModeWarning(keyFile); w != "" {
		b.Warnings = append(b.Warnings, w)
	}
	return b, nil
}

// Parse checks PEM bytes as LoadFile does; src names the files in errors.
func Parse(src Source, certPEM, keyPEM []byte, v Verify) (*Bundle, error) {
	keyFile := src.KeyFile
	if keyFile == "" {
		keyFile = src.CertFile
	}
	certs, err := parseCertificates(certPEM)
	if err != nil {
		return nil, &FileError{src.CertFile, err}
	}
	keyDER, err := privateKeyBlock(keyPEM)
	if err != nil {
		return nil, &FileError{keyFile, err}
	}
	pair, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certs[0].Raw}), keyDER)
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return nil, &FileError{keyFile, fmt.Errorf("%w in %s: the renewal probably wrote a new certificate but not its key (or the reverse); install the matching pair", ErrKeyMismatch, src.CertFile)}
		}
		return nil, &FileError{keyFile, fmt.Errorf("parse private key: %w", err)}
	}
	leaf := certs[0]
	now := v.now()
	if now.After(leaf.NotAfter) {
		return nil, &FileError{src.CertFile, fmt.Errorf("%w: %q expired on %s; renew it", ErrExpired, leaf.Subject.CommonName, leaf.NotAfter.UTC().Format(time.RFC3339))}
	}
	if now.Before(leaf.NotBefore) {
		return nil, &FileError{src.CertFile, fmt.Errorf("%w: %q starts on %s; check the clock or wait", ErrNotYetValid, leaf.Subject.CommonName, leaf.NotBefore.UTC().Format(time.RFC3339))}
	}
	for _, name := range src.Names {
		if err := leaf.VerifyHostname(name); err != nil {
			return nil, &FileError{src.CertFile, fmt.Errorf("%w: %q is routed here but the certificate covers only %s", ErrNameMismatch, name, strings.Join(leafNames(leaf), ", "))}
		}
	}
	served := []*x509.Certificate{leaf}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		if isSelfSigned(c) {
			continue // a root in the served chain only costs bytes, or breaks old clients when it expires
		}
		served = append(served, c)
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: v.Roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		return nil, &FileError{src.CertFile, fmt.Errorf("%w: %v; add the missing intermediates to the file (leaf first) or trust its root", ErrUntrusted, err)}
	}
	out := &tls.Certificate{PrivateKey: pair.PrivateKey, Leaf: leaf}
	for _, c := range served {
		out.Certificate = append(out.Certificate, c.Raw)
	}
	return &Bundle{Source: src, Cert: out, Leaf: leaf, Chain: chains[0], LoadedAt: now}, nil
}

func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		if len(bytes.TrimSpace(data)) > 0 {
			return nil, fmt.Errorf("%w: no complete PEM CERTIFICATE block (truncated or not PEM?)", ErrNoCertificate)
		}
		return nil, fmt.Errorf("%w: the file is empty", ErrNoCertificate)
	}
	return out, nil
}

// privateKeyBlock returns the first private key PEM block so that a key file
// holding the certificate too (a combined .pem) works.
func privateKeyBlock(data []byte) ([]byte, error) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no complete PEM PRIVATE KEY block (truncated, encrypted or not PEM?)")
		}
		if strings.HasSuffix(block.Type, "PRIVATE KEY") {
			if x509.IsEncryptedPEMBlock(block) { //nolint:staticcheck // only to say so
				return nil, errors.New("private key is encrypted; give tlsfront an unencrypted key")
			}
			return pem.EncodeToMemory(block), nil
		}
	}
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}

func leafNames(c *x509.Certificate) []string {
	names := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && c.Subject.CommonName != "" {
		names = append(names, c.Subject.CommonName+" (CN only, ignored by clients)")
	}
	return names
}

// keyModeWarning says when a key file can be read by users other than its
// owner.
func keyModeWarning(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Sprintf("%s: private key is readable by group or others (mode %v); chmod 600 it", path, fi.Mode().Perm()&fs.ModePerm)
	}
	return ""
}
