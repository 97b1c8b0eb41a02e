package redisstore_test

// A fleet member in another process: it shares nothing with the test's
// instances but Redis, so certmagic's in-process challenge map cannot
// help it answer, and it can be killed outright, leaving behind what a
// crashed instance leaves.

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"

	"github.com/tlsfront/tlsfront/certs"
	"github.com/tlsfront/tlsfront/certs/redisstore"
	"github.com/tlsfront/tlsfront/internal/pebbletest"
	"github.com/tlsfront/tlsfront/internal/redistest"
	"github.com/tlsfront/tlsfront/internal/testnet"
)

// helperEnv, when set, holds the helperConfig (as JSON) of a helper
// process.
const helperEnv = "REDISSTORE_TEST_HELPER"

// helperConfig is what a helper process is told.
type helperConfig struct {
	RedisURL string
	CA       string
	// Roots is a PEM file trusting the CA's endpoint; empty means the
	// system roots, enough for a helper that only answers challenges.
	Roots string
	// LockExpiry is its store's; zero means the default.
	LockExpiry time.Duration
	// Manage, if set, is a name the helper obtains a certificate for
	// as soon as it has started.
	Manage string
}

// TestMain runs the test binary as a fleet member when helperEnv is set
// (see runHelper), and the tests otherwise.
func TestMain(m *testing.M) {
	if env := os.Getenv(helperEnv); env != "" {
		var c helperConfig
		err := json.Unmarshal([]byte(env), &c)
		if err == nil {
			err = runHelper(c)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

// runHelper is a fleet member: it starts an ACME manager on the Redis
// and CA that c names, serves its challenge handler on a loopback port,
// prints "addr <host:port>", manages c.Manage if set, and runs until
// its standard input closes.
func runHelper(c helperConfig) error {
	var roots *x509.CertPool
	if c.Roots != "" {
		pem, err := os.ReadFile(c.Roots)
		if err != nil {
			return err
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("no certificate in %s", c.Roots)
		}
	}
	st, err := redisstore.Open(c.RedisURL, redisstore.Options{Prefix: "fleet", LockExpiry: c.LockExpiry})
	if err != nil {
		return err
	}
	defer st.Close()
	a, err := certs.NewACME(certs.ACMEOptions{CA: c.CA, Email: fleetEmail, CARoots: roots, StorageBackend: st})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	if err := a.Start(certs.ChallengeAddrs{HTTP: ln.Addr()}); err != nil {
		return err
	}
	defer a.Stop()
	srv := &http.Server{Handler: a.HTTPChallengeHandler(http.NotFoundHandler()), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	fmt.Printf("addr %s\n", ln.Addr())
	if c.Manage != "" {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if err := a.Manage(ctx, []string{c.Manage}); err != nil {
			return err
		}
	}
	io.Copy(io.Discard, os.Stdin)
	return nil
}

// helper is a running helper process.
type helper struct {
	addr   string // its challenge handler's
	cmd    *exec.Cmd
	exited chan struct{}
}

// startHelper runs runHelper with c in a child process and returns once
// it has printed its address. Closing its standard input at cleanup
// ends it; it is waited for.
func startHelper(t *testing.T, c helperConfig) *helper {
	t.Helper()
	env, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(env))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errOut := &testnet.Buffer{}
	cmd.Stderr = errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{cmd: cmd, exited: make(chan struct{})}
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-h.exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-h.exited
		}
		if t.Failed() {
			t.Logf("helper stderr:\n%s", errOut.String())
		}
	})
	lines := make(chan string, 1)
	go func() {
		defer close(h.exited)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		cmd.Wait()
	}()
	select {
	case l := <-lines:
		addr, ok := strings.CutPrefix(l, "addr ")
		if !ok {
			t.Fatalf("helper said %q", l)
		}
		h.addr = addr
		return h
	case <-h.exited:
		t.Fatalf("helper exited:\n%s", errOut.String())
	case <-time.After(30 * time.Second):
		t.Fatal("helper did not start within 30s")
	}
	return nil
}

// kill ends the helper with SIGKILL, as a crash or the OOM killer
// would: no deferred code runs, so nothing it holds is released. It
// returns once the process is gone.
func (h *helper) kill(t *testing.T) {
	t.Helper()
	if err := h.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("helper still running 10s after SIGKILL")
	}
}

// TestChallengeAnsweredByAnotherProcess: an instance orders a
// certificate while the CA's HTTP-01 request can reach only another
// process, which knows the token from Redis alone.
func TestChallengeAnsweredByAnotherProcess(t *testing.T) {
	srv := redistest.Start(t)
	front := testnet.Listen(t)
	p := pebbletest.Start(t, pebbletest.Options{HTTPPort: port(front), TLSPort: 1})

	helper := startHelper(t, helperConfig{RedisURL: srv.URL, CA: p.DirectoryURL})
	var forwarded atomic.Int64
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: helper.addr})
	serveHTTP(t, front, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		forwarded.Add(1)
		rp.ServeHTTP(w, r)
	}))

	// Its own HTTP listener is one the CA never reaches.
	in := newFleet(t, srv.URL, p, redisstore.Options{Prefix: "fleet"}).start(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	const name = "elsewhere.tlsfront.test"
	if err := in.acme.Manage(ctx, []string{name}); err != nil {
		t.Fatal(err)
	}
	waitServed(t, in.tlsLn.Addr(), name, p.IssuedRoots(t))
	if forwarded.Load() == 0 {
		t.Fatal("the CA's validation never reached the other process")
	}
	t.Logf("validation requests answered by the other process: %d; events %q", forwarded.Load(), in.snapshot())
}

// TestIssuanceOfKilledInstanceFinished: instance A, a process of its
// own, is SIGKILLed while it holds the issuance lock for a name and its
// order waits for validation at the CA. Instances B and C, asked for
// the name afterwards, wait out A's lock, which frees itself, and then
// one of them orders: the CA sees A's abandoned order and exactly one
// more, and one account. The certificate is whole in Redis, both serve
// it, and the lock is gone.
func TestIssuanceOfKilledInstanceFinished(t *testing.T) {
	srv := redistest.Start(t)
	front := testnet.Listen(t)
	p := pebbletest.Start(t, pebbletest.Options{HTTPPort: port(front), TLSPort: 1})
	const name = "killed.tlsfront.test"
	const lockKey = "{fleet}:lock:issue_cert_" + name
	// 3s is the least lock_expiry the configuration takes.
	const expiry = 3 * time.Second
	f := newFleet(t, srv.URL, p, redisstore.Options{Prefix: "fleet", LockExpiry: expiry, LockPoll: 50 * time.Millisecond})
	b, c := f.start(t, 1), f.start(t, 2)

	// The CA's validation requests come to the front. While A lives,
	// they are for its order, and they are held: one arriving proves
	// that A holds the lock and has an order pending. Once A is dead,
	// they fail, and later ones go to B, which reads the token of
	// whichever of B and C ordered from Redis.
	arrived := make(chan struct{}, 1)
	killed := make(chan struct{})
	serveHTTP(t, front, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-killed:
			b.acme.HTTPChallengeHandler(http.NotFoundHandler()).ServeHTTP(w, r)
			return
		default:
		}
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-killed:
		case <-r.Context().Done():
		}
		http.Error(w, "the instance that ordered is gone", http.StatusServiceUnavailable)
	}))

	a := startHelper(t, helperConfig{RedisURL: srv.URL, CA: p.DirectoryURL, Roots: p.RootFile, LockExpiry: expiry, Manage: name})
	select {
	case <-arrived:
	case <-time.After(30 * time.Second):
		t.Fatalf("A's order never reached validation; pebble:\n%s", p.Output())
	}
	rdb := raw(t, srv)
	ctx := ctxT(t, time.Minute)
	tokenA, err := rdb.Get(ctx, lockKey).Result()
	if err != nil {
		t.Fatalf("A is validating without the issuance lock: %v", err)
	}
	a.kill(t)
	killedAt := time.Now()
	close(killed)
	if got := strings.Count(p.Output(), "Added order"); got != 1 {
		t.Fatalf("the CA got %d orders before A died, want A's one", got)
	}

	manageCtx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for _, in := range []*instance{b, c} {
		if err := in.acme.Manage(manageCtx, []string{name}); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing released A's lock: it goes when it expires, and until
	// then neither B nor C orders. The count is read before the lock,
	// so an order counted while A's token was still there was placed
	// under A's lock.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ordering := b.count(certs.EventObtaining) + c.count(certs.EventObtaining)
		v, err := rdb.Get(ctx, lockKey).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
		if v != tokenA {
			break
		}
		if ordering > 0 {
			t.Fatal("B or C ordered while A's lock was still in Redis")
		}
		if time.Since(killedAt) > expiry+5*time.Second {
			t.Fatalf("A's lock still held %v after A died, with a %v expiry", time.Since(killedAt), expiry)
		}
		<-tick.C
	}
	freedAfter := time.Since(killedAt)

	roots := p.IssuedRoots(t)
	leafB := waitServed(t, b.tlsLn.Addr(), name, roots)
	leafC := waitServed(t, c.tlsLn.Addr(), name, roots)
	t.Logf("A's lock freed %v after SIGKILL; B and C serve %v after SIGKILL", freedAfter.Round(time.Millisecond), time.Since(killedAt).Round(time.Millisecond))
	if leafB.SerialNumber.Cmp(leafC.SerialNumber) != 0 {
		t.Errorf("B serves serial %x, C %x: two certificates for one name", leafB.SerialNumber, leafC.SerialNumber)
	}
	stored := storedCert(t, b.store, name, roots)
	if stored.SerialNumber.Cmp(leafB.SerialNumber) != 0 {
		t.Errorf("Redis holds serial %x, B serves %x", stored.SerialNumber, leafB.SerialNumber)
	}

	// The finishing instance (and the other, after finding the
	// certificate in storage) released the lock.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := rdb.Exists(ctx, lockKey).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the issuance lock is still held after the certificate is served")
		}
		<-tick.C
	}

	out := p.Output()
	if got := strings.Count(out, "Added order"); got != 2 {
		t.Errorf("the CA got %d orders, want 2: A's abandoned one and one that finished", got)
	}
	if !strings.Contains(out, "There are now 1 accounts") || strings.Contains(out, "There are now 2 accounts") {
		t.Errorf("the fleet did not keep to the account A registered:\n%s", out)
	}
	ordering := b.count(certs.EventObtaining) + c.count(certs.EventObtaining)
	if ordering == 0 {
		t.Error("neither B nor C reported ordering")
	}
	if ordering > 1 {
		// A failed attempt retried, not a second order (counted above).
		t.Logf("%d obtaining events: B %q, C %q", ordering, b.snapshot(), c.snapshot())
	}
}

// storedCert returns the leaf of the certificate for name in st, after
// checking that its key and metadata are stored with it and that it
// verifies against roots.
func storedCert(t *testing.T, st certmagic.Storage, name string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	keys, err := st.List(ctx, "certificates", true)
	if err != nil {
		t.Fatal(err)
	}
	var crt string
	for _, k := range keys {
		if strings.HasSuffix(k, "/"+name+".crt") {
			if crt != "" {
				t.Fatalf("two certificates for %s in storage: %s and %s", name, crt, k)
			}
			crt = k
		}
	}
	if crt == "" {
		t.Fatalf("no certificate for %s in storage; keys: %q", name, keys)
	}
	base := strings.TrimSuffix(crt, ".crt")
	for _, k := range []string{base + ".key", base + ".json"} {
		if !st.Exists(ctx, k) {
			t.Errorf("%s stored without %s", crt, k)
		}
	}
	pemBytes, err := st.Load(ctx, crt)
	if err != nil {
		t.Fatal(err)
	}
	var chain []*x509.Certificate
	for rest := pemBytes; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", crt, err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		t.Fatalf("%s holds no certificate", crt)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter}); err != nil {
		t.Fatalf("stored certificate %s: %v", crt, err)
	}
	return chain[0]
}
