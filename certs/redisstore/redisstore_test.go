package redisstore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tlsfront/tlsfront/certs/redisstore"
	"github.com/tlsfront/tlsfront/internal/redistest"
	"github.com/tlsfront/tlsfront/internal/testnet"
)

// open returns a Storage on srv, closed at cleanup.
func open(t *testing.T, srv *redistest.Server, o redisstore.Options) *redisstore.Storage {
	t.Helper()
	s, err := redisstore.Open(srv.URL, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// raw is a plain client on srv, for looking behind the Storage's back.
func raw(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: srv.Socket})
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestStorageContract(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Options{})
	ctx := ctxT(t, 30*time.Second)

	files := map[string]string{
		"certificates/ca/a.example/a.example.crt": "cert a",
		"certificates/ca/a.example/a.example.key": "key a",
		"certificates/ca/b.example/b.example.crt": "cert b",
		"acme/ca/users/ops/ops.json":              "user",
		"ocsp/a.example-1234":                     "staple",
		// A sibling whose name extends a folder's: must not show up
		// under "certificates" (the index range is "certificates/").
		"certificates-old": "stray",
	}
	before := time.Now().Truncate(time.Millisecond)
	for k, v := range files {
		if err := s.Store(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("load", func(t *testing.T) {
		for k, v := range files {
			got, err := s.Load(ctx, k)
			if err != nil || string(got) != v {
				t.Errorf("Load(%s) = %q, %v; want %q", k, got, err, v)
			}
		}
		if _, err := s.Load(ctx, "certificates/ca/nope.crt"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("missing key: %v, want fs.ErrNotExist", err)
		}
	})

	t.Run("overwrite", func(t *testing.T) {
		k := "ocsp/a.example-1234"
		if err := s.Store(ctx, k, []byte("newer staple")); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Load(ctx, k); string(got) != "newer staple" {
			t.Errorf("got %q", got)
		}
	})

	t.Run("exists", func(t *testing.T) {
		for _, tc := range []struct {
			key  string
			want bool
		}{
			{"certificates/ca/a.example/a.example.crt", true},
			{"certificates/ca/a.example", true},
			{"certificates", true},
			{"certificates/ca/a.exam", false}, // a prefix, not a folder
			{"nothing", false},
		} {
			if got := s.Exists(ctx, tc.key); got != tc.want {
				t.Errorf("Exists(%s) = %v", tc.key, got)
			}
		}
	})

	t.Run("list", func(t *testing.T) {
		for _, tc := range []struct {
			name      string
			path      string
			recursive bool
			want      []string
		}{
			{"children", "certificates", false, []string{"certificates/ca"}},
			{"children of a folder of folders", "certificates/ca", false, []string{"certificates/ca/a.example", "certificates/ca/b.example"}},
			{"children are files", "certificates/ca/a.example", false, []string{"certificates/ca/a.example/a.example.crt", "certificates/ca/a.example/a.example.key"}},
			{"recursive lists folders and files", "certificates", true, []string{
				"certificates/ca",
				"certificates/ca/a.example",
				"certificates/ca/a.example/a.example.crt",
				"certificates/ca/a.example/a.example.key",
				"certificates/ca/b.example",
				"certificates/ca/b.example/b.example.crt",
			}},
			{"trailing slash", "certificates/ca/b.example/", false, []string{"certificates/ca/b.example/b.example.crt"}},
			{"root", "", false, []string{"acme", "certificates", "certificates-old", "ocsp"}},
			{"a file has no children", "ocsp/a.example-1234", true, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := s.List(ctx, tc.path, tc.recursive)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, tc.want) {
					t.Errorf("got %q\nwant %q", got, tc.want)
				}
			})
		}
		if _, err := s.List(ctx, "nothing/here", true); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("List of a missing folder: %v, want fs.ErrNotExist", err)
		}
	})

	t.Run("stat", func(t *testing.T) {
		ki, err := s.Stat(ctx, "certificates/ca/a.example/a.example.key")
		if err != nil {
			t.Fatal(err)
		}
		if !ki.IsTerminal || ki.Size != int64(len("key a")) || ki.Modified.Before(before) || time.Since(ki.Modified) > time.Minute {
			t.Errorf("file: %+v", ki)
		}
		ki, err = s.Stat(ctx, "certificates/ca")
		if err != nil || ki.IsTerminal {
			t.Errorf("folder: %+v, %v", ki, err)
		}
		if _, err := s.Stat(ctx, "nothing"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("missing: %v", err)
		}
	})

	t.Run("delete", func(t *testing.T) {
		if err := s.Delete(ctx, "certificates/ca/a.example"); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"certificates/ca/a.example/a.example.crt", "certificates/ca/a.example"} {
			if s.Exists(ctx, k) {
				t.Errorf("%s still exists", k)
			}
		}
		if !s.Exists(ctx, "certificates/ca/b.example/b.example.crt") {
			t.Error("sibling deleted")
		}
		if err := s.Delete(ctx, "certificates/ca/a.example"); err != nil {
			t.Errorf("deleting again: %v", err)
		}
		if err := s.Delete(ctx, "certificates-old"); err != nil || s.Exists(ctx, "certificates-old") {
			t.Errorf("delete a file: %v", err)
		}
		if !s.Exists(ctx, "certificates") {
			t.Error("deleting certificates-old took certificates/ with it")
		}
	})
}

// TestListMany crosses the batch size of the index reads.
func TestListMany(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Options{Prefix: "many"})
	ctx := ctxT(t, 60*time.Second)
	const n = 2500
	p := raw(t, srv).Pipeline()
	for i := range n {
		k := "certificates/ca/" + time.Duration(i).String() + ".example/x.crt"
		p.HSet(ctx, "{many}:v:"+k, "v", "x", "m", 0)
		p.ZAdd(ctx, "{many}:idx", redis.Z{Member: k})
	}
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := s.List(ctx, "certificates/ca", false)
	if err != nil || len(got) != n {
		t.Fatalf("%d keys, %v; want %d", len(got), err, n)
	}
	got, err = s.List(ctx, "certificates", true)
	if err != nil || len(got) != 2*n+1 {
		t.Fatalf("recursive: %d keys, %v; want %d", len(got), err, 2*n+1)
	}
	if err := s.Delete(ctx, "certificates"); err != nil {
		t.Fatal(err)
	}
	if keys, _ := raw(t, srv).Keys(ctx, "{many}:*").Result(); len(keys) != 0 {
		t.Fatalf("%d keys left after deleting the folder, e.g. %q", len(keys), keys[0])
	}
}

func TestPrefixesAreSeparate(t *testing.T) {
	srv := redistest.Start(t)
	a := open(t, srv, redisstore.Options{Prefix: "fleet-a"})
	b := open(t, srv, redisstore.Options{Prefix: "fleet-b"})
	ctx := ctxT(t, 10*time.Second)
	if err := a.Store(ctx, "k", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Load(ctx, "k"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("fleet-b sees fleet-a's key: %v", err)
	}
	if err := a.Lock(ctx, "l"); err != nil {
		t.Fatal(err)
	}
	if err := b.Lock(ctx, "l"); err != nil {
		t.Fatalf("fleet-b blocked by fleet-a's lock: %v", err)
	}
}

func TestLockExcludes(t *testing.T) {
	srv := redistest.Start(t)
	// Refreshes every 333ms; the margin (two missed refreshes) absorbs
	// a loaded machine's scheduling delays.
	o := redisstore.Options{LockExpiry: time.Second, LockPoll: 20 * time.Millisecond}
	a, b := open(t, srv, o), open(t, srv, o)
	ctx := ctxT(t, 30*time.Second)

	if err := a.Lock(ctx, "issue_cert_x"); err != nil {
		t.Fatal(err)
	}
	// Held for three and a half expiries: only refreshes keep it.
	short, cancel := context.WithTimeout(ctx, 3500*time.Millisecond)
	defer cancel()
	if err := b.Lock(short, "issue_cert_x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second instance: %v, want it to wait until its deadline", err)
	}
	if ok, err := b.TryLock(ctx, "issue_cert_x"); ok || err != nil {
		t.Fatalf("TryLock of a held lock: %v, %v", ok, err)
	}
	// Another name is free.
	if ok, err := b.TryLock(ctx, "issue_cert_y"); !ok || err != nil {
		t.Fatalf("TryLock of a free lock: %v, %v", ok, err)
	}
	got := make(chan error, 1)
	go func() { got <- b.Lock(ctx, "issue_cert_x") }()
	if err := a.Unlock(ctx, "issue_cert_x"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("waiter did not get the lock after unlock")
	}
	if err := b.Unlock(ctx, "issue_cert_x"); err != nil {
		t.Fatal(err)
	}
}

// TestLockMutualExclusion has several instances increment a counter
// under the lock with a read-modify-write that loses updates without it.
func TestLockMutualExclusion(t *testing.T) {
	srv := redistest.Start(t)
	o := redisstore.Options{LockExpiry: 5 * time.Second, LockPoll: 5 * time.Millisecond}
	ctx := ctxT(t, 60*time.Second)
	var inside atomic.Int32
	const workers, rounds = 3, 10
	errs := make(chan error, workers)
	for range workers {
		s := open(t, srv, o)
		go func() {
			for range rounds {
				if err := s.Lock(ctx, "counter"); err != nil {
					errs <- err
					return
				}
				if inside.Add(1) != 1 {
					errs <- errors.New("two holders at once")
					return
				}
				v, _ := s.Load(ctx, "counter")
				v = append(v, 'x')
				if err := s.Store(ctx, "counter", v); err != nil {
					errs <- err
					return
				}
				inside.Add(-1)
				if err := s.Unlock(ctx, "counter"); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	s := open(t, srv, o)
	if v, _ := s.Load(ctx, "counter"); len(v) != workers*rounds {
		t.Fatalf("counter %d, want %d", len(v), workers*rounds)
	}
}

// TestDeadHolderLockExpires: a lock whose holder stopped refreshing it
// (a crashed instance) is free once its expiry passes.
func TestDeadHolderLockExpires(t *testing.T) {
	srv := redistest.Start(t)
	o := redisstore.Options{LockExpiry: 400 * time.Millisecond, LockPoll: 20 * time.Millisecond}
	s := open(t, srv, o)
	ctx := ctxT(t, 10*time.Second)
	// What a holder leaves behind when it dies: its token and expiry.
	if err := raw(t, srv).Set(ctx, "{tlsfront}:lock:issue_cert_x", "dead-instance", o.LockExpiry).Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.Lock(ctx, "issue_cert_x"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < o.LockExpiry/2 {
		t.Fatalf("got the lock after %v, before the dead holder's expired", d)
	}
	t.Logf("dead holder's lock taken over after %v", time.Since(start))
}

func TestUnlockLeavesOthersLock(t *testing.T) {
	srv := redistest.Start(t)
	o := redisstore.Options{LockExpiry: 10 * time.Second, LockPoll: 20 * time.Millisecond}
	a, b := open(t, srv, o), open(t, srv, o)
	r := raw(t, srv)
	ctx := ctxT(t, 10*time.Second)
	const key = "{tlsfront}:lock:issue_cert_x"

	t.Run("never locked here", func(t *testing.T) {
		if err := a.Lock(ctx, "issue_cert_x"); err != nil {
			t.Fatal(err)
		}
		defer a.Unlock(ctx, "issue_cert_x")
		if err := b.Unlock(ctx, "issue_cert_x"); err == nil {
			t.Fatal("b unlocked a lock it never took")
		}
		if n, _ := r.Exists(ctx, key).Result(); n != 1 {
			t.Fatal("a's lock is gone")
		}
	})
	t.Run("expired and taken by another", func(t *testing.T) {
		if err := a.Lock(ctx, "issue_cert_x"); err != nil {
			t.Fatal(err)
		}
		// As if a's lock had expired and another instance took it.
		if err := r.Set(ctx, key, "other-instance", 10*time.Second).Err(); err != nil {
			t.Fatal(err)
		}
		if err := a.Unlock(ctx, "issue_cert_x"); !errors.Is(err, redisstore.ErrLockLost) {
			t.Fatalf("unlock: %v, want ErrLockLost", err)
		}
		if v, _ := r.Get(ctx, key).Result(); v != "other-instance" {
			t.Fatalf("lock now %q: the other holder's lock was released", v)
		}
	})
}

// TestRedisDownAndBack: with Redis gone, calls fail promptly (no hang)
// and Ping says so; when it is back, the same Storage works again.
func TestRedisDownAndBack(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Options{LockPoll: 20 * time.Millisecond})
	ctx := ctxT(t, 60*time.Second)
	if err := s.Store(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	srv.Stop()

	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"ping", func() error { return s.Ping(ctx) }},
		{"load", func() error { _, err := s.Load(ctx, "k"); return err }},
		{"store", func() error { return s.Store(ctx, "k", []byte("w")) }},
		{"list", func() error { _, err := s.List(ctx, "", true); return err }},
		{"stat", func() error { _, err := s.Stat(ctx, "k"); return err }},
		{"delete", func() error { return s.Delete(ctx, "k") }},
		{"lock", func() error { return s.Lock(ctx, "l") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := tc.call()
			d := time.Since(start)
			t.Logf("failed in %v: %v", d, err)
			if err == nil {
				t.Fatal("no error with redis stopped")
			}
			if errors.Is(err, fs.ErrNotExist) {
				t.Fatal("an outage reads as a missing key")
			}
			if !errors.Is(err, redisstore.ErrUnavailable) {
				t.Fatal("not ErrUnavailable")
			}
			if d > 5*time.Second {
				t.Fatalf("took %v", d)
			}
		})
	}
	if s.Exists(ctx, "k") {
		t.Error("Exists true with redis stopped")
	}

	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for s.Ping(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("still failing 10s after restart: %v", s.Ping(ctx))
		}
		<-tick.C
	}
	if err := s.Store(ctx, "k", []byte("again")); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Load(ctx, "k"); err != nil || !bytes.Equal(v, []byte("again")) {
		t.Fatalf("%q %v", v, err)
	}
	if err := s.Lock(ctx, "l"); err != nil {
		t.Fatal(err)
	}
	if err := s.Unlock(ctx, "l"); err != nil {
		t.Fatal(err)
	}
}

// TestRedisHangs: a Redis that accepts connections and never answers
// (stalled, or a black hole behind a proxy) fails calls within the read
// timeout, times the one retry.
func TestRedisHangs(t *testing.T) {
	ln := testnet.Listen(t)
	testnet.Serve(t, ln, func(c net.Conn) { io.Copy(io.Discard, c) })
	s, err := redisstore.Open("redis://"+ln.Addr().String()+"?read_timeout=200ms", redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := ctxT(t, 30*time.Second)
	start := time.Now()
	_, err = s.Load(ctx, "k")
	d := time.Since(start)
	t.Logf("failed in %v: %v", d, err)
	if !errors.Is(err, redisstore.ErrUnavailable) || d > 2*time.Second {
		t.Fatalf("got %v after %v, want ErrUnavailable within 2s", err, d)
	}
}

func TestOpenURLs(t *testing.T) {
	for _, tc := range []struct {
		name, url string
		ok        bool
	}{
		{"redis", "redis://:pw@127.0.0.1:6379/2", true},
		{"rediss", "rediss://user:pw@127.0.0.1:6380/0?dial_timeout=1s", true},
		{"unix", "unix:///run/redis.sock?db=1", true},
		{"sentinel", "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster", true},
		{"sentinel with db", "rediss+sentinel://:pw@127.0.0.1:26379/mymaster/3", true},
		{"sentinel without master", "redis+sentinel://127.0.0.1:26379", false},
		{"sentinel bad db", "redis+sentinel://127.0.0.1:26379/m/x", false},
		{"sentinel empty host", "redis+sentinel://127.0.0.1:26379,/m", false},
		{"unknown option", "redis://127.0.0.1:6379?colour=blue", false},
		{"other scheme", "http://127.0.0.1:6379", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := redisstore.Open(tc.url, redisstore.Options{})
			if (err == nil) != tc.ok {
				t.Fatalf("Open(%s): %v, want ok %v", tc.url, err, tc.ok)
			}
			if s != nil {
				s.Close()
			}
		})
	}
}

// TestSentinel finds the master through a real sentinel.
func TestSentinel(t *testing.T) {
	sen := redistest.StartSentinel(t)
	s, err := redisstore.Open("redis+sentinel://"+sen.Addr+"/"+sen.Master, redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := ctxT(t, 10*time.Second)
	if err := s.Store(ctx, "k", []byte("through sentinel")); err != nil {
		t.Fatal(err)
	}
	direct, err := redisstore.Open("redis://"+sen.MasterAddr, redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	if v, err := direct.Load(ctx, "k"); err != nil || string(v) != "through sentinel" {
		t.Fatalf("on the master: %q, %v", v, err)
	}
}

func TestOptionsRejected(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    redisstore.Options
	}{
		{"brace in prefix", redisstore.Options{Prefix: "a}b"}},
		{"space in prefix", redisstore.Options{Prefix: "a b"}},
		{"tiny expiry", redisstore.Options{LockExpiry: time.Millisecond}},
		{"negative poll", redisstore.Options{LockPoll: -time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := redisstore.Open("redis://127.0.0.1:6379", tc.o); err == nil {
				s.Close()
				t.Fatal("accepted")
			}
		})
	}
}

func TestCloseReleasesLocks(t *testing.T) {
	srv := redistest.Start(t)
	o := redisstore.Options{LockExpiry: time.Minute, LockPoll: 10 * time.Millisecond}
	a, err := redisstore.Open(srv.URL, o)
	if err != nil {
		t.Fatal(err)
	}
	b := open(t, srv, o)
	ctx := ctxT(t, 10*time.Second)
	if err := a.Lock(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.TryLock(ctx, "x"); !ok || err != nil {
		t.Fatalf("lock of a closed storage still held: %v, %v", ok, err)
	}
	if err := a.Lock(ctx, "y"); err == nil {
		t.Fatal("Lock after Close succeeded")
	}
}

// TestSentinelMasterPasswordFile: through a sentinel to a master that
// requires a password, read from a file.
func TestSentinelMasterPasswordFile(t *testing.T) {
	sen := redistest.StartSentinel(t)
	ctx := ctxT(t, 10*time.Second)
	m := redis.NewClient(&redis.Options{Addr: sen.MasterAddr})
	defer m.Close()
	if err := m.ConfigSet(ctx, "requirepass", "master-secret").Err(); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("master-secret\n"), 0o600)
	for _, tc := range []struct {
		name string
		file string
		ok   bool
	}{
		{"with the password file", pw, true},
		{"without", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := redisstore.Config{URL: "redis+sentinel://" + sen.Addr + "/" + sen.Master, PasswordFile: tc.file}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			s, err := c.Open(nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.Store(ctx, "k", []byte("v")); (err == nil) != tc.ok {
				t.Fatalf("store: %v, want ok %v", err, tc.ok)
			}
		})
	}
}
