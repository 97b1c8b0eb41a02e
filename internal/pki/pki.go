package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// Cert is a certificate together with its private key.
type Cert struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	DER  []byte
}

// Options describe a certificate to issue. Zero values give sensible
// defaults: valid from an hour ago, ECDSA P-256, for 90 days (a leaf) or
// five years (a CA). A CA must outlive what it signs, as real ones do: with
// equal lives, an intermediate issued a second before its leaf expires a
// second before it, and the chain doctor rightly warns about that.
type Options struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	NotBefore  time.Time
	NotAfter   time.Time
	IsCA       bool
	RSA        bool
	// AIA is written as the caIssuers URL of the issued certificate.
	AIA string
	// Key reuses a key (e.g. to cross-sign a CA) instead of generating one.
	Key crypto.Signer
	// OrganizationalUnit goes into the subject, for client certificates.
	OrganizationalUnit []string
	// URIs are URI SANs, e.g. SPIFFE IDs.
	URIs []*url.URL
}

func newKey(rsaKey bool) (crypto.Signer, error) {
	if rsaKey {
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// NewRoot makes a self-signed root CA.
func NewRoot(cn string) (*Cert, error) {
	return issue(nil, Options{CommonName: cn, IsCA: true, NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour)})
}

// Issue signs a certificate described by o with parent.
func (parent *Cert) Issue(o Options) (*Cert, error) { return issue(parent, o) }

func issue(parent *Cert, o Options) (*Cert, error) {
	key := o.Key
	if key == nil {
		var err error
		if key, err = newKey(o.RSA); err != nil {
			return nil, fmt.Errorf("generate key: %w", err)
		}
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, err
	}
	nb, na := o.NotBefore, o.NotAfter
	if nb.IsZero() {
		nb = time.Now().Add(-time.Hour)
	}
	if na.IsZero() {
		na = time.Now().Add(90 * 24 * time.Hour)
		if o.IsCA {
			na = time.Now().Add(5 * 365 * 24 * time.Hour)
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: o.CommonName, Organization: []string{"tlsfront test"}, OrganizationalUnit: o.OrganizationalUnit},
		NotBefore:             nb,
		NotAfter:              na,
		DNSNames:              o.DNSNames,
		IPAddresses:           o.IPs,
		URIs:                  o.URIs,
		BasicConstraintsValid: true,
		IsCA:                  o.IsCA,
	}
	if o.AIA != "" {
		tmpl.IssuingCertificateURL = []string{o.AIA}
	}
	if o.IsCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		if o.RSA {
			tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
		}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	signerCert, signerKey := tmpl, key
	if parent != nil {
		signerCert, signerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signerKey)
	if err != nil {
		return nil, fmt.Errorf("create certificate: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Cert{Cert: c, Key: key, DER: der}, nil
}

// CertPEM returns the certificate as PEM.
func (c *Cert) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER})
}

// KeyPEM returns the private key as PKCS#8 PEM.
func (c *Cert) KeyPEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		panic(err) // only ECDSA and RSA keys are made here
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// ChainPEM concatenates the PEM of certs, in order.
func ChainPEM(certs ...*Cert) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, c.CertPEM()...)
	}
	return out
}

// WriteFile writes data to dir/name with mode and returns the path.
func WriteFile(dir, name string, data []byte, mode os.FileMode) (string, error) {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, mode); err != nil {
		return "", err
	}
	return p, nil
}

// Pool returns a pool holding the given certificates.
func Pool(certs ...*Cert) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c.Cert)
	}
	return p
}
