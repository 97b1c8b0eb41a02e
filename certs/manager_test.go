package certs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/pki/pkitest"
)

func TestReloaderRefusesAndKeepsServing(t *testing.T) {
	ca := pkitest.NewCA(t)
	v := Verify{Roots: ca.Pool()}
	good := ca.Leaf(pki.Options{})
	other := ca.Leaf(pki.Options{})

	// Each case turns dir/cert.pem and dir/key.pem into a broken renewal.
	tests := []struct {
		name   string
		names  []string
		break_ func(t *testing.T, dir string)
		want   error  // errors.Is target, or nil
		text   string // in the message
	}{
		{name: "key mismatch", want: ErrKeyMismatch, text: "key.pem", break_: func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "cert.pem"), pki.ChainPEM(other, ca.Intermediate))
		}},
		{name: "expired", want: ErrExpired, break_: func(t *testing.T, dir string) {
			ca.WriteLeafTo(dir, ca.Leaf(pki.Options{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}))
		}},
		{name: "not yet valid", want: ErrNotYetValid, break_: func(t *testing.T, dir string) {
			ca.WriteLeafTo(dir, ca.Leaf(pki.Options{NotBefore: time.Now().Add(time.Hour)}))
		}},
		{name: "truncated pem", want: ErrNoCertificate, text: "truncated", break_: func(t *testing.T, dir string) {
			pemBytes := pki.ChainPEM(other, ca.Intermediate)
			writeFile(t, filepath.Join(dir, "cert.pem"), pemBytes[:len(other.CertPEM())/2])
		}},
		{name: "wrong san for routed name", names: []string{"localhost"}, want: ErrNameMismatch, text: "localhost", break_: func(t *testing.T, dir string) {
			ca.WriteLeafTo(dir, ca.Leaf(pki.Options{DNSNames: []string{"elsewhere.example"}}))
		}},
		{name: "incomplete chain", want: ErrUntrusted, break_: func(t *testing.T, dir string) {
			c := ca.Leaf(pki.Options{})
			writeFile(t, filepath.Join(dir, "cert.pem"), c.CertPEM())
			writeFile(t, filepath.Join(dir, "key.pem"), c.KeyPEM())
		}},
		{name: "cert file is a directory", text: "cert.pem", break_: func(t *testing.T, dir string) {
			p := filepath.Join(dir, "cert.pem")
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "dangling key symlink", text: "key.pem", break_: func(t *testing.T, dir string) {
			p := filepath.Join(dir, "key.pem")
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join(dir, "gone.pem"), p); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "key too small for TLS", text: "too small", break_: func(t *testing.T, dir string) {
			ca.WriteLeafTo(dir, ca.Leaf(pki.Options{Key: insecureRSAKey(t, 512)}))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := ca.WriteLeaf(good)
			src := Source{CertFile: f.Cert, KeyFile: f.Key, Names: tc.names}
			s := NewStore()
			r := NewReloader(s)
			if _, out, err := r.Reload("main", src, v); err != nil || out != Reloaded {
				t.Fatalf("first Reload = %s, %v; want reloaded", out, err)
			}
			tc.break_(t, f.Dir)
			b, out, err := r.Reload("main", src, v)
			if err == nil || out != Failed || b != nil {
				t.Fatalf("Reload of a broken renewal = %v, %s, %v; want nil, failed, an error", b, out, err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %q does not wrap %v", err, tc.want)
			}
			var fe *FileError
			if !errors.As(err, &fe) || !strings.HasPrefix(fe.File, f.Dir) {
				t.Errorf("error %q is not a *FileError naming a file in %s", err, f.Dir)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q does not say %q", err, tc.text)
			}
			if got := s.Get("main"); got == nil || got.Leaf.SerialNumber.Cmp(good.Cert.SerialNumber) != 0 {
				t.Fatalf("after a failed reload the store serves %v, want the previous certificate", got)
			}
		})
	}
}

func TestReloaderOutcomes(t *testing.T) {
	ca := pkitest.NewCA(t)
	v := Verify{Roots: ca.Pool()}
	f := ca.WriteLeaf(ca.Leaf(pki.Options{}))
	src := Source{CertFile: f.Cert, KeyFile: f.Key}
	s := NewStore()
	r := NewReloader(s)
	selfTests := 0
	r.selfTest = func(b *Bundle, v Verify) error { selfTests++; return SelfTest(b, v) }

	steps := []struct {
		name      string
		change    func()
		want      Outcome
		selfTests int
	}{
		{name: "first load", want: Reloaded, selfTests: 1},
		{name: "same files", want: Unchanged, selfTests: 1},
		{name: "same bytes rewritten", change: func() { ca.WriteLeafTo(f.Dir, f.Leaf) }, want: Unchanged, selfTests: 1},
		{name: "renewed", change: func() { ca.WriteLeafTo(f.Dir, ca.Leaf(pki.Options{})) }, want: Reloaded, selfTests: 2},
		{name: "chain without intermediate is a change, and refused", change: func() {
			writeFile(t, f.Cert, f.Leaf.CertPEM())
		}, want: Failed, selfTests: 2},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.change != nil {
				st.change()
			}
			b, out, err := r.Reload("main", src, v)
			if out != st.want {
				t.Fatalf("Reload = %s (%v), want %s", out, err, st.want)
			}
			if out != Failed && b != s.Get("main") {
				t.Fatalf("Reload returned a bundle the store does not serve")
			}
			if selfTests != st.selfTests {
				t.Fatalf("self-tests run: %d, want %d (unchanged files need none)", selfTests, st.selfTests)
			}
		})
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A renewal hook or file watch calls Reload; the previous certificate
// keeps serving unless the new one passes every check.
func ExampleReloader() {
	store := NewStore()
	r := NewReloader(store)
	src := Source{CertFile: "/etc/letsencrypt/live/mqtt.example.com/fullchain.pem", KeyFile: "/etc/letsencrypt/live/mqtt.example.com/privkey.pem", Names: []string{"mqtt.example.com"}}
	b, outcome, err := r.Reload("mqtt", src, Verify{})
	switch outcome {
	case Reloaded:
		fmt.Println("now serving serial", b.Leaf.SerialNumber, "until", b.Leaf.NotAfter)
	case Unchanged:
		fmt.Println("files unchanged")
	case Failed:
		fmt.Println("kept the previous certificate:", err)
	}
}
