package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/pki/pkitest"
	"github.com/tlsfront/tlsfront/internal/testnet"
)

// drOffline is a fetch seam with the network taken away; it counts calls.
type drOffline struct{ calls atomic.Int32 }

func (o *drOffline) fetch(context.Context, string) ([]byte, error) {
	o.calls.Add(1)
	return nil, errors.New("dial tcp: network is unreachable")
}

func drWrite(t testing.TB, dir, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	p, err := pki.WriteFile(dir, name, data, mode)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func drIssue(t testing.TB, parent *pki.Cert, o pki.Options) *pki.Cert {
	t.Helper()
	c, err := parent.Issue(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func drRoot(t testing.TB, cn string) *pki.Cert {
	t.Helper()
	r, err := pki.NewRoot(cn)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func drServed(b *Bundle) []string {
	var out []string
	for _, der := range b.Cert.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return []string{err.Error()}
		}
		out = append(out, c.Subject.CommonName)
	}
	return out
}

func drHas(d *Diagnosis, sev Severity, substr string) bool {
	for _, f := range d.Findings {
		if f.Severity == sev && strings.Contains(f.Message, substr) {
			return true
		}
	}
	return false
}

func drDump(d *Diagnosis) string {
	var b strings.Builder
	for _, f := range d.Findings {
		b.WriteString("\n  " + string(f.Severity) + ": " + f.Message)
	}
	return b.String()
}

// handshake serves cert on a real TLS listener on loopback and connects
// with a client trusting only roots. It returns the client's error.
func drHandshake(t *testing.T, cert *tls.Certificate, roots *x509.CertPool, serverName string) error {
	t.Helper()
	ln := testnet.Listen(t)
	done := make(chan struct{})
	testnet.Serve(t, ln, func(conn net.Conn) {
		defer close(done)
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		// The server's own handshake error is the client's alert; the
		// client's view is what the test checks.
		_ = tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{*cert}}).Handshake()
	})
	d := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: serverName})
	if err == nil {
		conn.Close()
	}
	<-done
	return err
}

func TestLoadFileRepairs(t *testing.T) {
	ca := pkitest.NewCA(t)
	// A second hierarchy three deep: root -> inter1 -> inter2 -> leaf.
	deepRoot := drRoot(t, "deep root")
	inter1 := drIssue(t, deepRoot, pki.Options{CommonName: "deep inter 1", IsCA: true})
	inter2 := drIssue(t, inter1, pki.Options{CommonName: "deep inter 2", IsCA: true})
	deepLeaf := drIssue(t, inter2, pki.Options{CommonName: "deep.example", DNSNames: []string{"deep.example"}})

	// An old root cross-signed the new root's key; the cross-certificate
	// has expired, as DST Root CA X3's cross-sign of ISRG Root X1 did.
	oldRoot := drRoot(t, "old root")
	newRoot := drRoot(t, "new root")
	cross := drIssue(t, oldRoot, pki.Options{CommonName: "new root", IsCA: true, Key: newRoot.Key,
		NotBefore: time.Now().Add(-3 * 365 * 24 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	newInter := drIssue(t, newRoot, pki.Options{CommonName: "new inter", IsCA: true})
	newLeaf := drIssue(t, newInter, pki.Options{CommonName: "mqtt.example", DNSNames: []string{"mqtt.example"}})
	stranger := drIssue(t, drRoot(t, "other root"), pki.Options{CommonName: "unrelated inter", IsCA: true})

	leaf := ca.Leaf(pki.Options{AIA: "http://192.0.2.1/inter.crt"})

	cases := []struct {
		name       string
		certFile   []byte
		key        *pki.Cert
		combined   bool // key inside the certificate file
		bundle     map[string][]byte
		roots      *x509.CertPool
		extra      map[string]*x509.CertPool
		serverName string
		want       []string
		finding    string // an info/ok finding that must be present
		warning    string // a warning that must be present
	}{
		{
			name: "leaf only completed from bundle folder, network down", certFile: leaf.CertPEM(), key: leaf,
			bundle: map[string][]byte{"inter.pem": ca.Intermediate.CertPEM(), "README": []byte("not a cert")},
			roots:  ca.Pool(), serverName: "localhost",
			want:    []string{"localhost", "tlsfront test intermediate"},
			finding: "from the bundle file",
		},
		{
			name: "bundle folder holds DER", certFile: leaf.CertPEM(), key: leaf,
			bundle: map[string][]byte{"inter.der": ca.Intermediate.DER},
			roots:  ca.Pool(), serverName: "localhost",
			want:    []string{"localhost", "tlsfront test intermediate"},
			finding: "inter.der",
		},
		{
			name: "intermediate first, leaf second", certFile: pki.ChainPEM(ca.Intermediate, leaf), key: leaf,
			roots: ca.Pool(), serverName: "localhost",
			want:    []string{"localhost", "tlsfront test intermediate"},
			finding: "was certificate 2 of 2",
		},
		{
			name: "three deep, shuffled, root included", certFile: pki.ChainPEM(inter1, deepRoot, deepLeaf, inter2), key: deepLeaf,
			roots: pki.Pool(deepRoot), serverName: "deep.example",
			want:    []string{"deep.example", "deep inter 2", "deep inter 1"},
			finding: "out of order",
		},
		{
			name: "root included", certFile: pki.ChainPEM(leaf, ca.Intermediate, ca.Root), key: leaf,
			roots: ca.Pool(), serverName: "localhost",
			want:    []string{"localhost", "tlsfront test intermediate"},
			finding: "dropped the root",
		},
		{
			name: "expired cross-signed root dropped", certFile: pki.ChainPEM(newLeaf, newInter, cross), key: newLeaf,
			roots: pki.Pool(newRoot), extra: map[string]*x509.CertPool{"legacy": pki.Pool(oldRoot)}, serverName: "mqtt.example",
			want:    []string{"mqtt.example", "new inter"},
			finding: "which expired on",
			warning: `"legacy" store cannot verify`,
		},
		{
			name: "unrelated certificate dropped", certFile: pki.ChainPEM(leaf, stranger, ca.Intermediate), key: leaf,
			roots: ca.Pool(), serverName: "localhost",
			want:    []string{"localhost", "tlsfront test intermediate"},
			finding: "not on the path",
		},
		{
			name: "combined PEM with the key", certFile: append(pki.ChainPEM(leaf, ca.Intermediate), leaf.KeyPEM()...), key: leaf, combined: true,
			roots: ca.Pool(), serverName: "127.0.0.1",
			want:    []string{"localhost", "tlsfront test intermediate"},
			finding: "nothing missing or extra",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := Source{CertFile: drWrite(t, dir, "cert.pem", tc.certFile, 0o644), Names: []string{tc.serverName}}
			if !tc.combined {
				src.KeyFile = drWrite(t, dir, "key.pem", tc.key.KeyPEM(), 0o600)
			} else if err := os.Chmod(src.CertFile, 0o600); err != nil {
				t.Fatal(err)
			}
			net := &drOffline{}
			v := Verify{Roots: tc.roots, ExtraStores: tc.extra, FetchAIA: true, Fetch: net.fetch}
			if tc.bundle != nil {
				v.BundleDir = filepath.Join(dir, "bundle")
				if err := os.Mkdir(v.BundleDir, 0o755); err != nil {
					t.Fatal(err)
				}
				for name, data := range tc.bundle {
					drWrite(t, v.BundleDir, name, data, 0o644)
				}
			}
			b, err := LoadFile(src, v)
			if err != nil {
				t.Fatalf("LoadFile: %v", err)
			}
			if got := drServed(b); strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("served %q, want %q%s", got, tc.want, drDump(b.Diagnosis))
			}
			if !drHas(b.Diagnosis, SeverityInfo, tc.finding) && !drHas(b.Diagnosis, SeverityOK, tc.finding) {
				t.Errorf("no finding containing %q:%s", tc.finding, drDump(b.Diagnosis))
			}
			if tc.warning != "" && !drHas(b.Diagnosis, SeverityWarn, tc.warning) {
				t.Errorf("no warning containing %q:%s", tc.warning, drDump(b.Diagnosis))
			}
			if tc.warning == "" && len(b.Warnings) > 0 {
				t.Errorf("unexpected warnings %q", b.Warnings)
			}
			if n := net.calls.Load(); n != 0 {
				t.Errorf("fetched %d times; the chain was completable drOffline", n)
			}
			if last := b.Chain[len(b.Chain)-1]; !isSelfSigned(last) {
				t.Errorf("Chain does not end at a root: %s", last.Subject)
			}
			// The proof: a client that trusts only the root and fetches
			// nothing connects to what tlsfront serves.
			if err := drHandshake(t, b.Cert, tc.roots, tc.serverName); err != nil {
				t.Fatalf("client handshake against the served chain: %v", err)
			}
		})
	}

	t.Run("without the doctor the leaf-only file fails clients", func(t *testing.T) {
		pair, err := tls.X509KeyPair(leaf.CertPEM(), leaf.KeyPEM())
		if err != nil {
			t.Fatal(err)
		}
		if err := drHandshake(t, &pair, ca.Pool(), "localhost"); err == nil {
			t.Fatal("a leaf-only chain verified; the completion tests above prove nothing")
		}
	})
}

func TestLoadFileProblems(t *testing.T) {
	ca := pkitest.NewCA(t)
	leaf := ca.Leaf(pki.Options{})
	other := ca.Leaf(pki.Options{})
	expired := ca.Leaf(pki.Options{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	future := ca.Leaf(pki.Options{NotBefore: time.Now().Add(24 * time.Hour), NotAfter: time.Now().Add(48 * time.Hour)})
	aiaLeaf := ca.Leaf(pki.Options{AIA: "http://192.0.2.1/inter.crt"})
	oldInter := drIssue(t, ca.Root, pki.Options{CommonName: "retired inter", IsCA: true,
		NotBefore: time.Now().Add(-400 * 24 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	orphan := drIssue(t, oldInter, pki.Options{CommonName: "orphan.example", DNSNames: []string{"orphan.example"}})
	otherCA := pkitest.NewCA(t)
	foreign := otherCA.Leaf(pki.Options{})
	full := pki.ChainPEM(leaf, ca.Intermediate)

	cases := []struct {
		name     string
		certFile []byte
		keyFile  []byte // nil: no key file written (KeyFile names a missing file)
		names    []string
		want     []error
		blame    string // "cert" or "key": the file the error must name
		msg      string
	}{
		{name: "mismatched key", certFile: full, keyFile: other.KeyPEM(), want: []error{ErrKeyMismatch}, blame: "key", msg: "install the matching pair"},
		{name: "expired leaf", certFile: pki.ChainPEM(expired, ca.Intermediate), keyFile: expired.KeyPEM(), want: []error{ErrExpired}, blame: "cert", msg: "renew it"},
		{name: "not yet valid", certFile: pki.ChainPEM(future, ca.Intermediate), keyFile: future.KeyPEM(), want: []error{ErrNotYetValid}, blame: "cert", msg: "check the clock"},
		{name: "truncated PEM", certFile: full[:len(leaf.CertPEM())/2], keyFile: leaf.KeyPEM(), want: []error{ErrNoCertificate}, blame: "cert", msg: "truncated"},
		{name: "truncated second block", certFile: full[:len(full)-40], keyFile: leaf.KeyPEM(), want: []error{ErrNoCertificate}, blame: "cert", msg: "cut short"},
		{name: "empty file", certFile: []byte{}, keyFile: leaf.KeyPEM(), want: []error{ErrNoCertificate}, blame: "cert", msg: "empty"},
		{name: "cert and key swapped", certFile: leaf.KeyPEM(), keyFile: full, want: []error{ErrNoCertificate}, blame: "cert", msg: "swapped"},
		{name: "wrong SAN", certFile: full, keyFile: leaf.KeyPEM(), names: []string{"broker.example"}, want: []error{ErrNameMismatch}, blame: "cert", msg: `"broker.example" is routed here`},
		{name: "incomplete chain, AIA unreachable", certFile: aiaLeaf.CertPEM(), keyFile: aiaLeaf.KeyPEM(), want: []error{ErrUntrusted}, blame: "cert", msg: "fetching its AIA URL http://192.0.2.1/inter.crt failed"},
		{name: "incomplete chain, no AIA", certFile: leaf.CertPEM(), keyFile: leaf.KeyPEM(), want: []error{ErrUntrusted}, blame: "cert", msg: "names no AIA URL"},
		{name: "untrusted root", certFile: pki.ChainPEM(foreign, otherCA.Intermediate, otherCA.Root), keyFile: foreign.KeyPEM(), want: []error{ErrUntrusted}, blame: "cert", msg: "does not hold"},
		{name: "only path has an expired intermediate", certFile: pki.ChainPEM(orphan, oldInter), keyFile: orphan.KeyPEM(), want: []error{ErrUntrusted, ErrExpired}, blame: "cert", msg: `"retired inter", the issuer of "orphan.example", expired`},
		{name: "key file missing", certFile: full, keyFile: nil, want: []error{fs.ErrNotExist}, blame: "key", msg: "read private key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := Source{CertFile: drWrite(t, dir, "cert.pem", tc.certFile, 0o644), KeyFile: filepath.Join(dir, "key.pem"), Names: tc.names}
			if tc.keyFile != nil {
				drWrite(t, dir, "key.pem", tc.keyFile, 0o600)
			}
			net := &drOffline{}
			b, err := LoadFile(src, Verify{Roots: ca.Pool(), FetchAIA: true, Fetch: net.fetch})
			if err == nil {
				t.Fatalf("LoadFile served %q; want an error", drServed(b))
			}
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("error %q is not %v", err, w)
				}
			}
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not a *FileError", err)
			}
			wantFile := src.CertFile
			if tc.blame == "key" {
				wantFile = src.KeyFile
			}
			if fe.File != wantFile || !strings.HasPrefix(err.Error(), wantFile+": ") {
				t.Errorf("error names %q, want %q: %v", fe.File, wantFile, err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
			for _, key := range [][]byte{tc.keyFile, tc.certFile} {
				if lines := strings.Split(string(key), "\n"); len(lines) > 2 && strings.Contains(string(key), "PRIVATE KEY") && strings.Contains(err.Error(), lines[1][:20]) {
					t.Errorf("error quotes key material: %v", err)
				}
			}
		})
	}
}

// pkcs7DER wraps certificates in a degenerate (certs-only) PKCS#7
// SignedData, as CAs publish .p7c files at AIA URLs.
func drPKCS7(t testing.TB, certs ...*pki.Cert) []byte {
	t.Helper()
	m := func(v any) []byte {
		b, err := asn1.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var all []byte
	for _, c := range certs {
		all = append(all, c.DER...)
	}
	emptySet := m(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true})
	inner := m(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: m(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1})})
	var sd []byte
	sd = append(sd, m(1)...)
	sd = append(sd, emptySet...)
	sd = append(sd, inner...)
	sd = append(sd, m(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: all})...)
	sd = append(sd, emptySet...)
	sdSeq := m(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: sd})
	content := m(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: sdSeq})
	return m(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: append(m(oidSignedData), content...)})
}

func TestAIACompletionAndCache(t *testing.T) {
	ca := pkitest.NewCA(t)
	for _, enc := range []struct {
		name string
		body func() []byte
	}{
		{"DER", func() []byte { return ca.Intermediate.DER }},
		{"PEM", func() []byte { return ca.Intermediate.CertPEM() }},
		{"PKCS7", func() []byte { return drPKCS7(t, ca.Intermediate) }},
	} {
		t.Run(enc.name, func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				if r.URL.Path != "/inter.crt" {
					http.NotFound(w, r)
					return
				}
				w.Write(enc.body())
			}))
			defer srv.Close()
			url := srv.URL + "/inter.crt"
			leaf := ca.Leaf(pki.Options{AIA: url})
			dir := t.TempDir()
			src := Source{CertFile: drWrite(t, dir, "cert.pem", leaf.CertPEM(), 0o644), KeyFile: drWrite(t, dir, "key.pem", leaf.KeyPEM(), 0o600)}
			cache := filepath.Join(dir, "state", "intermediates")
			v := Verify{Roots: ca.Pool(), FetchAIA: true, CacheDir: cache, FetchTimeout: 5 * time.Second}

			b, err := LoadFile(src, v)
			if err != nil {
				t.Fatalf("first load: %v", err)
			}
			if got := drServed(b); len(got) != 2 || got[1] != "tlsfront test intermediate" {
				t.Fatalf("served %q%s", got, drDump(b.Diagnosis))
			}
			if !drHas(b.Diagnosis, SeverityInfo, "its AIA URL "+url) {
				t.Errorf("completion not reported:%s", drDump(b.Diagnosis))
			}
			if n := hits.Load(); n != 1 {
				t.Errorf("AIA server hit %d times, want 1", n)
			}
			if _, err := os.Stat(cachePath(cache, url)); err != nil {
				t.Fatalf("not cached: %v", err)
			}
			if err := drHandshake(t, b.Cert, ca.Pool(), "localhost"); err != nil {
				t.Fatalf("client handshake: %v", err)
			}

			// A restart with the CA unreachable: the cache is enough.
			srv.Close()
			b2, err := LoadFile(src, v)
			if err != nil {
				t.Fatalf("second load with the AIA server gone: %v", err)
			}
			if !drHas(b2.Diagnosis, SeverityInfo, "the AIA cache") {
				t.Errorf("cache use not reported:%s", drDump(b2.Diagnosis))
			}
			if n := hits.Load(); n != 1 {
				t.Errorf("AIA server hit %d times in all, want 1", n)
			}
			if err := drHandshake(t, b2.Cert, ca.Pool(), "localhost"); err != nil {
				t.Fatalf("client handshake after restart: %v", err)
			}

			// Reading the cache is not fetching: it works with fetching off.
			off := v
			off.FetchAIA = false
			if _, err := LoadFile(src, off); err != nil {
				t.Errorf("cache with fetching off: %v", err)
			}

			// Without the cache and without the server, the file cannot be
			// served, and the error says why.
			v.CacheDir = ""
			if _, err := LoadFile(src, v); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), url) {
				t.Errorf("without cache and server: %v; want ErrUntrusted naming the URL", err)
			}
		})
	}

	t.Run("oversized response refused", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write(make([]byte, maxBundleBytes+10))
		}))
		defer srv.Close()
		_, err := HTTPFetch(context.Background(), srv.URL)
		if err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Fatalf("HTTPFetch of a huge body: %v", err)
		}
	})
	t.Run("non-http scheme refused", func(t *testing.T) {
		if _, err := HTTPFetch(context.Background(), "file:///etc/passwd"); err == nil {
			t.Fatal("HTTPFetch fetched a file: URL")
		}
	})
}

func TestDiagnoseServed(t *testing.T) {
	ca := pkitest.NewCA(t)
	leaf := ca.Leaf(pki.Options{})
	bundleDir := t.TempDir()
	drWrite(t, bundleDir, "inter.pem", ca.Intermediate.CertPEM(), 0o644)
	inter2 := drIssue(t, ca.Intermediate, pki.Options{CommonName: "second inter", IsCA: true})
	deepLeaf := drIssue(t, inter2, pki.Options{CommonName: "localhost", DNSNames: []string{"localhost"}})
	oldRoot := drRoot(t, "old root")
	cross := drIssue(t, oldRoot, pki.Options{CommonName: "tlsfront test root", IsCA: true, Key: ca.Root.Key,
		NotBefore: time.Now().Add(-3 * 365 * 24 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	// Only the cross-signature links the root to the old root: make sure
	// it really verifies under the root's key before relying on it.
	if err := ca.Intermediate.Cert.CheckSignatureFrom(cross.Cert); err != nil {
		t.Fatalf("cross-signed root does not issue the intermediate: %v", err)
	}

	cases := []struct {
		name    string
		sent    []*pki.Cert
		bundle  bool
		wantErr error
		sev     Severity
		msg     string
	}{
		{name: "intermediates swapped", sent: []*pki.Cert{deepLeaf, ca.Intermediate, inter2}, sev: SeverityWarn, msg: "out of order"},
		{name: "expired cross-signed root sent", sent: []*pki.Cert{leaf, ca.Intermediate, cross}, sev: SeverityWarn, msg: "which expired on"},
		{name: "leaf only, intermediate known", sent: []*pki.Cert{leaf}, bundle: true, wantErr: ErrUntrusted, sev: SeverityError, msg: "does not send the intermediate"},
		{name: "leaf only, intermediate unknown", sent: []*pki.Cert{leaf}, wantErr: ErrUntrusted, sev: SeverityError, msg: "chain is incomplete"},
		{name: "root included", sent: []*pki.Cert{leaf, ca.Intermediate, ca.Root}, sev: SeverityWarn, msg: "sends the root"},
		{name: "good", sent: []*pki.Cert{leaf, ca.Intermediate}, sev: SeverityOK, msg: "can verify the chain"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{Mode: ModeServed, CertFile: "127.0.0.1:8883", Names: []string{"localhost"}}
			for _, c := range tc.sent {
				in.Certs = append(in.Certs, c.Cert)
			}
			v := Verify{Roots: ca.Pool()}
			if tc.bundle {
				v.BundleDir = bundleDir
			}
			d := Diagnose(context.Background(), in, v)
			err := d.Err()
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("Err() = %v, want %v", err, tc.wantErr)
			}
			if !drHas(d, tc.sev, tc.msg) {
				t.Errorf("no %s finding with %q:%s", tc.sev, tc.msg, drDump(d))
			}
		})
	}
}

func TestExpiryWarnings(t *testing.T) {
	root := drRoot(t, "root")
	shortInter := drIssue(t, root, pki.Options{CommonName: "short inter", IsCA: true, NotAfter: time.Now().Add(30 * 24 * time.Hour)})
	longLeaf := drIssue(t, shortInter, pki.Options{CommonName: "a.example", DNSNames: []string{"a.example"}, NotAfter: time.Now().Add(60 * 24 * time.Hour)})
	inter := drIssue(t, root, pki.Options{CommonName: "inter", IsCA: true})
	soonLeaf := drIssue(t, inter, pki.Options{CommonName: "b.example", DNSNames: []string{"b.example"}, NotAfter: time.Now().Add(5 * 24 * time.Hour)})

	cases := []struct {
		name string
		leaf *pki.Cert
		with *pki.Cert
		msg  string
	}{
		{"intermediate expires before the leaf", longLeaf, shortInter, `the intermediate "short inter" expires on`},
		{"leaf expires soon", soonLeaf, inter, "the leaf expires in 4 days"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Parse(Source{CertFile: "cert.pem"}, pki.ChainPEM(tc.leaf, tc.with), tc.leaf.KeyPEM(), Verify{Roots: pki.Pool(root)})
			if err != nil {
				t.Fatalf("a warning must not stop serving: %v", err)
			}
			found := false
			for _, w := range b.Warnings {
				found = found || strings.Contains(w, tc.msg)
			}
			if !found {
				t.Errorf("warnings %q lack %q", b.Warnings, tc.msg)
			}
		})
	}
}

func TestExamineWithoutKey(t *testing.T) {
	ca := pkitest.NewCA(t)
	leaf := ca.Leaf(pki.Options{})
	dir := t.TempDir()
	p := drWrite(t, dir, "cert.pem", pki.ChainPEM(ca.Intermediate, leaf), 0o644)
	d, err := Examine(context.Background(), Source{CertFile: p}, Verify{Roots: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	if !d.OK || len(d.Chain) != 2 || d.Chain[0].Role != "leaf" || d.Chain[0].Cert.Subject.CommonName != "localhost" {
		t.Fatalf("diagnosis %+v%s", d.Chain, drDump(d))
	}
	if d.Root == nil || d.Root.Cert.Subject.CommonName != "tlsfront test root" {
		t.Errorf("root = %+v", d.Root)
	}
}

func TestParseBundleFormats(t *testing.T) {
	ca := pkitest.NewCA(t)
	leaf := ca.Leaf(pki.Options{})
	p7 := drPKCS7(t, leaf, ca.Intermediate)
	cases := []struct {
		name string
		data []byte
		want int
	}{
		{"PEM with text around", append(append([]byte("subject=CN=localhost\n"), pki.ChainPEM(leaf, ca.Intermediate)...), "trailing\n"...), 2},
		{"PEM with a key in it", append(leaf.CertPEM(), leaf.KeyPEM()...), 1},
		{"DER", leaf.DER, 1},
		{"concatenated DER", append(append([]byte(nil), leaf.DER...), ca.Intermediate.DER...), 2},
		{"PKCS7 DER", p7, 2},
		{"PKCS7 PEM", pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: p7}), 2},
		{"CRLF PEM", []byte(strings.ReplaceAll(string(leaf.CertPEM()), "\n", "\r\n")), 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cs, err := parseBundle(tc.data)
			if err != nil {
				t.Fatal(err)
			}
			if len(cs) != tc.want {
				t.Fatalf("got %d certificates, want %d", len(cs), tc.want)
			}
		})
	}
}

// FuzzParseBundle feeds untrusted bytes (certificate files, bundle folder
// files, AIA responses) to the bundle parser.
func FuzzParseBundle(f *testing.F) {
	ca := pkitest.NewCA(f)
	leaf := ca.Leaf(pki.Options{})
	f.Add(pki.ChainPEM(leaf, ca.Intermediate))
	f.Add(leaf.DER)
	f.Add(drPKCS7(f, leaf, ca.Intermediate))
	f.Add(pki.ChainPEM(leaf)[:100])
	f.Fuzz(func(t *testing.T, data []byte) {
		cs, err := parseBundle(data)
		if err != nil {
			if !errors.Is(err, ErrNoCertificate) {
				t.Fatalf("error %v is not ErrNoCertificate", err)
			}
			if len(cs) != 0 {
				t.Fatal("certificates returned with an error")
			}
			return
		}
		if len(cs) == 0 {
			t.Fatal("no error and no certificate")
		}
		for _, c := range cs {
			if _, err := x509.ParseCertificate(c.Raw); err != nil {
				t.Fatalf("returned a certificate that does not reparse: %v", err)
			}
		}
	})
}
