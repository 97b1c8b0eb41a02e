package certs

import (
	"bytes"
	"crypto"
	"sync"
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
)

// Reloader replaces certificates in a Store, and only with ones that are
// known to work: a candidate is read into local variables, checked as
// LoadFile checks it (key matches, leaf valid now, chain verifies against
// the trust store, routed names covered), then served to an in-memory TLS
// client (SelfTest). Only then is it published, with one atomic swap.
//
// Reloader is safe for concurrent use; reloads are serialised so that the
// comparison with the current certificate and the swap cannot interleave.
type Reloader struct {
	store *Store
	// selfTest proves a candidate; tests replace it to count calls.
	selfTest func(*Bundle, Verify) error

	mu sync.Mutex
}

// NewReloader returns a Reloader publishing into s.
func NewReloader(s *Store) *Reloader {
	return &Reloader{store: s, selfTest: SelfTest}
}

// Reload reads src and, when it passes every check, serves it as id. It
// returns the bundle serving id afterwards (the new one, or the current one
// when the files are unchanged) and what happened.
//
// On failure it returns a nil bundle, Failed and an error naming the file
// and saying why (errors.Is finds ErrKeyMismatch, ErrExpired and the other
// load errors; errors.As finds a *HandshakeError when the TLS stack could
// not use the key); the certificate served before keeps serving.
func (r *Reloader) Reload(id string, src Source, v Verify) (*Bundle, Outcome, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, err := LoadFile(src, v)
	if err != nil {
		return nil, Failed, err
	}
	if cur := r.store.Get(id); cur != nil && sameBundle(cur, b) {
		return cur, Unchanged, nil
	}
	if err := r.selfTest(b, v); err != nil {
		return nil, Failed, err
	}
	b.Warnings = append(b.Warnings, keyWarnings(b)...)
	r.store.Put(id, b)
	return b, Reloaded, nil
}

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
