package certs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/pki/pkitest"
	"github.com/tlsfront/tlsfront/internal/testnet"
	"github.com/tlsfront/tlsfront/report"
)

func TestReloadRefusesAndKeepsServing(t *testing.T) {
	ca := pkitest.NewCA(t)
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
			rec := &reloadRecorder{}
			m := newTestManager(t, ManagerOptions{Files: []FileCert{{ID: "main", CertFile: f.Cert, KeyFile: f.Key}},
				Trust: TrustOptions{CAFile: ca.RootFile()}, RoutedNames: tc.names, Reporter: rec})
			tc.break_(t, f.Dir)
			res := reloadResult(t, m, "main")
			err := res.Err()
			if err == nil || res.Result != Failed {
				t.Fatalf("Reload of a broken renewal = %+v; want failed with an error", res)
			}
			if got := rec.last("main"); got == nil || got.Err == nil {
				t.Errorf("refused reload reported as %+v, want the error", got)
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
			if got := m.Store().Get("main"); got == nil || got.Leaf.SerialNumber.Cmp(good.Cert.SerialNumber) != 0 {
				t.Fatalf("after a failed reload the store serves %v, want the previous certificate", got)
			}
		})
	}
}

func TestReloadOutcomes(t *testing.T) {
	ca := pkitest.NewCA(t)
	f := ca.WriteLeaf(ca.Leaf(pki.Options{}))
	m, err := NewManager(ManagerOptions{Files: []FileCert{{ID: "main", CertFile: f.Cert, KeyFile: f.Key}}, Trust: TrustOptions{CAFile: ca.RootFile()}})
	if err != nil {
		t.Fatal(err)
	}
	selfTests := 0
	m.selfTest = func(b *Bundle, v Verify) error { selfTests++; return SelfTest(b, v) }

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
			var out Outcome
			var err error
			if st.name == "first load" {
				out, err = Reloaded, m.Load(context.Background())
			} else {
				res := reloadResult(t, m, "main")
				out, err = res.Result, res.Err()
			}
			if out != st.want || (st.want != Failed && err != nil) {
				t.Fatalf("load = %s (%v), want %s", out, err, st.want)
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
func ExampleManager_Reload() {
	m, err := NewManager(ManagerOptions{Files: []FileCert{{ID: "mqtt",
		CertFile: "/etc/letsencrypt/live/mqtt.example.com/fullchain.pem",
		KeyFile:  "/etc/letsencrypt/live/mqtt.example.com/privkey.pem"}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	results, _ := m.Reload(context.Background(), "sighup", false)
	for _, r := range results {
		switch r.Result {
		case Reloaded:
			fmt.Println("now serving serial", r.Serial, "until", r.NotAfter)
		case Unchanged:
			fmt.Println("files unchanged")
		case Failed:
			fmt.Println("kept the previous certificate:", r.Error)
		}
	}
}

// newTestManager builds m and loads it, failing the test on error.
func newTestManager(t *testing.T, o ManagerOptions) *Manager {
	t.Helper()
	m, err := NewManager(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

// reloadResult reloads m and returns the result for id.
func reloadResult(t *testing.T, m *Manager, id string) Result {
	t.Helper()
	results, _ := m.Reload(context.Background(), "test", false)
	for _, r := range results {
		if r.ID == id {
			return r
		}
	}
	t.Fatalf("no result for %s in %+v", id, results)
	return Result{}
}

// reloadRecorder keeps the reloads reported.
type reloadRecorder struct {
	report.Nop
	mu      sync.Mutex
	reloads []report.Reload
}

func (r *reloadRecorder) Reloaded(e report.Reload) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reloads = append(r.reloads, e)
}

// last returns the last reload reported for id, nil for none.
func (r *reloadRecorder) last(id string) *report.Reload {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.reloads) - 1; i >= 0; i-- {
		if r.reloads[i].ID == id {
			e := r.reloads[i]
			return &e
		}
	}
	return nil
}

// The start runs the same pipeline as a reload: a key the TLS stack cannot
// use fails the load, and nothing is served.
func TestLoadProvesBeforeServing(t *testing.T) {
	ca := pkitest.NewCA(t)
	f := ca.WriteLeaf(ca.Leaf(pki.Options{Key: insecureRSAKey(t, 512)}))
	m, err := NewManager(ManagerOptions{Files: []FileCert{{ID: "main", CertFile: f.Cert, KeyFile: f.Key}}, Trust: TrustOptions{CAFile: ca.RootFile()}})
	if err != nil {
		t.Fatal(err)
	}
	err = m.Load(context.Background())
	var he *HandshakeError
	if !errors.As(err, &he) || !strings.Contains(err.Error(), "certificates[0] (main)") {
		t.Fatalf("Load = %v, want a handshake error naming certificates[0]", err)
	}
	if len(m.Served()) != 0 {
		t.Fatalf("a certificate that failed its self-test is served")
	}
}

// The trust store is read again on every reload: a renewal from a CA the
// new trust file does not hold is refused, and a broken trust file is
// reported while the previous store stays in force.
func TestReloadRereadsTrust(t *testing.T) {
	ca, other := pkitest.NewCA(t), pkitest.NewCA(t)
	f := ca.WriteLeaf(ca.Leaf(pki.Options{}))
	trust := filepath.Join(t.TempDir(), "roots.pem")
	writeFile(t, trust, mustRead(t, ca.RootFile()))
	rec := &reloadRecorder{}
	m := newTestManager(t, ManagerOptions{Files: []FileCert{{ID: "main", CertFile: f.Cert, KeyFile: f.Key}},
		Trust: TrustOptions{CAFile: trust}, Reporter: rec})

	writeFile(t, trust, []byte("not pem"))
	if res := reloadResult(t, m, TrustCAID); res.Result != Failed || !strings.Contains(res.Error, trust) {
		t.Fatalf("broken trust file: %+v, want failed naming %s", res, trust)
	}
	if got := rec.last(TrustCAID); got == nil || got.Err == nil {
		t.Errorf("broken trust file reported as %+v", got)
	}
	if m.Verify().Roots == nil {
		t.Fatal("a broken trust file emptied the trust store in force")
	}

	writeFile(t, trust, mustRead(t, other.RootFile()))
	ca.WriteLeafTo(f.Dir, ca.Leaf(pki.Options{}))
	if res := reloadResult(t, m, "main"); res.Result != Failed || !errors.Is(res.Err(), ErrUntrusted) {
		t.Fatalf("renewal the new trust store does not verify: %+v, want refused as untrusted", res)
	}
}

// A client CA bundle that cannot be read is reported, not only logged.
func TestReloadReportsClientCAFailure(t *testing.T) {
	ca := pkitest.NewCA(t)
	f := ca.WriteLeaf(ca.Leaf(pki.Options{}))
	clientCA := filepath.Join(t.TempDir(), "clients.pem")
	writeFile(t, clientCA, mustRead(t, ca.RootFile()))
	rec := &reloadRecorder{}
	m := newTestManager(t, ManagerOptions{Files: []FileCert{{ID: "main", CertFile: f.Cert, KeyFile: f.Key}},
		Trust: TrustOptions{CAFile: ca.RootFile()}, ClientCAFile: clientCA, ClientCARequired: true, Reporter: rec})
	writeFile(t, clientCA, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"))
	if res := reloadResult(t, m, ClientCAID); res.Result != Failed {
		t.Fatalf("broken client CA bundle: %+v, want failed", res)
	}
	if got := rec.last(ClientCAID); got == nil || got.Err == nil {
		t.Fatalf("broken client CA bundle reported as %+v, want the error", got)
	}
}

// A reload is bounded in time: an AIA server that never answers cannot
// hang it.
func TestReloadHonoursContext(t *testing.T) {
	ln := testnet.Listen(t)
	testnet.Serve(t, ln, func(c net.Conn) { io.Copy(io.Discard, c) }) // reads, never answers
	ca := pkitest.NewCA(t)
	f := ca.WriteLeaf(ca.Leaf(pki.Options{}))
	m := newTestManager(t, ManagerOptions{Files: []FileCert{{ID: "main", CertFile: f.Cert, KeyFile: f.Key}},
		Trust: TrustOptions{CAFile: ca.RootFile(), FetchAIA: true}})
	leafOnly := ca.Leaf(pki.Options{AIA: "http://" + ln.Addr().String() + "/int.der"})
	writeFile(t, f.Cert, leafOnly.CertPEM())
	writeFile(t, f.Key, leafOnly.KeyPEM())
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan []Result, 1)
	go func() { r, _ := m.Reload(ctx, "admin", false); done <- r }()
	select {
	case results := <-done:
		if results[0].Result != Failed {
			t.Fatalf("reload with an unreachable intermediate: %+v, want failed", results[0])
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reload still running 10s after its context ended")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestManagerWarnsOfShadowedCertificate: two ECDSA certificates for one
// name are logged at load; an RSA one beside them is not, and it is proved
// for the routed name like the others.
func TestManagerWarnsOfShadowedCertificate(t *testing.T) {
	ca := pkitest.NewCA(t)
	files := []FileCert{}
	for _, c := range []struct {
		id  string
		rsa bool
	}{{"ecdsa", false}, {"ecdsa-too", false}, {"rsa", true}} {
		f := ca.WriteLeaf(ca.Leaf(pki.Options{DNSNames: []string{"broker.example.com"}, RSA: c.rsa}))
		files = append(files, FileCert{ID: c.id, CertFile: f.Cert, KeyFile: f.Key})
	}
	var logs testnet.Buffer
	m, err := NewManager(ManagerOptions{Files: files, Trust: TrustOptions{CAFile: ca.RootFile()}, RoutedNames: []string{"broker.example.com"},
		Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if n := strings.Count(out, "certificate not served for a name"); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "certificate=ecdsa-too name=broker.example.com key_type=ECDSA served=ecdsa") {
		t.Fatalf("warning does not name the certificates:\n%s", out)
	}
	for _, id := range []string{"ecdsa", "ecdsa-too", "rsa"} {
		if got := m.routed[id]; !slices.Equal(got, []string{"broker.example.com"}) {
			t.Errorf("routed[%s] = %v: every certificate covering a routed name is proved for it", id, got)
		}
	}
}
