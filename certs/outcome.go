package certs

import (
	"bytes"
	"crypto"
)

// Outcome is what one reload attempt did.
type Outcome string

// Reload outcomes, as reported in logs and by the admin API.
const (
	// Reloaded: a new certificate passed every check and now serves new
	// handshakes.
	Reloaded Outcome = "reloaded"
	// Unchanged: the files hold the certificate and key already served.
	Unchanged Outcome = "unchanged"
	// Failed: the candidate was refused; the previous certificate keeps
	// serving.
	Failed Outcome = "failed"
	// Added: a pair new in a certificates folder passed every check and
	// now serves new handshakes.
	Added Outcome = "added"
	// Removed: a pair gone from its certificates folder is no longer
	// served.
	Removed Outcome = "removed"
)

// sameBundle reports whether a and b serve the same chain with the same key.
func sameBundle(a, b *Bundle) bool {
	if len(a.Cert.Certificate) != len(b.Cert.Certificate) {
		return false
	}
	for i := range a.Cert.Certificate {
		if !bytes.Equal(a.Cert.Certificate[i], b.Cert.Certificate[i]) {
			return false
		}
	}
	k, ok := a.Cert.PrivateKey.(interface{ Equal(crypto.PrivateKey) bool })
	return ok && k.Equal(b.Cert.PrivateKey)
}
