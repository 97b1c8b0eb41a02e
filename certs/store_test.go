package certs

import (
	"crypto/tls"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/pki/pkitest"
)

func bundleFor(t *testing.T, ca *pkitest.CA, names ...string) *Bundle {
	t.Helper()
	leaf := ca.Leaf(pki.Options{DNSNames: names})
	f := ca.WriteLeaf(leaf)
	b, err := LoadFile(Source{CertFile: f.Cert, KeyFile: f.Key}, Verify{Roots: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStoreChoosesBySNI(t *testing.T) {
	ca := pkitest.NewCA(t)
	s := NewStore()
	first := bundleFor(t, ca, "broker.example.com")
	wild := bundleFor(t, ca, "*.eu.example.com")
	other := bundleFor(t, ca, "other.example.org")
	s.Put("first", first)
	s.Put("wild", wild)
	s.Put("other", other)
	for _, tt := range []struct {
		name, sni string
		want      *Bundle
	}{
		{"exact", "other.example.org", other},
		{"case and trailing dot", "Broker.Example.COM.", first},
		{"wildcard one label", "a.eu.example.com", wild},
		{"wildcard not two labels", "a.b.eu.example.com", first},
		{"no SNI gets the default", "", first},
		{"unknown name gets the default", "nope.example.net", first},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: tt.sni})
			if err != nil || got != tt.want.Cert {
				t.Fatalf("got %v (err %v), want %s", got, err, tt.want.Leaf.DNSNames)
			}
		})
	}
}

func TestStoreEmpty(t *testing.T) {
	if _, err := NewStore().GetCertificate(&tls.ClientHelloInfo{ServerName: "x"}); err != ErrUnknownName {
		t.Fatalf("err = %v, want ErrUnknownName", err)
	}
}

// TestStorePutIsAtomic swaps one certificate while lookups run: every
// lookup sees the old bundle or the new one, never nothing.
func TestStorePutIsAtomic(t *testing.T) {
	ca := pkitest.NewCA(t)
	s := NewStore()
	old, renewed := bundleFor(t, ca, "broker.example.com"), bundleFor(t, ca, "broker.example.com")
	s.Put("broker", old)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var bad atomic.Int64
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				c, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: "broker.example.com"})
				if err != nil || (c != old.Cert && c != renewed.Cert) {
					bad.Add(1)
				}
			}
		}()
	}
	for i := 0; i < 1000; i++ {
		if i%2 == 0 {
			s.Put("broker", renewed)
		} else {
			s.Put("broker", old)
		}
	}
	stop.Store(true)
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d lookups saw neither certificate", bad.Load())
	}
	if ids := s.IDs(); len(ids) != 1 {
		t.Fatalf("IDs = %v, want one entry after replacing", ids)
	}
}
