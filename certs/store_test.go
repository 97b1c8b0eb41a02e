package certs

import (
	"context"
	"crypto/tls"
	"net"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/pki/pkitest"
	"github.com/tlsfront/tlsfront/internal/testnet"
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

func bundleWith(t *testing.T, ca *pkitest.CA, o pki.Options) *Bundle {
	t.Helper()
	f := ca.WriteLeaf(ca.Leaf(o))
	b, err := LoadFile(Source{CertFile: f.Cert, KeyFile: f.Key}, Verify{Roots: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tlsServer serves TLS handshakes on loopback with s's certificates and
// the proxy's TLS 1.2 suites, and sends each certificate it served on the
// returned channel.
func tlsServer(t *testing.T, s *Store) (addr string, served chan *tls.Certificate) {
	t.Helper()
	served = make(chan *tls.Certificate, 16)
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		},
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, err := s.GetCertificate(h)
			served <- c
			return c, err
		},
	}
	ln := testnet.Listen(t)
	testnet.Serve(t, ln, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tls.Server(c, cfg).Handshake()
	})
	return ln.Addr().String(), served
}

func waitServed(t *testing.T, served chan *tls.Certificate) *tls.Certificate {
	t.Helper()
	select {
	case c := <-served:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no certificate served within 10s")
		return nil
	}
}

// TestStoreServesWhatTheClientSupports puts an RSA and an ECDSA certificate
// for one name in both configuration orders, and checks with real clients
// that modern ones get ECDSA and RSA-only ones get RSA.
func TestStoreServesWhatTheClientSupports(t *testing.T) {
	ca := pkitest.NewCA(t)
	const name = "broker.example.com"
	ecdsaB := bundleWith(t, ca, pki.Options{DNSNames: []string{name}})
	rsaB := bundleWith(t, ca, pki.Options{DNSNames: []string{name}, RSA: true})
	rsaSuites := []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}
	goClient := func(cfg *tls.Config) func(t *testing.T, addr string) {
		return func(t *testing.T, addr string) {
			cfg.RootCAs = ca.Pool()
			d := &net.Dialer{Timeout: 5 * time.Second}
			c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			c.Close()
		}
	}
	opensslClient := func(args ...string) func(t *testing.T, addr string) {
		return func(t *testing.T, addr string) {
			if _, err := exec.LookPath("openssl"); err != nil {
				t.Skip("openssl not installed")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			a := append([]string{"s_client", "-connect", addr, "-CAfile", ca.RootFile(), "-verify_return_error"}, args...)
			cmd := exec.CommandContext(ctx, "openssl", a...)
			cmd.Stdin = strings.NewReader("")
			// The exit status says nothing: s_client fails when the
			// server closes first, after a good handshake.
			out, err := cmd.CombinedOutput()
			if !strings.Contains(string(out), "Verify return code: 0 (ok)") {
				t.Fatalf("openssl %s: %v\n%s", strings.Join(a, " "), err, out)
			}
		}
	}
	tests := []struct {
		name   string
		client func(t *testing.T, addr string)
		want   *Bundle
	}{
		{"modern go client", goClient(&tls.Config{ServerName: name}), ecdsaB},
		{"go TLS 1.2 ECDHE_RSA suites only", goClient(&tls.Config{ServerName: name, MaxVersion: tls.VersionTLS12, CipherSuites: rsaSuites}), rsaB},
		{"go TLS 1.2 ECDHE_RSA suites, no SNI", goClient(&tls.Config{ServerName: "", InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12, CipherSuites: rsaSuites}), rsaB},
		{"modern go client, no SNI", goClient(&tls.Config{InsecureSkipVerify: true}), ecdsaB},
		{"openssl default", opensslClient("-servername", name), ecdsaB},
		{"openssl TLS 1.3 RSA-PSS only", opensslClient("-servername", name, "-tls1_3", "-sigalgs", "RSA-PSS+SHA256"), rsaB},
		{"openssl TLS 1.2 RSA signatures only", opensslClient("-servername", name, "-tls1_2", "-sigalgs", "RSA+SHA256:RSA-PSS+SHA256"), rsaB},
		{"openssl TLS 1.2 ECDHE-RSA suites only", opensslClient("-servername", name, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"), rsaB},
	}
	for _, order := range []string{"ecdsa first", "rsa first"} {
		t.Run(order, func(t *testing.T) {
			s := NewStore()
			if order == "ecdsa first" {
				s.Put("ecdsa", ecdsaB)
				s.Put("rsa", rsaB)
			} else {
				s.Put("rsa", rsaB)
				s.Put("ecdsa", ecdsaB)
			}
			if o := s.Overlaps(); len(o) != 0 {
				t.Fatalf("an ECDSA and an RSA certificate are no overlap: %+v", o)
			}
			addr, served := tlsServer(t, s)
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					tt.client(t, addr)
					if got := waitServed(t, served); got != tt.want.Cert {
						t.Fatalf("served the %s certificate, want %s", rankName(keyRank(got)), rankName(keyRank(tt.want.Cert)))
					}
				})
			}
		})
	}
}

// TestStoreRSAWildcardBehindECDSAExact: a client that cannot use the exact
// (ECDSA) certificate gets the RSA wildcard that also covers the name.
func TestStoreRSAWildcardBehindECDSAExact(t *testing.T) {
	ca := pkitest.NewCA(t)
	exact := bundleWith(t, ca, pki.Options{DNSNames: []string{"a.example.com"}})
	wild := bundleWith(t, ca, pki.Options{DNSNames: []string{"*.example.com"}, RSA: true})
	s := NewStore()
	s.Put("exact", exact)
	s.Put("wild", wild)
	addr, served := tlsServer(t, s)
	for _, tt := range []struct {
		name string
		cfg  *tls.Config
		want *Bundle
	}{
		{"modern", &tls.Config{ServerName: "a.example.com"}, exact},
		{"RSA only", &tls.Config{ServerName: "a.example.com", MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}}, wild},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.RootCAs = ca.Pool()
			c, err := tls.Dial("tcp", addr, tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			if got := waitServed(t, served); got != tt.want.Cert {
				t.Fatal("served the wrong certificate")
			}
		})
	}
}

func TestStoreOverlaps(t *testing.T) {
	ca := pkitest.NewCA(t)
	s := NewStore()
	s.Put("a", bundleWith(t, ca, pki.Options{DNSNames: []string{"x.example.com", "*.example.org"}}))
	s.Put("b", bundleWith(t, ca, pki.Options{DNSNames: []string{"x.example.com", "y.example.com"}}))
	s.Put("c", bundleWith(t, ca, pki.Options{DNSNames: []string{"x.example.com", "*.example.org"}, RSA: true}))
	s.Put("d", bundleWith(t, ca, pki.Options{DNSNames: []string{"*.example.org"}}))
	want := []Overlap{
		{Name: "*.example.org", KeyType: "ECDSA", Served: "a", Shadowed: "d"},
		{Name: "x.example.com", KeyType: "ECDSA", Served: "a", Shadowed: "b"},
	}
	if got := s.Overlaps(); !slices.Equal(got, want) {
		t.Fatalf("Overlaps = %+v, want %+v", got, want)
	}
}

// TestStoreGetCertificateAllocs: with one certificate for a name, the
// handshake path allocates nothing.
func TestStoreGetCertificateAllocs(t *testing.T) {
	ca := pkitest.NewCA(t)
	s := NewStore()
	s.Put("one", bundleFor(t, ca, "broker.example.com"))
	s.Put("pair", bundleWith(t, ca, pki.Options{DNSNames: []string{"pair.example.com"}}))
	s.Put("pair-rsa", bundleWith(t, ca, pki.Options{DNSNames: []string{"pair.example.com"}, RSA: true}))
	hello := &tls.ClientHelloInfo{ServerName: "broker.example.com"}
	if n := testing.AllocsPerRun(100, func() { s.GetCertificate(hello) }); n != 0 {
		t.Fatalf("one candidate: %v allocations per lookup, want 0", n)
	}
	hello = &tls.ClientHelloInfo{ServerName: "pair.example.com"}
	t.Logf("two candidates: %v allocations per lookup", testing.AllocsPerRun(100, func() { s.GetCertificate(hello) }))
}
