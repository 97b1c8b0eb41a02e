package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tlsfront/tlsfront/internal/pki"
)

// TestScripts runs the command-line scenarios in testdata/script: what an
// operator types and what tlsfront answers.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{Dir: "testdata/script", RequireExplicitExec: true})
}

// genCertsMain writes a test PKI into the folder named by its argument:
// root.pem; inter.pem; leaf.pem (leaf only) and cert.pem (leaf +
// intermediate) for localhost with key.pem; other-key.pem, a key of
// another certificate; expired.pem and expired-key.pem; bundle/inter.pem.
func genCertsMain() {
	if err := genCerts(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "gencerts:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func genCerts(dir string) error {
	root, err := pki.NewRoot("script root")
	if err != nil {
		return err
	}
	inter, err := root.Issue(pki.Options{CommonName: "script intermediate", IsCA: true})
	if err != nil {
		return err
	}
	leaf, err := inter.Issue(pki.Options{CommonName: "localhost", DNSNames: []string{"localhost"}})
	if err != nil {
		return err
	}
	other, err := inter.Issue(pki.Options{CommonName: "localhost", DNSNames: []string{"localhost"}})
	if err != nil {
		return err
	}
	expired, err := inter.Issue(pki.Options{CommonName: "localhost", DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "bundle"), 0o755); err != nil {
		return err
	}
	for name, data := range map[string][]byte{
		"root.pem":         root.CertPEM(),
		"inter.pem":        inter.CertPEM(),
		"bundle/inter.pem": inter.CertPEM(),
		"leaf.pem":         leaf.CertPEM(),
		"cert.pem":         pki.ChainPEM(leaf, inter),
		"key.pem":          leaf.KeyPEM(),
		"other-key.pem":    other.KeyPEM(),
		"expired.pem":      pki.ChainPEM(expired, inter),
		"expired-key.pem":  expired.KeyPEM(),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}
