package certs_test

import (
	"testing"

	"github.com/tlsfront/tlsfront/certs"
)

// TestClientAuthConfig: a certificate is required by default once a CA
// bundle is given, and required without a bundle is a mistake.
func TestClientAuthConfig(t *testing.T) {
	no := false
	tests := []struct {
		name                   string
		c                      certs.ClientAuthConfig
		enabled, required, bad bool
	}{
		{name: "off", c: certs.ClientAuthConfig{}, required: true},
		{name: "on", c: certs.ClientAuthConfig{CAFile: "ca.pem"}, enabled: true, required: true},
		{name: "optional", c: certs.ClientAuthConfig{CAFile: "ca.pem", Required: &no}, enabled: true},
		{name: "required without ca_file", c: certs.ClientAuthConfig{Required: &no}, bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.c.Enabled(); got != tc.enabled {
				t.Errorf("Enabled = %v", got)
			}
			if got := tc.c.CertRequired(); got != tc.required {
				t.Errorf("CertRequired = %v", got)
			}
			if err := tc.c.Validate(); (err != nil) != tc.bad {
				t.Errorf("Validate = %v", err)
			}
		})
	}
}
