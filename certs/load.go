package certs

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
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
	// CertFile holds the leaf and optionally intermediates, in any order,
	// as PEM (or DER / PKCS#7).
	CertFile string
	// KeyFile holds the private key. Empty means the key is in CertFile.
	KeyFile string
	// Names are the server names routed to this certificate; each must be
	// covered by the leaf's SANs.
	Names []string
}

// Verify says what a certificate is checked against and how a chain that
// lacks intermediates is completed. The zero value verifies against the
// system roots and completes nothing from the network.
type Verify struct {
	// Roots is the trust store clients use. Nil means the system roots.
	Roots *x509.CertPool
	// RootsName names Roots in findings, e.g. the CA file; empty means
	// "the system trust store" (or "the trust store" when Roots is set).
	RootsName string
	// ExtraStores are further trust stores, by name, that some clients
	// use (e.g. "old-android": what devices that no longer get updates
	// trust). A chain they cannot verify is a warning naming the store,
	// not an error.
	ExtraStores map[string]*x509.CertPool
	// BundleDir is a folder of PEM, DER or PKCS#7 files holding
	// intermediates to complete chains with. Empty means none.
	BundleDir string
	// FetchAIA lets the doctor fetch a missing issuer from the caIssuers
	// URL (Authority Information Access) of the certificate that lacks it.
	FetchAIA bool
	// Fetch gets the bytes at an AIA URL; nil means HTTPFetch. It is the
	// seam tests use to take the network away.
	Fetch FetchFunc
	// FetchTimeout bounds one AIA fetch; zero means 10 seconds.
	FetchTimeout time.Duration
	// CacheDir keeps fetched intermediates, one file per URL, so that a
	// restart needs no network. Empty means no disk cache.
	CacheDir string
	// ExpiryWarning is how long before the leaf expires a warning is
	// given; zero means 21 days.
	ExpiryWarning time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (v Verify) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v Verify) expiryWarning() time.Duration {
	if v.ExpiryWarning > 0 {
		return v.ExpiryWarning
	}
	return 21 * 24 * time.Hour
}

func (v Verify) rootsName() string {
	switch {
	case v.RootsName != "":
		return v.RootsName
	case v.Roots == nil:
		return "the system trust store"
	default:
		return "the trust store"
	}
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
	// as a key file readable by others or a leaf that expires soon.
	Warnings []string
	// Diagnosis is the doctor's full report, including the repairs it made
	// (reordering, completed intermediates, dropped certificates). The
	// Manager logs its repairs and drops it, to keep thousands of
	// certificates small; Examine gives it again.
	Diagnosis *Diagnosis
	// LoadedAt is when the files were read.
	LoadedAt time.Time
	// repairs are the doctor's repairs, kept for the log when the
	// Manager drops Diagnosis.
	repairs []string
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
// trusting v.Roots could connect to is returned; its chain is ordered and
// completed by the doctor (see Diagnose).
func LoadFile(src Source, v Verify) (*Bundle, error) {
	return LoadFileContext(context.Background(), src, v)
}

// LoadFileContext is LoadFile with a context that bounds AIA fetches.
func LoadFileContext(ctx context.Context, src Source, v Verify) (*Bundle, error) {
	certData, keyData, keyFile, err := readSource(src)
	if err != nil {
		return nil, err
	}
	b, err := parse(ctx, src, certData, keyData, v)
	if err != nil {
		return nil, err
	}
	if w := keyModeWarning(keyFile); w != "" {
		b.Warnings = append(b.Warnings, w)
	}
	return b, nil
}

// Parse checks certificate and key bytes as LoadFile does; src names the
// files in errors.
func Parse(src Source, certPEM, keyPEM []byte, v Verify) (*Bundle, error) {
	return parse(context.Background(), src, certPEM, keyPEM, v)
}

// readSource reads src's files through ReadFile: a path that points at a
// FIFO, a device or a huge file must fail the load (and a reload, which
// keeps the old certificate), never block it or exhaust memory.
func readSource(src Source) (certData, keyData []byte, keyFile string, err error) {
	certData, err = ReadFile(src.CertFile, MaxFileBytes)
	if err != nil {
		return nil, nil, "", &FileError{src.CertFile, fmt.Errorf("read certificate: %w", err)}
	}
	keyFile = src.KeyFile
	if keyFile == "" {
		return certData, certData, src.CertFile, nil
	}
	keyData, err = ReadFile(keyFile, MaxFileBytes)
	if err != nil {
		return nil, nil, "", &FileError{keyFile, fmt.Errorf("read private key: %w", err)}
	}
	return certData, keyData, keyFile, nil
}

func parse(ctx context.Context, src Source, certData, keyData []byte, v Verify) (*Bundle, error) {
	keyFile := src.KeyFile
	if keyFile == "" {
		keyFile = src.CertFile
	}
	list, err := parseBundle(certData)
	if err != nil {
		return nil, &FileError{src.CertFile, err}
	}
	key, err := parsePrivateKey(keyData)
	if err != nil {
		return nil, &FileError{keyFile, err}
	}
	d := Diagnose(ctx, Input{Mode: ModeFile, Certs: list, Key: key, Names: src.Names, CertFile: src.CertFile, KeyFile: keyFile}, v)
	if err := d.Err(); err != nil {
		return nil, err
	}
	out := &tls.Certificate{PrivateKey: key, Leaf: d.leaf}
	for _, c := range d.served {
		out.Certificate = append(out.Certificate, c.Raw)
	}
	b := &Bundle{Source: src, Cert: out, Leaf: d.leaf, Chain: d.path, Diagnosis: d, LoadedAt: v.now()}
	for _, f := range d.Findings {
		if f.Severity == SeverityWarn {
			b.Warnings = append(b.Warnings, f.Message)
		}
	}
	return b, nil
}

// Examine reads src and diagnoses it without stopping at the first
// problem: every problem is a finding in the returned Diagnosis. A key is
// optional here: without src.KeyFile the certificate file is searched for
// one, and without any the key check is skipped. The error is non-nil only
// when a file cannot be read or holds no certificate (a *FileError).
func Examine(ctx context.Context, src Source, v Verify) (*Diagnosis, error) {
	certData, err := ReadFile(src.CertFile, MaxFileBytes)
	if err != nil {
		return nil, &FileError{src.CertFile, fmt.Errorf("read certificate: %w", err)}
	}
	list, err := parseBundle(certData)
	if err != nil {
		return nil, &FileError{src.CertFile, err}
	}
	in := Input{Mode: ModeFile, Certs: list, Names: src.Names, CertFile: src.CertFile}
	switch {
	case src.KeyFile != "":
		keyData, err := ReadFile(src.KeyFile, MaxFileBytes)
		if err != nil {
			return nil, &FileError{src.KeyFile, fmt.Errorf("read private key: %w", err)}
		}
		if in.Key, err = parsePrivateKey(keyData); err != nil {
			return nil, &FileError{src.KeyFile, err}
		}
		in.KeyFile = src.KeyFile
	case hasPrivateKeyBlock(certData):
		if in.Key, err = parsePrivateKey(certData); err != nil {
			return nil, &FileError{src.CertFile, err}
		}
		in.KeyFile = src.CertFile
	}
	d := Diagnose(ctx, in, v)
	if in.Key == nil {
		d.add(SeverityInfo, "no private key given or found in the file: whether it matches was not checked")
	}
	if in.KeyFile != "" {
		if w := keyModeWarning(in.KeyFile); w != "" {
			d.add(SeverityWarn, "%s", w)
		}
	}
	return d, nil
}

// maxBundleBytes bounds what is parsed from one file or one AIA response.
const maxBundleBytes = 1 << 20

// parseBundle returns every certificate in data, in file order. It takes
// PEM (CERTIFICATE and PKCS7 blocks, other blocks such as keys skipped),
// DER (one or more concatenated certificates) and DER PKCS#7 (.p7c, as AIA
// URLs often serve). A PEM block cut short fails the whole file: it is
// usually a file read while it was being written, and serving what came
// before it would drop intermediates.
func parseBundle(data []byte) ([]*x509.Certificate, error) {
	if len(data) > maxBundleBytes {
		return nil, fmt.Errorf("%w: file is larger than %d bytes", ErrNoCertificate, maxBundleBytes)
	}
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		return parseDER(data)
	}
	var out []*x509.Certificate
	var otherTypes []string
	rest := data
	for n := 1; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch block.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%w: PEM block %d: %w", ErrNoCertificate, n, err)
			}
			out = append(out, c)
		case "PKCS7":
			cs, err := parsePKCS7(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%w: PEM block %d: %w", ErrNoCertificate, n, err)
			}
			out = append(out, cs...)
		default:
			otherTypes = append(otherTypes, block.Type)
		}
	}
	if i := bytes.Index(rest, []byte("-----BEGIN")); i >= 0 {
		return nil, fmt.Errorf("%w: a PEM block after certificate %d is cut short (truncated file, or read while being written?); write certificate files whole, e.g. to a temporary file then rename", ErrNoCertificate, len(out))
	}
	if len(out) == 0 {
		if len(otherTypes) > 0 {
			return nil, fmt.Errorf("%w: no CERTIFICATE block, only %s (cert and key swapped?)", ErrNoCertificate, strings.Join(otherTypes, ", "))
		}
		return nil, fmt.Errorf("%w: no complete PEM CERTIFICATE block (truncated or not PEM?)", ErrNoCertificate)
	}
	return out, nil
}

func parseDER(data []byte) ([]*x509.Certificate, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%w: the file is empty", ErrNoCertificate)
	}
	if cs, err := x509.ParseCertificates(data); err == nil && len(cs) > 0 {
		return cs, nil
	}
	if cs, err := parsePKCS7(data); err == nil {
		return cs, nil
	}
	return nil, fmt.Errorf("%w: neither PEM nor a DER certificate or PKCS#7 bundle", ErrNoCertificate)
}

func hasPrivateKeyBlock(data []byte) bool {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return false
		}
		if strings.HasSuffix(block.Type, "PRIVATE KEY") {
			return true
		}
	}
}

// parsePrivateKey returns the first private key PEM block's key, so that a
// key file holding the certificate too (a combined .pem) works. Errors
// never quote the key.
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no complete PEM PRIVATE KEY block (truncated, encrypted or not PEM?)")
		}
		if !strings.HasSuffix(block.Type, "PRIVATE KEY") {
			continue
		}
		//lint:ignore SA1019 only to say the key is encrypted; it is never decrypted
		if x509.IsEncryptedPEMBlock(block) || block.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, errors.New("private key is encrypted; give tlsfront an unencrypted key (mode 600)")
		}
		if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
			switch k := k.(type) {
			case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
				return k.(crypto.Signer), nil
			default:
				return nil, fmt.Errorf("parse private key: unsupported key type %T", k)
			}
		}
		if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
			return k, nil
		}
		if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
			return k, nil
		}
		return nil, fmt.Errorf("parse private key: %s block is not a PKCS#8, PKCS#1 or EC key", block.Type)
	}
}

func isSelfSigned(c *x509.Certificate) bool {
	// CheckSignature, not CheckSignatureFrom: a self-signed leaf without
	// CA constraints is still self-signed.
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
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
