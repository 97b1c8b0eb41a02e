package certs_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tlsfront/tlsfront/certs"
	"github.com/tlsfront/tlsfront/internal/pki"
)

// A renewal wrote only the leaf. The doctor completes the chain from the
// bundle folder, so clients that trust only the root still connect.
func ExampleLoadFile() {
	dir, _ := os.MkdirTemp("", "tlsfront-example")
	defer os.RemoveAll(dir)
	root, _ := pki.NewRoot("Example Root")
	inter, _ := root.Issue(pki.Options{CommonName: "Example Intermediate", IsCA: true})
	leaf, _ := inter.Issue(pki.Options{CommonName: "broker.example", DNSNames: []string{"broker.example"}})
	os.Mkdir(filepath.Join(dir, "bundle"), 0o755)
	pki.WriteFile(filepath.Join(dir, "bundle"), "inter.pem", inter.CertPEM(), 0o644)
	certFile, _ := pki.WriteFile(dir, "cert.pem", leaf.CertPEM(), 0o644)
	keyFile, _ := pki.WriteFile(dir, "key.pem", leaf.KeyPEM(), 0o600)

	b, err := certs.LoadFile(
		certs.Source{CertFile: certFile, KeyFile: keyFile, Names: []string{"broker.example"}},
		certs.Verify{Roots: pki.Pool(root), BundleDir: filepath.Join(dir, "bundle")},
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, der := range b.Cert.Certificate {
		c, _ := x509.ParseCertificate(der)
		fmt.Println("serves", c.Subject.CommonName)
	}
	fmt.Println("anchored by", b.Chain[len(b.Chain)-1].Subject.CommonName)
	// Output:
	// serves broker.example
	// serves Example Intermediate
	// anchored by Example Root
}

// What a server sends, diagnosed: here it omits its intermediate.
func ExampleDiagnose() {
	root, _ := pki.NewRoot("Example Root")
	inter, _ := root.Issue(pki.Options{CommonName: "Example Intermediate", IsCA: true})
	leaf, _ := inter.Issue(pki.Options{CommonName: "broker.example", DNSNames: []string{"broker.example"}})

	d := certs.Diagnose(context.Background(), certs.Input{
		Mode:     certs.ModeServed,
		Certs:    []*x509.Certificate{leaf.Cert},
		Names:    []string{"broker.example"},
		CertFile: "broker.example:8883",
	}, certs.Verify{Roots: pki.Pool(root)})
	fmt.Println("ok:", d.OK)
	for _, f := range d.Findings {
		if f.Severity == certs.SeverityError {
			fmt.Println(f.Message)
		}
	}
	// Output:
	// ok: false
	// chain does not verify against the trust store: the chain is incomplete: the issuer "Example Intermediate" of "broker.example" is not in what the server sends, and "broker.example" names no AIA URL to fetch it from; configure the server to send it after the leaf (if "Example Intermediate" is a root, it is missing from the trust store)
}
