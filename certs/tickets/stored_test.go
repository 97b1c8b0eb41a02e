package tickets_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/tlsfront/tlsfront/certs/redisstore"
	"github.com/tlsfront/tlsfront/certs/tickets"
	"github.com/tlsfront/tlsfront/internal/redistest"
)

func stored(t *testing.T, st certmagic.Storage, s tickets.Schedule) *tickets.Stored {
	t.Helper()
	src, err := tickets.NewStored(st, tickets.StoredOptions{Schedule: s})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func storedKeys(t *testing.T, st certmagic.Storage) int {
	t.Helper()
	b, err := st.Load(context.Background(), tickets.DefaultStorageKey)
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Keys []json.RawMessage }
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return len(v.Keys)
}

// TestStoredOnRedis: two instances, each with its own Redis connection,
// make one key between them, rotate once per period whoever asks first,
// and resume each other's tickets throughout.
func TestStoredOnRedis(t *testing.T) {
	srv := redistest.Start(t)
	open := func() *redisstore.Storage {
		s, err := redisstore.Open(srv.URL, redisstore.Options{LockPoll: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	ra, rb := open(), open()
	sched := tickets.Schedule{Period: time.Hour, Keep: 1}
	srcA, srcB := stored(t, ra, sched), stored(t, rb, sched)
	clk := newClock(epochStart())
	ctx := context.Background()

	// Both ask at once with nothing stored: one key is made.
	var wg sync.WaitGroup
	var firstA, firstB []tickets.Key
	wg.Go(func() { firstA, _, _ = srcA.Keys(ctx, clk.Now()) })
	wg.Go(func() { firstB, _, _ = srcB.Keys(ctx, clk.Now()) })
	wg.Wait()
	if len(firstA) != 1 || len(firstB) != 1 || firstA[0] != firstB[0] {
		t.Fatalf("instances disagree on the first key: %d and %d keys", len(firstA), len(firstB))
	}

	f := newFleet(t)
	ma, mb := manager(t, srcA, clk, 0), manager(t, srcB, clk, 0)
	a, b := f.instance(t, ma, clk), f.instance(t, mb, clk)
	ticket := &firstTicket{}
	f.connect(t, a, ticket, clk, tls.VersionTLS13)

	clk.Add(time.Hour)
	wg.Go(func() { refresh(t, ma) })
	wg.Go(func() { refresh(t, mb) })
	wg.Wait()
	if n := storedKeys(t, ra); n != 2 {
		t.Fatalf("%d keys stored after one rotation by two instances, want 2", n)
	}
	if !f.connect(t, b, ticket, clk, tls.VersionTLS13) {
		t.Fatal("ticket from before the rotation did not resume on the other instance")
	}
	fresh := tls.NewLRUClientSessionCache(2)
	f.connect(t, b, fresh, clk, tls.VersionTLS13)
	if !f.connect(t, a, fresh, clk, tls.VersionTLS13) {
		t.Fatal("ticket made with the new key did not resume on the other instance")
	}

	clk.Add(time.Hour)
	refresh(t, ma, mb)
	if n := storedKeys(t, ra); n != 2 {
		t.Fatalf("%d keys stored with keep 1, want 2", n)
	}
	if f.connect(t, b, ticket, clk, tls.VersionTLS13) {
		t.Fatal("ticket resumed after its key was dropped")
	}

	// After a pause of the whole fleet, old keys are not revived.
	clk.Add(10 * time.Hour)
	keys, _, err := srcA.Keys(ctx, clk.Now())
	if err != nil || len(keys) != 1 {
		t.Fatalf("after a long pause: %d keys, %v; want only a new one", len(keys), err)
	}
	refresh(t, ma, mb)

	// With Redis gone, a refresh fails and the keys in force stay.
	srv.Stop()
	if _, err := ma.Refresh(ctx); err == nil {
		t.Fatal("refresh with redis stopped succeeded")
	}
	during := tls.NewLRUClientSessionCache(2)
	f.connect(t, a, during, clk, tls.VersionTLS13)
	if !f.connect(t, b, during, clk, tls.VersionTLS13) {
		t.Fatal("no resumption across instances while redis is down")
	}
}

// TestStoredFileSurvivesRestart: one instance with its keys in a folder
// resumes, after a restart, the tickets it issued before.
func TestStoredFileSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	f := newFleet(t)
	clk := newClock(epochStart())
	sched := tickets.Schedule{Period: time.Hour, Keep: 2}
	before := f.instance(t, manager(t, stored(t, &certmagic.FileStorage{Path: dir}, sched), clk, 0), clk)
	cache := tls.NewLRUClientSessionCache(2)
	f.connect(t, before, cache, clk, tls.VersionTLS13)
	after := f.instance(t, manager(t, stored(t, &certmagic.FileStorage{Path: dir}, sched), clk, 0), clk)
	if !f.connect(t, after, cache, clk, tls.VersionTLS13) {
		t.Fatal("not resumed after a restart")
	}
}

func TestStoredRejectsBadState(t *testing.T) {
	st := &certmagic.FileStorage{Path: t.TempDir()}
	ctx := context.Background()
	for _, tc := range []struct{ name, data string }{
		{"not json", "{"},
		{"short key", `{"keys":[{"created":"2026-01-01T00:00:00Z","key":"AAAA"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := st.Store(ctx, tickets.DefaultStorageKey, []byte(tc.data)); err != nil {
				t.Fatal(err)
			}
			if _, _, err := stored(t, st, tickets.Schedule{}).Keys(ctx, time.Now()); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
