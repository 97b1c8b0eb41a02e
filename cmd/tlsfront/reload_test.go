package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/certs"
	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/pki/pkitest"
	"github.com/tlsfront/tlsfront/internal/testnet"
	"github.com/tlsfront/tlsfront/report"
)

// noClientRate turns off the per-client connection rate limit: these tests
// make many handshakes from one address on purpose, and the limiter has
// its own tests.
const noClientRate = "--client-rate=0"

// reloadFixture is a CA, its root on disk and the client side of the
// tests.
type reloadFixture struct {
	ca   *pkitest.CA
	root string
}

func newReloadFixture(t *testing.T) *reloadFixture {
	ca := pkitest.NewCA(t)
	return &reloadFixture{ca: ca, root: ca.RootFile()}
}

func (f *reloadFixture) dial(addr string) (*tls.Conn, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: f.ca.ClientConfig("localhost")}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*tls.Conn), nil
}

// serial is the serial of the certificate a new handshake gets.
func (f *reloadFixture) serial(addr string) (string, error) {
	c, err := f.dial(addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Text(16), nil
}

func serialOf(c *pki.Cert) string { return c.Cert.SerialNumber.Text(16) }

// waitSerial makes new handshakes until one is served want, for up to 5 s.
func (f *reloadFixture) waitSerial(t *testing.T, addr, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var got string
	var err error
	for time.Now().Before(deadline) {
		if got, err = f.serial(addr); err == nil && got == want {
			return
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
	t.Fatalf("new handshakes still get serial %s (err %v) 5s after the renewal, want %s", got, err, want)
}

// echoRoundTrip sends msg through c and checks it comes back.
func echoRoundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write on open connection: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo on open connection = %q, %v; want %q", buf, err, msg)
	}
}

// hammer makes back-to-back handshakes from two goroutines until stop is
// called, at most maxHandshakes or for 20 s in all. count says how many
// were made so far; stop returns that and every failure.
func (f *reloadFixture) hammer(addr string) (count func() int64, stop func() (int64, []error)) {
	const maxHandshakes = 4000
	done := make(chan struct{})
	var (
		n    atomic.Int64
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	limit := time.Now().Add(20 * time.Second)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n.Load() < maxHandshakes && time.Now().Before(limit) {
				select {
				case <-done:
					return
				default:
				}
				c, err := f.dial(addr)
				n.Add(1)
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					continue
				}
				c.Close()
			}
		}()
	}
	var once sync.Once
	return n.Load, func() (int64, []error) {
		once.Do(func() { close(done) })
		wg.Wait()
		return n.Load(), errs
	}
}

// waitCount waits until count reaches at least want, for up to 10 s.
func waitCount(t *testing.T, count func() int64, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for count() < want {
		if time.Now().After(deadline) {
			t.Fatalf("only %d handshakes in 10s, want %d", count(), want)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with a deadline
	}
}

// atomicWrite writes data to a temporary file next to path and renames it
// over path, as most renewal tools do.
func atomicWrite(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func writePEM(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func mustMkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

// layout is how a deployment puts certificate files on disk and how its
// renewal replaces them.
type layout struct {
	cert, key string
	renew     func(t *testing.T, leaf *pki.Cert)
}

// plainFiles: dir/cert.pem and dir/key.pem, replaced by write.
func plainFiles(f *reloadFixture, dir string, first *pki.Cert, write func(t *testing.T, path string, data []byte)) layout {
	files := f.ca.WriteLeafTo(dir, first)
	return layout{cert: files.Cert, key: files.Key, renew: func(t *testing.T, leaf *pki.Cert) {
		// Certificate first, then the key, as two separate writes: in
		// between, the pair does not match.
		write(t, files.Cert, pki.ChainPEM(leaf, f.ca.Intermediate))
		write(t, files.Key, leaf.KeyPEM())
	}}
}

// kubernetesSecret lays out a secret volume: dir/tls.crt -> ..data/tls.crt,
// ..data -> ..<timestamp>/, renewed by a new timestamp folder and a rename
// of a new ..data_tmp symlink over ..data.
func kubernetesSecret(t *testing.T, f *reloadFixture, dir string, first *pki.Cert) layout {
	gen := 0
	publish := func(t *testing.T, leaf *pki.Cert) {
		gen++
		ts := fmt.Sprintf("..2026_11_23_06_00_%02d.%d", gen, 100+gen)
		mustMkdir(t, filepath.Join(dir, ts))
		writePEM(t, filepath.Join(dir, ts, "tls.crt"), pki.ChainPEM(leaf, f.ca.Intermediate))
		writePEM(t, filepath.Join(dir, ts, "tls.key"), leaf.KeyPEM())
		old, _ := os.Readlink(filepath.Join(dir, "..data"))
		mustSymlink(t, ts, filepath.Join(dir, "..data_tmp"))
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		if old != "" {
			os.RemoveAll(filepath.Join(dir, old))
		}
	}
	publish(t, first)
	mustSymlink(t, "..data/tls.crt", filepath.Join(dir, "tls.crt"))
	mustSymlink(t, "..data/tls.key", filepath.Join(dir, "tls.key"))
	return layout{cert: filepath.Join(dir, "tls.crt"), key: filepath.Join(dir, "tls.key"), renew: publish}
}

// certbotLive lays out certbot's live/ symlinks into archive/, renewed by
// writing fullchainN.pem and privkeyN.pem and re-pointing the links
// (unlink, then symlink: not atomic).
func certbotLive(t *testing.T, f *reloadFixture, dir string, first *pki.Cert) layout {
	live, archive := filepath.Join(dir, "live", "mqtt.example"), filepath.Join(dir, "archive", "mqtt.example")
	mustMkdir(t, live)
	mustMkdir(t, archive)
	gen := 0
	publish := func(t *testing.T, leaf *pki.Cert) {
		gen++
		chain, key := fmt.Sprintf("fullchain%d.pem", gen), fmt.Sprintf("privkey%d.pem", gen)
		writePEM(t, filepath.Join(archive, chain), pki.ChainPEM(leaf, f.ca.Intermediate))
		writePEM(t, filepath.Join(archive, key), leaf.KeyPEM())
		for link, target := range map[string]string{"fullchain.pem": chain, "privkey.pem": key} {
			p := filepath.Join(live, link)
			os.Remove(p)
			mustSymlink(t, filepath.Join("..", "..", "archive", "mqtt.example", target), p)
		}
	}
	publish(t, first)
	return layout{cert: filepath.Join(live, "fullchain.pem"), key: filepath.Join(live, "privkey.pem"), renew: publish}
}

// postReload calls POST /reload and decodes the answer.
func postReload(t *testing.T, ta *testApp) (int, certs.ReloadReport) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Post("http://"+ta.Admin()+"/reload", "application/json", nil)
	if err != nil {
		t.Fatalf("POST /reload: %v", err)
	}
	defer resp.Body.Close()
	var out certs.ReloadReport
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("POST /reload answer: %v", err)
	}
	return resp.StatusCode, out
}

func findResult(t *testing.T, r certs.ReloadReport, id string) certs.Result {
	t.Helper()
	for _, c := range r.Certificates {
		if c.ID == id {
			return c
		}
	}
	t.Fatalf("no %q in POST /reload answer %+v", id, r)
	return certs.Result{}
}

func TestHotReload(t *testing.T) {
	sighup := func(t *testing.T, ta *testApp) {
		// Without a handler installed, SIGHUP would end the test binary.
		ta.WaitLog("reloading on SIGHUP", 5*time.Second)
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	post := func(t *testing.T, ta *testApp) {
		code, resp := postReload(t, ta)
		if code != http.StatusOK || !resp.OK || findResult(t, resp, "main").Result != certs.Reloaded {
			t.Fatalf("POST /reload = %d %+v, want 200 and main reloaded", code, resp)
		}
	}
	tests := []struct {
		name    string
		layout  func(t *testing.T, f *reloadFixture, dir string, first *pki.Cert) layout
		trigger func(t *testing.T, ta *testApp) // nil: the file watch
	}{
		{name: "watch atomic rename", layout: func(t *testing.T, f *reloadFixture, dir string, first *pki.Cert) layout {
			return plainFiles(f, dir, first, atomicWrite)
		}},
		{name: "watch kubernetes ..data swap", layout: kubernetesSecret},
		{name: "watch certbot live symlinks", layout: certbotLive},
		{name: "watch in-place rewrite cert then key", layout: func(t *testing.T, f *reloadFixture, dir string, first *pki.Cert) layout {
			return plainFiles(f, dir, first, writePEM)
		}},
		{name: "SIGHUP", trigger: sighup, layout: func(t *testing.T, f *reloadFixture, dir string, first *pki.Cert) layout {
			return plainFiles(f, dir, first, writePEM)
		}},
		{name: "POST /reload", trigger: post, layout: func(t *testing.T, f *reloadFixture, dir string, first *pki.Cert) layout {
			return plainFiles(f, dir, first, writePEM)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newReloadFixture(t)
			first, next := f.ca.Leaf(pki.Options{}), f.ca.Leaf(pki.Options{})
			l := tc.layout(t, f, t.TempDir(), first)
			args := []string{"--listen", "127.0.0.1:0", "--backend", testnet.Echo(t), "--cert", l.cert, "--key", l.key, "--trust-ca", f.root, "--reload-debounce", "50ms", noClientRate}
			if tc.trigger != nil {
				args = append(args, "--no-watch")
			}
			ta := startApp(t, args...)
			if tc.trigger == nil {
				ta.WaitLog("watching certificate files", 5*time.Second)
			}
			addr := ta.Addr("main")

			open, err := f.dial(addr)
			if err != nil {
				t.Fatal(err)
			}
			defer open.Close()
			if got := open.ConnectionState().PeerCertificates[0].SerialNumber.Text(16); got != serialOf(first) {
				t.Fatalf("served serial %s, want the first certificate's %s", got, serialOf(first))
			}
			echoRoundTrip(t, open, "before the renewal")

			// Handshakes run before, across and after the swap.
			count, stop := f.hammer(addr)
			waitCount(t, count, 20)
			l.renew(t, next)
			if tc.trigger != nil {
				tc.trigger(t, ta)
			}
			f.waitSerial(t, addr, serialOf(next))
			waitCount(t, count, count()+20)
			n, errs := stop()
			if len(errs) > 0 {
				t.Fatalf("%d of %d handshakes failed during the swap, first: %v\nlogs:\n%s", len(errs), n, errs[0], ta.Logs())
			}
			if n == 0 {
				t.Fatal("no handshake was made during the swap")
			}
			t.Logf("%d handshakes during the swap, none failed", n)

			echoRoundTrip(t, open, "after the renewal")
			if got := open.ConnectionState().PeerCertificates[0].SerialNumber.Text(16); got != serialOf(first) {
				t.Fatalf("open connection's certificate changed to %s", got)
			}
			if !strings.Contains(ta.Logs(), "certificate reloaded") {
				t.Fatalf("no reload logged:\n%s", ta.Logs())
			}
		})
	}
}

// reloadEvent is one reload reported.
type reloadEvent struct {
	id  string
	err error
}

// reloadTap sends every reported reload to a channel.
type reloadTap struct {
	report.Nop
	events chan<- reloadEvent
}

func (r reloadTap) Reloaded(e report.Reload) {
	// Reporting must not block the reload; the buffer is far larger than
	// any test needs.
	select {
	case r.events <- reloadEvent{e.ID, e.Err}:
	default:
	}
}

// recordReloads taps every reported reload into events.
func recordReloads(events chan<- reloadEvent) appOptions {
	return appOptions{tap: reloadTap{events: events}}
}

func waitReloadEvent(t *testing.T, events <-chan reloadEvent) reloadEvent {
	t.Helper()
	select {
	case ev := <-events:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no onReload call within 5s")
		return reloadEvent{}
	}
}

func TestRejectedRenewalKeepsServing(t *testing.T) {
	f := newReloadFixture(t)
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		break_ func(t *testing.T, cert, key string)
		is     error  // errors.Is target for the hook's error; nil to skip
		says   string // in the reported error
	}{
		{name: "mismatched key", is: certs.ErrKeyMismatch, says: "key.pem", break_: func(t *testing.T, cert, key string) {
			writePEM(t, cert, pki.ChainPEM(f.ca.Leaf(pki.Options{}), f.ca.Intermediate))
		}},
		{name: "expired", is: certs.ErrExpired, says: "expired", break_: func(t *testing.T, cert, key string) {
			f.ca.WriteLeafTo(filepath.Dir(cert), f.ca.Leaf(pki.Options{NotBefore: time.Now().Add(-72 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}))
		}},
		{name: "not yet valid", is: certs.ErrNotYetValid, says: "not valid yet", break_: func(t *testing.T, cert, key string) {
			f.ca.WriteLeafTo(filepath.Dir(cert), f.ca.Leaf(pki.Options{NotBefore: time.Now().Add(24 * time.Hour)}))
		}},
		{name: "truncated pem", is: certs.ErrNoCertificate, says: "cert.pem", break_: func(t *testing.T, cert, key string) {
			writePEM(t, cert, pki.ChainPEM(f.ca.Leaf(pki.Options{}))[:200])
		}},
		{name: "wrong SAN for a routed name", is: certs.ErrNameMismatch, says: "localhost", break_: func(t *testing.T, cert, key string) {
			f.ca.WriteLeafTo(filepath.Dir(cert), f.ca.Leaf(pki.Options{DNSNames: []string{"elsewhere.example"}}))
		}},
		{name: "incomplete chain", is: certs.ErrUntrusted, says: "cert.pem", break_: func(t *testing.T, cert, key string) {
			leaf := f.ca.Leaf(pki.Options{})
			writePEM(t, cert, leaf.CertPEM())
			writePEM(t, key, leaf.KeyPEM())
		}},
		{name: "certificate path is a directory", says: "cert.pem", break_: func(t *testing.T, cert, key string) {
			os.Remove(cert)
			mustMkdir(t, cert)
		}},
		{name: "key is a dangling symlink", is: os.ErrNotExist, says: "key.pem", break_: func(t *testing.T, cert, key string) {
			os.Remove(key)
			mustSymlink(t, filepath.Join(filepath.Dir(key), "deleted.pem"), key)
		}},
		{name: "key the TLS stack cannot use", says: "P-224", break_: func(t *testing.T, cert, key string) {
			f.ca.WriteLeafTo(filepath.Dir(cert), f.ca.Leaf(pki.Options{Key: p224}))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			first := f.ca.Leaf(pki.Options{})
			files := f.ca.WriteLeaf(first)
			cfgFile := filepath.Join(t.TempDir(), "tlsfront.yaml")
			backend := testnet.Echo(t)
			writePEM(t, cfgFile, []byte(fmt.Sprintf(`
trust: {ca_file: %q}
certificates:
  - {name: main, cert: %q, key: %q}
listeners:
  - name: main
    listen: 127.0.0.1:0
    backend: %q
    protocol: raw
    routes:
      - {sni: [localhost], backend: %q}
reload:
  watch: false
`, f.root, files.Cert, files.Key, backend, backend)))
			events := make(chan reloadEvent, 100)
			ta := startAppWith(t, recordReloads(events), "--config", cfgFile, noClientRate)
			addr := ta.Addr("main")

			tc.break_(t, files.Cert, files.Key)
			code, resp := postReload(t, ta)
			res := findResult(t, resp, "main")
			if code != http.StatusInternalServerError || resp.OK || res.Result != certs.Failed {
				t.Fatalf("POST /reload = %d %+v, want 500 and main failed", code, resp)
			}
			if !strings.Contains(res.Error, tc.says) {
				t.Errorf("reported error %q does not say %q", res.Error, tc.says)
			}
			if res.Serial != serialOf(first) {
				t.Errorf("reported serving serial %s, want the previous %s", res.Serial, serialOf(first))
			}
			ev := waitReloadEvent(t, events)
			if ev.id != "main" || ev.err == nil {
				t.Fatalf("reported reload (%q, %v), want main and the error", ev.id, ev.err)
			}
			if tc.is != nil && !errors.Is(ev.err, tc.is) {
				t.Errorf("onReload error %q does not wrap %v", ev.err, tc.is)
			}
			for range 3 {
				if got, err := f.serial(addr); err != nil || got != serialOf(first) {
					t.Fatalf("after a refused renewal a new handshake got %s, %v; want the previous certificate %s", got, err, serialOf(first))
				}
			}
			if !strings.Contains(ta.Logs(), "certificate reload failed") {
				t.Errorf("refusal not logged:\n%s", ta.Logs())
			}
		})
	}
}

// TestWatchRetriesHalfWrittenPair: a certificate whose key arrives later
// than one quiet period is reported failed once the retry also fails, and
// then reloaded when the key lands.
func TestWatchRetriesHalfWrittenPair(t *testing.T) {
	f := newReloadFixture(t)
	first, next := f.ca.Leaf(pki.Options{}), f.ca.Leaf(pki.Options{})
	files := f.ca.WriteLeaf(first)
	events := make(chan reloadEvent, 100)
	ta := startAppWith(t, recordReloads(events), noClientRate, "--listen", "127.0.0.1:0", "--backend", testnet.Echo(t), "--cert", files.Cert, "--key", files.Key, "--trust-ca", f.root, "--reload-debounce", "30ms")
	ta.WaitLog("watching certificate files", 5*time.Second)
	addr := ta.Addr("main")

	atomicWrite(t, files.Cert, pki.ChainPEM(next, f.ca.Intermediate))
	ev := waitReloadEvent(t, events)
	if !errors.Is(ev.err, certs.ErrKeyMismatch) {
		t.Fatalf("reported reload (%q, %v), want a key mismatch", ev.id, ev.err)
	}
	if !strings.Contains(ta.Logs(), "mid-update, retrying") {
		t.Errorf("the first attempt was not held back as mid-update:\n%s", ta.Logs())
	}
	if got, err := f.serial(addr); err != nil || got != serialOf(first) {
		t.Fatalf("half-written pair: new handshake got %s, %v; want the previous certificate", got, err)
	}
	atomicWrite(t, files.Key, next.KeyPEM())
	f.waitSerial(t, addr, serialOf(next))
	for {
		ev := waitReloadEvent(t, events)
		if ev.id == "main" && ev.err == nil {
			break
		}
	}
}

func TestReloadInterval(t *testing.T) {
	f := newReloadFixture(t)
	first, next := f.ca.Leaf(pki.Options{}), f.ca.Leaf(pki.Options{})
	files := f.ca.WriteLeaf(first)
	ta := startApp(t, noClientRate, "--listen", "127.0.0.1:0", "--backend", testnet.Echo(t), "--cert", files.Cert, "--key", files.Key, "--trust-ca", f.root, "--no-watch", "--reload-interval", "1s")
	f.ca.WriteLeafTo(files.Dir, next)
	f.waitSerial(t, ta.Addr("main"), serialOf(next))
	if !strings.Contains(ta.Logs(), "trigger=interval") {
		t.Fatalf("reload not attributed to the interval:\n%s", ta.Logs())
	}
}

func TestReloadUnchanged(t *testing.T) {
	f := newReloadFixture(t)
	first := f.ca.Leaf(pki.Options{})
	files := f.ca.WriteLeaf(first)
	ta := startApp(t, noClientRate, "--listen", "127.0.0.1:0", "--backend", testnet.Echo(t), "--cert", files.Cert, "--key", files.Key, "--trust-ca", f.root, "--no-watch")
	code, resp := postReload(t, ta)
	if res := findResult(t, resp, "main"); code != http.StatusOK || res.Result != certs.Unchanged || res.Serial != serialOf(first) || res.NotAfter == nil {
		t.Fatalf("POST /reload of unchanged files = %d %+v, want 200, unchanged, serial %s and not_after", code, resp, serialOf(first))
	}
}

func TestStartRefusesKeyTLSCannotUse(t *testing.T) {
	f := newReloadFixture(t)
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	files := f.ca.WriteLeaf(f.ca.Leaf(pki.Options{Key: p224}))
	cfg, err := parseConfig("tlsfront", []string{"--listen", "127.0.0.1:0", "--backend", "127.0.0.1:1", "--cert", files.Cert, "--key", files.Key, "--trust-ca", f.root}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	_, err = newApp(context.Background(), cfg, slog.New(slog.DiscardHandler), appOptions{})
	var he *certs.HandshakeError
	if !errors.As(err, &he) || !strings.Contains(err.Error(), files.Key) {
		t.Fatalf("newApp with a P-224 key = %v, want a self-test handshake error naming %s", err, files.Key)
	}
}

func TestClientAuthReload(t *testing.T) {
	f := newReloadFixture(t)
	oldCA, newCA := pkitest.NewCA(t), pkitest.NewCA(t)
	files := f.ca.WriteLeaf(f.ca.Leaf(pki.Options{}))
	caFile := filepath.Join(t.TempDir(), "clients.pem")
	writePEM(t, caFile, oldCA.Root.CertPEM())
	ta := startApp(t, noClientRate, "--listen", "127.0.0.1:0", "--backend", testnet.Echo(t), "--cert", files.Cert, "--key", files.Key, "--trust-ca", f.root, "--client-ca", caFile, "--no-watch")
	addr := ta.Addr("main")

	clientCert := func(ca *pkitest.CA) *tls.Certificate {
		l := ca.Leaf(pki.Options{DNSNames: []string{"device-7"}})
		return &tls.Certificate{Certificate: [][]byte{l.DER, ca.Intermediate.DER}, PrivateKey: l.Key}
	}
	oldClient, newClient := clientCert(oldCA), clientCert(newCA)
	// connects reports whether a client presenting cert gets its bytes
	// echoed: with TLS 1.3 the server's verdict arrives after the
	// client's handshake has finished.
	connects := func(cert *tls.Certificate) bool {
		cfg := f.ca.ClientConfig("localhost")
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		d := &tls.Dialer{Config: cfg}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "ping"); err != nil {
			return false
		}
		buf := make([]byte, 4)
		_, err = io.ReadFull(c, buf)
		return err == nil && string(buf) == "ping"
	}
	steps := []struct {
		name   string
		rotate []byte
		cert   *tls.Certificate
		want   bool
	}{
		{name: "old CA client connects", cert: oldClient, want: true},
		{name: "no client certificate refused", cert: nil, want: false},
		{name: "new CA client refused before rotation", cert: newClient, want: false},
		{name: "after rotation new CA client connects", rotate: newCA.Root.CertPEM(), cert: newClient, want: true},
		{name: "after rotation old CA client refused", cert: oldClient, want: false},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.rotate != nil {
				atomicWrite(t, caFile, st.rotate)
				code, resp := postReload(t, ta)
				if res := findResult(t, resp, certs.ClientCAID); code != http.StatusOK || res.Result != certs.Reloaded {
					t.Fatalf("POST /reload = %d %+v, want the client CA reloaded", code, resp)
				}
			}
			if got := connects(st.cert); got != st.want {
				t.Fatalf("client connects = %v, want %v", got, st.want)
			}
		})
	}
	t.Run("garbled CA bundle keeps the pool", func(t *testing.T) {
		atomicWrite(t, caFile, []byte("-----BEGIN CERTIFICATE-----\ngarbage"))
		code, resp := postReload(t, ta)
		if res := findResult(t, resp, certs.ClientCAID); code != http.StatusInternalServerError || res.Result != certs.Failed || !strings.Contains(res.Error, caFile) {
			t.Fatalf("POST /reload = %d %+v, want 500 and the CA file named", code, resp)
		}
		if !connects(newClient) {
			t.Fatal("after a refused CA bundle the current CA's client cannot connect")
		}
	})
}

func TestReloadConfig(t *testing.T) {
	f := newReloadFixture(t)
	files := f.ca.WriteLeaf(f.ca.Leaf(pki.Options{}))
	base := []string{"--listen", "127.0.0.1:0", "--backend", "127.0.0.1:1", "--cert", files.Cert, "--key", files.Key}
	tests := []struct {
		name string
		args []string
		yaml string
		err  string
		want func(t *testing.T, c *config)
	}{
		{name: "defaults", want: func(t *testing.T, c *config) {
			if !c.Reload.watch() || c.Reload.Debounce != defaultDebounce || c.Reload.Interval != 0 || c.ClientAuth.Enabled() {
				t.Fatalf("defaults: %+v %+v", c.Reload, c.ClientAuth)
			}
		}},
		{name: "flags", args: []string{"--no-watch", "--reload-debounce", "2s", "--reload-interval", "1h", "--client-ca", "/ca.pem", "--client-cert-optional"}, want: func(t *testing.T, c *config) {
			if c.Reload.watch() || c.Reload.Debounce != 2*time.Second || c.Reload.Interval != time.Hour || c.ClientAuth.CAFile != "/ca.pem" || c.ClientAuth.CertRequired() {
				t.Fatalf("flags: %+v %+v", c.Reload, c.ClientAuth)
			}
		}},
		{name: "yaml", yaml: "reload: {watch: false, debounce: 1s, interval: 30m}\nclient_auth: {ca_file: /ca.pem}\n", want: func(t *testing.T, c *config) {
			if c.Reload.watch() || c.Reload.Debounce != time.Second || c.Reload.Interval != 30*time.Minute || !c.ClientAuth.CertRequired() {
				t.Fatalf("yaml: %+v %+v", c.Reload, c.ClientAuth)
			}
		}},
		{name: "negative debounce", args: []string{"--reload-debounce", "-1s"}, err: "reload.debounce: "},
		{name: "huge debounce", yaml: "reload: {debounce: 5m}\n", err: "reload.debounce: "},
		{name: "negative interval", args: []string{"--reload-interval", "-1m"}, err: "reload.interval: "},
		{name: "tiny interval", args: []string{"--reload-interval", "10ms"}, err: "reload.interval: "},
		{name: "required without ca file", yaml: "client_auth: {required: true}\n", err: "client_auth.required: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{}, base...)
			if tc.yaml != "" {
				p := filepath.Join(t.TempDir(), "c.yaml")
				writePEM(t, p, []byte(tc.yaml))
				args = append(args, "--config", p)
			}
			cfg, err := parseConfig("tlsfront", append(args, tc.args...), io.Discard)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("parseConfig = %v, want an error with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.want(t, cfg)
		})
	}
}
