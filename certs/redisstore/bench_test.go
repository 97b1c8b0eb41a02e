package redisstore_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tlsfront/tlsfront/certs/redisstore"
	"github.com/tlsfront/tlsfront/internal/redistest"
)

// fill stores n names the way certmagic lays them out (certificate,
// key, metadata), directly through a pipeline to keep setup short.
func fill(b *testing.B, srv *redistest.Server, n int) {
	b.Helper()
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: srv.Socket})
	defer c.Close()
	ctx := context.Background()
	p := c.Pipeline()
	for i := range n {
		dir := fmt.Sprintf("certificates/acme-v02.api.letsencrypt.org-directory/d%05d.example.com/d%05d.example.com", i, i)
		for _, ext := range []string{".crt", ".key", ".json"} {
			p.HSet(ctx, "{tlsfront}:v:"+dir+ext, "v", make([]byte, 1500), "m", 0)
			p.ZAdd(ctx, "{tlsfront}:idx", redis.Z{Member: dir + ext})
		}
		if i%1000 == 999 {
			if _, err := p.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if _, err := p.Exec(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkFleetStorage measures, on a Redis holding 10,000 names
// (30,000 keys), what certmagic does per name at start and at each
// renewal check, and the folder listing its storage cleaner does.
func BenchmarkFleetStorage(b *testing.B) {
	srv := redistest.Start(b)
	const names = 10000
	fill(b, srv, names)
	s, err := redisstore.Open(srv.URL, redisstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	key := func(i int) string {
		return fmt.Sprintf("certificates/acme-v02.api.letsencrypt.org-directory/d%05d.example.com/d%05d.example.com.crt", i%names, i%names)
	}
	b.Run("Load", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, err := s.Load(ctx, key(i)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("Exists", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if !s.Exists(ctx, key(i)) {
				b.Fatal("missing")
			}
			i++
		}
	})
	b.Run("Stat", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, err := s.Stat(ctx, key(i)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("LockUnlock", func(b *testing.B) {
		for b.Loop() {
			if err := s.Lock(ctx, "bench"); err != nil {
				b.Fatal(err)
			}
			if err := s.Unlock(ctx, "bench"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ListAll10000Names", func(b *testing.B) {
		for b.Loop() {
			got, err := s.List(ctx, "certificates/acme-v02.api.letsencrypt.org-directory", false)
			if err != nil || len(got) != names {
				b.Fatalf("%d, %v", len(got), err)
			}
		}
	})
}
