package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/pki/pkitest"
)

// insecureRSAKey builds an RSA key of the given size by hand: crypto/rsa
// refuses to generate keys under 1024 bits, but a renewal script can still
// write one, and that is what the self-test must catch.
func insecureRSAKey(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	for range 100 {
		p, err := rand.Prime(rand.Reader, bits/2)
		if err != nil {
			t.Fatal(err)
		}
		q, err := rand.Prime(rand.Reader, bits/2)
		if err != nil {
			t.Fatal(err)
		}
		one := big.NewInt(1)
		phi := new(big.Int).Mul(new(big.Int).Sub(p, one), new(big.Int).Sub(q, one))
		d := new(big.Int).ModInverse(big.NewInt(65537), phi)
		if p.Cmp(q) == 0 || d == nil {
			continue
		}
		k := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: new(big.Int).Mul(p, q), E: 65537}, D: d, Primes: []*big.Int{p, q}}
		k.Precompute()
		return k
	}
	t.Fatal("no RSA key after 100 tries")
	return nil
}

// leafWithKey issues a localhost leaf for key from ca and loads it as
// LoadFile would.
func leafWithKey(t *testing.T, ca *pkitest.CA, key crypto.Signer) *Bundle {
	t.Helper()
	f := ca.WriteLeaf(ca.Leaf(pki.Options{Key: key}))
	b, err := LoadFile(Source{CertFile: f.Cert, KeyFile: f.Key}, Verify{Roots: ca.Pool()})
	if err != nil {
		t.Fatalf("the loader should accept this key (the self-test is what must refuse it): %v", err)
	}
	return b
}

func TestSelfTest(t *testing.T) {
	ca := pkitest.NewCA(t)
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		key     crypto.Signer
		names   []string
		wantErr string // in the message; "" means it must pass
		// nameErr: a name check (x509, no handshake) refuses it.
		nameErr bool
	}{
		{name: "p256 default", key: nil},
		{name: "p384", key: p384},
		{name: "ed25519 works in Go", key: ed},
		{name: "rsa 512 too small", key: insecureRSAKey(t, 512), wantErr: "too small"},
		{name: "p224 refused by TLS 1.3", key: p224, wantErr: "P-224"},
		{name: "routed name", names: []string{"localhost", "127.0.0.1"}},
		{name: "routed name not covered", names: []string{"localhost", "other.example"}, wantErr: "other.example", nameErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := tc.key
			if key == nil {
				key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				if err != nil {
					t.Fatal(err)
				}
			}
			b := leafWithKey(t, ca, key)
			b.Source.Names = tc.names
			err := SelfTest(b, Verify{Roots: ca.Pool()})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("SelfTest: %v", err)
				}
				return
			}
			var he *HandshakeError
			var fe *FileError
			if tc.nameErr {
				if !errors.Is(err, ErrNameMismatch) || !errors.As(err, &fe) || fe.File != b.Source.CertFile || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("SelfTest = %v, want a *FileError naming %s wrapping ErrNameMismatch and saying %q", err, b.Source.CertFile, tc.wantErr)
				}
				return
			}
			if !errors.As(err, &he) || !errors.As(err, &fe) {
				t.Fatalf("SelfTest = %v, want a *FileError wrapping a *HandshakeError", err)
			}
			if fe.File != b.Source.KeyFile || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("SelfTest = %q, want it to name %s and say %q", err, b.Source.KeyFile, tc.wantErr)
			}
		})
	}
}

func TestSelfTestUntrustedRoot(t *testing.T) {
	ca, other := pkitest.NewCA(t), pkitest.NewCA(t)
	b := leafWithKey(t, ca, p256Key(t))
	err := SelfTest(b, Verify{Roots: other.Pool()})
	if err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Fatalf("SelfTest against another root = %v, want the client's unknown authority error", err)
	}
}

func p256Key(t *testing.T) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeyWarningsEd25519(t *testing.T) {
	ca := pkitest.NewCA(t)
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b := leafWithKey(t, ca, ed)
	if w := keyWarnings(b); len(w) != 1 || !strings.Contains(w[0], "Ed25519") {
		t.Fatalf("keyWarnings = %q, want one about Ed25519", w)
	}
	if w := keyWarnings(leafWithKey(t, ca, p256Key(t))); len(w) != 0 {
		t.Fatalf("keyWarnings(P-256) = %q, want none", w)
	}
}
