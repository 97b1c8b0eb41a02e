package pkitest

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"

	"github.com/tlsfront/tlsfront/internal/pki"
)

// CA is a root with one intermediate below it.
type CA struct {
	Root, Intermediate *pki.Cert
	t                  testing.TB
}

// NewCA makes a root and an intermediate.
func NewCA(t testing.TB) *CA {
	t.Helper()
	root, err := pki.NewRoot("tlsfront test root")
	if err != nil {
		t.Fatal(err)
	}
	inter, err := root.Issue(pki.Options{CommonName: "tlsfront test intermediate", IsCA: true})
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Root: root, Intermediate: inter, t: t}
}

// Leaf issues a leaf from the intermediate. Without names it covers
// localhost and 127.0.0.1.
func (ca *CA) Leaf(o pki.Options) *pki.Cert {
	ca.t.Helper()
	if len(o.DNSNames) == 0 && len(o.IPs) == 0 {
		o.DNSNames = []string{"localhost"}
		o.IPs = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	if o.CommonName == "" && len(o.DNSNames) > 0 {
		o.CommonName = o.DNSNames[0]
	}
	c, err := ca.Intermediate.Issue(o)
	if err != nil {
		ca.t.Fatal(err)
	}
	return c
}

// Files is a certificate and key written to disk.
type Files struct {
	Dir, Cert, Key string
	Leaf           *pki.Cert
}

// WriteLeaf writes leaf+intermediate as cert.pem and the key as key.pem
// (mode 0600) into a fresh temporary folder.
func (ca *CA) WriteLeaf(leaf *pki.Cert) Files {
	ca.t.Helper()
	return ca.WriteLeafTo(ca.t.TempDir(), leaf)
}

// WriteLeafTo is WriteLeaf into dir.
func (ca *CA) WriteLeafTo(dir string, leaf *pki.Cert) Files {
	ca.t.Helper()
	cp, err := pki.WriteFile(dir, "cert.pem", pki.ChainPEM(leaf, ca.Intermediate), 0o644)
	if err != nil {
		ca.t.Fatal(err)
	}
	kp, err := pki.WriteFile(dir, "key.pem", leaf.KeyPEM(), 0o600)
	if err != nil {
		ca.t.Fatal(err)
	}
	return Files{Dir: dir, Cert: cp, Key: kp, Leaf: leaf}
}

// RootFile writes the root as PEM and returns its path.
func (ca *CA) RootFile() string {
	ca.t.Helper()
	p, err := pki.WriteFile(ca.t.TempDir(), "root.pem", ca.Root.CertPEM(), 0o644)
	if err != nil {
		ca.t.Fatal(err)
	}
	return p
}

// Pool holds only the root: a client with it must be served the
// intermediate to verify.
func (ca *CA) Pool() *x509.CertPool { return pki.Pool(ca.Root) }

// ClientConfig trusts only the root and asks for serverName. It offers
// X25519 and P-256 only, like the peers it is compared with.
func (ca *CA) ClientConfig(serverName string) *tls.Config {
	return &tls.Config{RootCAs: ca.Pool(), ServerName: serverName, CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}}
}
