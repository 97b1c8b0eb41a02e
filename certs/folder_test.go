package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
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

// writePair writes a leaf for names (and its chain) into dir/certName and
// its key into dir/keyName, making dir as needed.
func writePair(t *testing.T, ca *pkitest.CA, dir, certName, keyName string, names ...string) *pki.Cert {
	t.Helper()
	leaf := ca.Leaf(pki.Options{DNSNames: names})
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, certName), pki.ChainPEM(leaf, ca.Intermediate))
	writeFile(t, filepath.Join(dir, keyName), leaf.KeyPEM())
	return leaf
}

// certbotPair writes live/<name>/fullchain.pem and privkey.pem for name.
func certbotPair(t *testing.T, ca *pkitest.CA, live, name string) *pki.Cert {
	t.Helper()
	return writePair(t, ca, filepath.Join(live, name), "fullchain.pem", "privkey.pem", name)
}

// serveTLS serves m's certificates on loopback with real TLS and returns
// the address.
func serveTLS(t *testing.T, m *Manager) string {
	t.Helper()
	ln := testnet.Listen(t)
	cfg := m.TLSConfig()
	testnet.Serve(t, ln, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tls.Server(c, cfg).Handshake()
	})
	return ln.Addr().String()
}

// servedSerial dials addr asking for name and returns the serial of the
// leaf served, "" when the handshake fails (no certificate verifies for
// name).
func servedSerial(t *testing.T, ca *pkitest.CA, addr, name string) string {
	t.Helper()
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, ca.ClientConfig(name))
	if err != nil {
		return ""
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
}

func serial(c *pki.Cert) string { return c.Cert.SerialNumber.Text(16) }

// results indexes reload results by ID.
func resultsByID(rs []Result) map[string]Result {
	out := map[string]Result{}
	for _, r := range rs {
		out[r.ID] = r
	}
	return out
}

func TestFolderCertbotLiveServedBySNI(t *testing.T) {
	ca := pkitest.NewCA(t)
	live := t.TempDir()
	writeFile(t, filepath.Join(live, "README"), []byte("This directory contains your keys and certificates.\n"))
	leaves := map[string]*pki.Cert{}
	for _, n := range []string{"a.example.com", "b.example.com", "c.example.com"} {
		leaves[n] = certbotPair(t, ca, live, n)
	}
	m := newTestManager(t, ManagerOptions{Folders: []FolderSource{{Dir: live}}, Trust: TrustOptions{CAFile: ca.RootFile()}})
	if ids := m.Store().IDs(); strings.Join(ids, ",") != "a.example.com,b.example.com,c.example.com" {
		t.Fatalf("IDs = %v, want the three subfolder names", ids)
	}
	addr := serveTLS(t, m)
	for n, leaf := range leaves {
		if got := servedSerial(t, ca, addr, n); got != serial(leaf) {
			t.Errorf("SNI %s served serial %q, want %s", n, got, serial(leaf))
		}
	}
	if got := m.Served()[0].CertFile; got != filepath.Join(live, "a.example.com", "fullchain.pem") {
		t.Errorf("Served()[0].CertFile = %s", got)
	}
}

// kubeSecret writes a Kubernetes secret volume into dir as the kubelet
// does: the files in a ..<timestamp> folder, ..data pointing at it and
// tls.crt/tls.key pointing through ..data. A second call swaps ..data
// atomically and removes the old folder.
func kubeSecret(t *testing.T, ca *pkitest.CA, dir, stamp string, names ...string) *pki.Cert {
	t.Helper()
	data := "..2026_" + stamp
	leaf := writePair(t, ca, filepath.Join(dir, data), "tls.crt", "tls.key", names...)
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(data, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"tls.crt", "tls.key"} {
		if _, err := os.Lstat(filepath.Join(dir, f)); err != nil {
			if err := os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			t.Fatal(err)
		}
	}
	return leaf
}

func TestFolderKubernetesSecrets(t *testing.T) {
	ca := pkitest.NewCA(t)
	t.Run("folder of secrets, ..data swap", func(t *testing.T) {
		root := t.TempDir()
		a1 := kubeSecret(t, ca, filepath.Join(root, "customer-a"), "1", "a.example.com")
		b := kubeSecret(t, ca, filepath.Join(root, "customer-b"), "1", "b.example.com")
		m := newTestManager(t, ManagerOptions{Folders: []FolderSource{{Dir: root}}, Trust: TrustOptions{CAFile: ca.RootFile()}})
		if ids := m.Store().IDs(); strings.Join(ids, ",") != "customer-a,customer-b" {
			t.Fatalf("IDs = %v: the ..-prefixed entries must not be pairs", ids)
		}
		addr := serveTLS(t, m)
		if got := servedSerial(t, ca, addr, "a.example.com"); got != serial(a1) {
			t.Fatalf("a served %q, want %s", got, serial(a1))
		}
		a2 := kubeSecret(t, ca, filepath.Join(root, "customer-a"), "2", "a.example.com")
		res := resultsByID(mustReload(t, m))
		if res["customer-a"].Result != Reloaded || res["customer-b"].Result != Unchanged {
			t.Fatalf("after the ..data swap: a %s, b %s; want reloaded, unchanged", res["customer-a"].Result, res["customer-b"].Result)
		}
		if got := servedSerial(t, ca, addr, "a.example.com"); got != serial(a2) {
			t.Fatalf("after the swap a served %q, want %s", got, serial(a2))
		}
		if got := servedSerial(t, ca, addr, "b.example.com"); got != serial(b) {
			t.Fatalf("b served %q, want %s", got, serial(b))
		}
	})
	t.Run("one secret volume", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "mqtt-tls")
		leaf := kubeSecret(t, ca, dir, "1", "mqtt.example.com")
		m := newTestManager(t, ManagerOptions{Folders: []FolderSource{{Dir: dir}}, Trust: TrustOptions{CAFile: ca.RootFile()}})
		if got := m.Store().Get("mqtt-tls"); got == nil || got.Leaf.SerialNumber.Cmp(leaf.Cert.SerialNumber) != 0 {
			t.Fatalf("IDs %v: want the volume served as mqtt-tls", m.Store().IDs())
		}
	})
}

func mustReload(t *testing.T, m *Manager) []Result {
	t.Helper()
	rs, retry := m.Reload(context.Background(), "test", false)
	if retry {
		t.Fatal("Reload without hold asked for a retry")
	}
	return rs
}

func TestFolderPattern(t *testing.T) {
	ca := pkitest.NewCA(t)
	dir := t.TempDir()
	x := writePair(t, ca, dir, "x.example.com.crt", "x.example.com.key", "x.example.com")
	writePair(t, ca, dir, "y.example.com.crt", "y.example.com.key", "y.example.com")
	writeFile(t, filepath.Join(dir, "notes.txt"), []byte("not a pair"))
	m := newTestManager(t, ManagerOptions{Folders: []FolderSource{{Dir: dir, Cert: "*.crt", Key: "{name}.key", Prefix: "shop"}},
		Trust: TrustOptions{CAFile: ca.RootFile()}})
	if ids := m.Store().IDs(); strings.Join(ids, ",") != "shop/x.example.com,shop/y.example.com" {
		t.Fatalf("IDs = %v", ids)
	}
	if got := servedSerial(t, ca, serveTLS(t, m), "x.example.com"); got != serial(x) {
		t.Fatalf("x served %q, want %s", got, serial(x))
	}
}

func TestFolderSourceValidate(t *testing.T) {
	tests := []struct {
		name string
		f    FolderSource
		want string // in the error; "" for none
	}{
		{name: "auto layout", f: FolderSource{Dir: "/etc/letsencrypt/live"}},
		{name: "pattern", f: FolderSource{Dir: "/certs", Cert: "*.crt", Key: "{name}.key"}},
		{name: "subfolder pattern", f: FolderSource{Dir: "/certs", Cert: "*/cert.pem", Key: "{name}/key.pem"}},
		{name: "combined pem", f: FolderSource{Dir: "/certs", Cert: "*.pem"}},
		{name: "no dir", f: FolderSource{Cert: "*.crt"}, want: "dir: missing"},
		{name: "no star", f: FolderSource{Dir: "/c", Cert: "cert.pem"}, want: "exactly one *"},
		{name: "two stars", f: FolderSource{Dir: "/c", Cert: "*/*.pem"}, want: "exactly one *"},
		{name: "other wildcard", f: FolderSource{Dir: "/c", Cert: "*.cr?"}, want: "only *"},
		{name: "escapes dir", f: FolderSource{Dir: "/c", Cert: "../*.crt"}, want: "under dir"},
		{name: "key without name", f: FolderSource{Dir: "/c", Cert: "*.crt", Key: "key.pem"}, want: "{name}"},
		{name: "key without cert", f: FolderSource{Dir: "/c", Key: "{name}.key"}, want: "needs cert"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.f.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}

// A customer added while serving is served after a reload; one removed
// is no longer served, and the removal is logged.
func TestFolderAddAndRemove(t *testing.T) {
	ca := pkitest.NewCA(t)
	live := t.TempDir()
	a := certbotPair(t, ca, live, "a.example.com")
	certbotPair(t, ca, live, "b.example.com")
	var logs testnet.Buffer
	m := newTestManager(t, ManagerOptions{Folders: []FolderSource{{Dir: live}}, Trust: TrustOptions{CAFile: ca.RootFile()},
		Log: slog.New(slog.NewTextHandler(&logs, nil))})
	addr := serveTLS(t, m)
	if got := servedSerial(t, ca, addr, "new.example.com"); got == serial(a) || got != "" && m.Store().Lookup("new.example.com") != nil {
		t.Fatal("a name not in the folder yet is served its own certificate")
	}

	n := certbotPair(t, ca, live, "new.example.com")
	res := resultsByID(mustReload(t, m))
	if r := res["new.example.com"]; r.Result != Added || r.Serial != serial(n) {
		t.Fatalf("new subfolder: %+v, want added with serial %s", r, serial(n))
	}
	if got := servedSerial(t, ca, addr, "new.example.com"); got != serial(n) {
		t.Fatalf("new.example.com served %q after the reload, want %s", got, serial(n))
	}

	if err := os.RemoveAll(filepath.Join(live, "b.example.com")); err != nil {
		t.Fatal(err)
	}
	res = resultsByID(mustReload(t, m))
	if r := res["b.example.com"]; r.Result != Removed {
		t.Fatalf("removed subfolder: %+v, want removed", r)
	}
	if m.Store().Get("b.example.com") != nil || m.Store().Lookup("b.example.com") != nil {
		t.Fatal("a removed pair is still in the store")
	}
	// The client asking for it gets the default certificate, which does
	// not verify for its name.
	if got := servedSerial(t, ca, addr, "b.example.com"); got != "" {
		t.Fatalf("b.example.com still verifies (serial %s) after its removal", got)
	}
	if !strings.Contains(logs.String(), "certificate removed, no longer served") || !strings.Contains(logs.String(), "certificate=b.example.com") {
		t.Fatalf("no log line for the removal:\n%s", logs.String())
	}
	if got := servedSerial(t, ca, addr, "a.example.com"); got != serial(a) {
		t.Fatalf("a.example.com served %q, want %s", got, serial(a))
	}
}

// One broken pair in a folder of 50 is skipped and reported at the start;
// the other 49 serve, and reloads keep listing it as failed until its
// files are fixed.
func TestFolderBrokenPairDoesNotBlockStart(t *testing.T) {
	ca := pkitest.NewCA(t)
	live := t.TempDir()
	other := ca.Leaf(pki.Options{DNSNames: []string{"x.example"}})
	for i := range 50 {
		certbotPair(t, ca, live, fmt.Sprintf("c%02d.example.com", i))
	}
	broken := filepath.Join(live, "c17.example.com")
	writeFile(t, filepath.Join(broken, "privkey.pem"), other.KeyPEM())
	rec := &reloadRecorder{}
	m := newTestManager(t, ManagerOptions{Folders: []FolderSource{{Dir: live}}, Trust: TrustOptions{CAFile: ca.RootFile()}, Reporter: rec})
	if n := len(m.Store().IDs()); n != 49 {
		t.Fatalf("%d served, want 49", n)
	}
	if got := rec.last("c17.example.com"); got == nil || !errors.Is(got.Err, ErrKeyMismatch) || got.Trigger != "start" {
		t.Fatalf("broken pair reported as %+v, want its key mismatch at start", got)
	}
	addr := serveTLS(t, m)
	if got := servedSerial(t, ca, addr, "c18.example.com"); got == "" {
		t.Fatal("a good pair beside the broken one is not served")
	}
	r := resultsByID(mustReload(t, m))["c17.example.com"]
	if r.Result != Failed || !errors.Is(r.Err(), ErrKeyMismatch) {
		t.Fatalf("reload lists the broken pair as %+v, want failed", r)
	}
	// Removing it clears its reported failure.
	if err := os.RemoveAll(broken); err != nil {
		t.Fatal(err)
	}
	if r := resultsByID(mustReload(t, m))["c17.example.com"]; r.Result != Removed {
		t.Fatalf("removed broken pair: %+v, want removed", r)
	}
	if got := rec.last("c17.example.com"); got == nil || got.Err != nil {
		t.Fatalf("removed broken pair last reported as %+v, want its failure cleared", got)
	}
	fixed := certbotPair(t, ca, live, "c17.example.com")
	if r := resultsByID(mustReload(t, m))["c17.example.com"]; r.Result != Added {
		t.Fatalf("fixed pair: %+v, want added", r)
	}
	if got := servedSerial(t, ca, addr, "c17.example.com"); got != serial(fixed) {
		t.Fatalf("fixed pair served %q, want %s", got, serial(fixed))
	}
}

// A listed certificate that fails still fails the start: it was asked
// for by name.
func TestListedBrokenCertificateFailsStart(t *testing.T) {
	ca := pkitest.NewCA(t)
	live := t.TempDir()
	certbotPair(t, ca, live, "a.example.com")
	f := ca.WriteLeaf(ca.Leaf(pki.Options{}))
	writeFile(t, f.Key, ca.Leaf(pki.Options{}).KeyPEM())
	m, err := NewManager(ManagerOptions{Files: []FileCert{{ID: "main", CertFile: f.Cert, KeyFile: f.Key}},
		Folders: []FolderSource{{Dir: live}}, Trust: TrustOptions{CAFile: ca.RootFile()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Load(context.Background()); !errors.Is(err, ErrKeyMismatch) || !strings.Contains(err.Error(), "certificates[0] (main)") {
		t.Fatalf("Load = %v, want the listed certificate's key mismatch", err)
	}
}

// A reload after one pair of 500 changed reads and proves that pair only.
func TestFolderReloadChecksOnlyChangedPairs(t *testing.T) {
	ca := pkitest.NewCA(t)
	live := t.TempDir()
	for i := range 500 {
		certbotPair(t, ca, live, fmt.Sprintf("c%03d.example.com", i))
	}
	m, err := NewManager(ManagerOptions{Folders: []FolderSource{{Dir: live}}, Trust: TrustOptions{CAFile: ca.RootFile()}})
	if err != nil {
		t.Fatal(err)
	}
	var selfTests atomic.Int64
	prove := m.selfTest
	m.selfTest = func(b *Bundle, v Verify) error { selfTests.Add(1); return prove(b, v) }
	if err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := selfTests.Load(); n != 500 {
		t.Fatalf("%d self-tests at the start, want 500", n)
	}

	selfTests.Store(0)
	if rs := mustReload(t, m); countOutcome(rs, Unchanged) != 500 || selfTests.Load() != 0 {
		t.Fatalf("reload with nothing changed: %d unchanged, %d self-tests; want 500, 0", countOutcome(rs, Unchanged), selfTests.Load())
	}
	renewed := certbotPair(t, ca, live, "c123.example.com")
	rs := mustReload(t, m)
	if n := selfTests.Load(); n != 1 {
		t.Fatalf("%d self-tests after one pair changed, want 1", n)
	}
	if countOutcome(rs, Reloaded) != 1 || countOutcome(rs, Unchanged) != 499 || resultsByID(rs)["c123.example.com"].Result != Reloaded {
		t.Fatalf("results: %d reloaded, %d unchanged; want c123 reloaded, 499 unchanged", countOutcome(rs, Reloaded), countOutcome(rs, Unchanged))
	}
	if got := m.Store().Lookup("c123.example.com"); got.Leaf.SerialNumber.Cmp(renewed.Cert.SerialNumber) != 0 {
		t.Fatal("the renewed pair is not served")
	}
	// The same bytes written again: the stats change, the content hash
	// does not; nothing is proved again.
	selfTests.Store(0)
	certFile := filepath.Join(live, "c123.example.com", "fullchain.pem")
	writeFile(t, certFile, mustRead(t, certFile))
	if rs := mustReload(t, m); countOutcome(rs, Unchanged) != 500 || selfTests.Load() != 0 {
		t.Fatalf("same bytes rewritten: %d unchanged, %d self-tests; want 500, 0", countOutcome(rs, Unchanged), selfTests.Load())
	}
}

func countOutcome(rs []Result, o Outcome) int {
	n := 0
	for _, r := range rs {
		if r.Result == o {
			n++
		}
	}
	return n
}

// The routed-name check holds for folder pairs: a renewal that drops a
// routed name is refused, and a removal that would leave one uncovered
// keeps the pair serving.
func TestFolderRoutedNameCoverage(t *testing.T) {
	ca := pkitest.NewCA(t)
	live := t.TempDir()
	leaf := certbotPair(t, ca, live, "broker.example.com")
	certbotPair(t, ca, live, "other.example.com")
	m := newTestManager(t, ManagerOptions{Folders: []FolderSource{{Dir: live}}, Trust: TrustOptions{CAFile: ca.RootFile()},
		RoutedNames: []string{"broker.example.com"}})
	addr := serveTLS(t, m)

	writePair(t, ca, filepath.Join(live, "broker.example.com"), "fullchain.pem", "privkey.pem", "elsewhere.example.com")
	r := resultsByID(mustReload(t, m))["broker.example.com"]
	if r.Result != Failed || !errors.Is(r.Err(), ErrNameMismatch) {
		t.Fatalf("renewal without the routed name: %+v, want refused with ErrNameMismatch", r)
	}
	if got := servedSerial(t, ca, addr, "broker.example.com"); got != serial(leaf) {
		t.Fatalf("after the refused renewal broker served %q, want the previous %s", got, serial(leaf))
	}

	if err := os.RemoveAll(filepath.Join(live, "broker.example.com")); err != nil {
		t.Fatal(err)
	}
	r = resultsByID(mustReload(t, m))["broker.example.com"]
	if r.Result != Failed || !strings.Contains(r.Error, "only certificate") {
		t.Fatalf("removing the only cover of a routed name: %+v, want refused", r)
	}
	if got := servedSerial(t, ca, addr, "broker.example.com"); got != serial(leaf) {
		t.Fatalf("after the refused removal broker served %q, want %s", got, serial(leaf))
	}
}

// The Manager proves each kind of key with handshakes once, and refuses
// every certificate of a kind the TLS stack cannot use.
func TestKeyProver(t *testing.T) {
	ca := pkitest.NewCA(t)
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var p keyProver
	for _, tc := range []struct {
		name    string
		b       *Bundle
		wantErr string
	}{
		{name: "p256", b: leafWithKey(t, ca, p256Key(t))},
		{name: "p256 again, proven", b: leafWithKey(t, ca, p256Key(t))},
		{name: "p224", b: leafWithKey(t, ca, p224), wantErr: "P-224"},
		{name: "p224 again", b: leafWithKey(t, ca, p224), wantErr: "P-224"},
		{name: "rsa 512", b: leafWithKey(t, ca, insecureRSAKey(t, 512)), wantErr: "too small"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := p.selfTest(tc.b, Verify{Roots: ca.Pool()})
			var he *HandshakeError
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (!errors.As(err, &he) || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("selfTest = %v, want %q", err, tc.wantErr)
			}
		})
	}
	if len(p.proven) != 1 || !p.proven["ECDSA P-256"] {
		t.Fatalf("proven = %v, want only ECDSA P-256", p.proven)
	}
}

func TestStoreUpdateSwapsOnce(t *testing.T) {
	ca := pkitest.NewCA(t)
	bundle := func(name string) *Bundle {
		leaf := ca.Leaf(pki.Options{DNSNames: []string{name}})
		b, err := Parse(Source{CertFile: name}, pki.ChainPEM(leaf, ca.Intermediate), leaf.KeyPEM(), Verify{Roots: ca.Pool()})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	s := NewStore()
	s.Update([]Entry{{"a", bundle("a.example")}, {"b", bundle("b.example")}, {"c", bundle("c.example")}}, nil)
	before := s.cur.Load()
	s.Update([]Entry{{"d", bundle("d.example")}, {"a", bundle("a.example")}}, []string{"b", "nope"})
	if s.cur.Load() == before {
		t.Fatal("no new table published")
	}
	if ids := strings.Join(s.IDs(), ","); ids != "a,c,d" {
		t.Fatalf("IDs = %s, want a,c,d", ids)
	}
	if s.Lookup("b.example") != nil || s.Lookup("d.example") == nil || s.Lookup("a.example") != s.Get("a") {
		t.Fatal("name index not rebuilt")
	}
}

// ReloadChanged checks only the pairs the given paths touch; additions
// and removals are found anyway, and a full Reload finds the rest.
func TestReloadChangedChecksTouchedPairs(t *testing.T) {
	ca := pkitest.NewCA(t)
	real := t.TempDir()
	for i := range 20 {
		certbotPair(t, ca, real, fmt.Sprintf("c%02d.example.com", i))
	}
	// The folder is configured through a symlink; events come with real
	// paths.
	live := filepath.Join(t.TempDir(), "live")
	if err := os.Symlink(real, live); err != nil {
		t.Fatal(err)
	}
	m, err := NewManager(ManagerOptions{Folders: []FolderSource{{Dir: live}}, Trust: TrustOptions{CAFile: ca.RootFile()}})
	if err != nil {
		t.Fatal(err)
	}
	var selfTests atomic.Int64
	prove := m.selfTest
	m.selfTest = func(b *Bundle, v Verify) error { selfTests.Add(1); return prove(b, v) }
	if err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	selfTests.Store(0)
	a := certbotPair(t, ca, real, "c03.example.com")
	b := certbotPair(t, ca, real, "c04.example.com")
	added := certbotPair(t, ca, real, "new.example.com")
	if err := os.RemoveAll(filepath.Join(real, "c05.example.com")); err != nil {
		t.Fatal(err)
	}
	rs, _ := m.ReloadChanged(context.Background(), "watch", false, []string{filepath.Join(real, "c03.example.com", "fullchain.pem")})
	res := resultsByID(rs)
	if res["c03.example.com"].Result != Reloaded || res["c03.example.com"].Serial != serial(a) {
		t.Errorf("touched pair: %+v, want reloaded", res["c03.example.com"])
	}
	if res["c04.example.com"].Result != Unchanged {
		t.Errorf("untouched pair: %+v, want taken as unchanged", res["c04.example.com"])
	}
	if res["new.example.com"].Result != Added || res["c05.example.com"].Result != Removed {
		t.Errorf("added %+v, removed %+v: additions and removals are found without events", res["new.example.com"], res["c05.example.com"])
	}
	if n := selfTests.Load(); n != 2 {
		t.Errorf("%d self-tests, want 2 (the touched pair and the new one)", n)
	}
	if r := resultsByID(mustReload(t, m))["c04.example.com"]; r.Result != Reloaded || r.Serial != serial(b) {
		t.Errorf("full reload: %+v, want the untouched change found", r)
	}
	if got := m.Store().Lookup("new.example.com"); got == nil || got.Leaf.SerialNumber.Cmp(added.Cert.SerialNumber) != 0 {
		t.Error("the added pair is not served")
	}
}

// With a pattern in the folder itself, an event on one file touches that
// pair only.
func TestReloadChangedPattern(t *testing.T) {
	ca := pkitest.NewCA(t)
	dir := t.TempDir()
	writePair(t, ca, dir, "x.crt", "x.key", "x.example.com")
	writePair(t, ca, dir, "y.crt", "y.key", "y.example.com")
	m := newTestManager(t, ManagerOptions{Folders: []FolderSource{{Dir: dir, Cert: "*.crt", Key: "{name}.key"}}, Trust: TrustOptions{CAFile: ca.RootFile()}})
	x := writePair(t, ca, dir, "x.crt", "x.key", "x.example.com")
	writePair(t, ca, dir, "y.crt", "y.key", "y.example.com")
	rs, _ := m.ReloadChanged(context.Background(), "watch", false, []string{filepath.Join(dir, "x.key")})
	res := resultsByID(rs)
	if res["x"].Result != Reloaded || res["x"].Serial != serial(x) || res["y"].Result != Unchanged {
		t.Fatalf("x %+v, y %+v; want x reloaded, y untouched", res["x"], res["y"])
	}
}

// A folder that cannot be read at a reload keeps its pairs serving, and
// says so; a folder pair whose ID a listed certificate has is refused.
func TestFolderUnreadableAndClashingIDs(t *testing.T) {
	ca := pkitest.NewCA(t)
	base := t.TempDir()
	live := filepath.Join(base, "live")
	a := certbotPair(t, ca, live, "a.example.com")
	certbotPair(t, ca, live, "main")
	f := ca.WriteLeaf(ca.Leaf(pki.Options{}))
	rec := &reloadRecorder{}
	m := newTestManager(t, ManagerOptions{Files: []FileCert{{ID: "main", CertFile: f.Cert, KeyFile: f.Key}},
		Folders: []FolderSource{{Dir: live}}, Trust: TrustOptions{CAFile: ca.RootFile()}, Reporter: rec})
	if got := rec.last("main"); got == nil || got.Err == nil || !strings.Contains(got.Err.Error(), "taken") {
		t.Fatalf("clashing folder pair reported as %+v, want refused: its ID is taken", got)
	}
	if got := m.Store().Get("main"); got == nil || got.Source.CertFile != f.Cert {
		t.Fatal("the listed certificate lost its ID to a folder pair")
	}

	if err := os.Rename(live, filepath.Join(base, "elsewhere")); err != nil {
		t.Fatal(err)
	}
	res := resultsByID(mustReload(t, m))
	if r := res[FolderSource{Dir: live}.ID()]; r.Result != Failed || !errors.Is(r.Err(), os.ErrNotExist) {
		t.Fatalf("unreadable folder: %+v, want failed", r)
	}
	if _, ok := res["a.example.com"]; !ok || m.Store().Get("a.example.com") == nil {
		t.Fatal("the pairs of an unreadable folder were dropped")
	}
	if got := servedSerial(t, ca, serveTLS(t, m), "a.example.com"); got != serial(a) {
		t.Fatalf("a.example.com served %q, want %s", got, serial(a))
	}
}
