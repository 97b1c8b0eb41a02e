package main

import (
	"crypto/x509"
	"fmt"
	"os"

	"github.com/tlsfront/tlsfront/certs"
)

func (a *app) loadTrust() error {
	if a.cfg.Trust.CAFile == "" {
		return nil
	}
	data, err := os.ReadFile(a.cfg.Trust.CAFile)
	if err != nil {
		return fmt.Errorf("trust.ca_file: %w", err)
	}
	a.roots = x509.NewCertPool()
	if !a.roots.AppendCertsFromPEM(data) {
		return fmt.Errorf("trust.ca_file: %s holds no PEM certificate", a.cfg.Trust.CAFile)
	}
	return nil
}

// verify is what every certificate is checked against, at start and on
// reload.
func (a *app) verify() certs.Verify { return certs.Verify{Roots: a.roots} }
