package certs

import "errors"

// ClientAuthConfig is the client_auth section of the configuration: it
// turns on client certificate verification (mTLS) on every TLS listener.
type ClientAuthConfig struct {
	// CAFile is a PEM bundle of the CAs client certificates must chain
	// to. It is reloaded with the certificates. Empty turns client
	// authentication off.
	CAFile string `yaml:"ca_file"`
	// Required refuses clients that send no certificate. Default true
	// when ca_file is set; false lets them in, while a certificate that
	// is sent must still verify.
	Required *bool `yaml:"required"`
}

// Enabled reports whether client certificates are verified.
func (c ClientAuthConfig) Enabled() bool { return c.CAFile != "" }

// CertRequired reports whether clients without a certificate are refused.
func (c ClientAuthConfig) CertRequired() bool { return c.Required == nil || *c.Required }

// Validate checks the section; its error names the keys.
func (c ClientAuthConfig) Validate() error {
	if c.CAFile == "" && c.Required != nil {
		return errors.New("client_auth.required: set, but client_auth.ca_file is empty; give the CA bundle client certificates are verified against (--client-ca)")
	}
	return nil
}
