package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/certs/redisstore"
	"github.com/tlsfront/tlsfront/internal/redistest"
	"github.com/tlsfront/tlsfront/report"
)

// deps records the redis dependency's reported states.
type deps struct {
	report.Nop
	ch chan error
}

func (d deps) Dependency(e report.Dependency) { d.ch <- e.Err }

// TestWatch: an outage is reported once, its end once with OnReturn
// called, and Watch closes the Storage when its context ends.
func TestWatch(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv, redisstore.Options{})
	d := deps{ch: make(chan error, 100)}
	returned := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, redisstore.WatchOptions{Every: 50 * time.Millisecond, Reporter: d,
			OnReturn: func(context.Context) { returned <- struct{}{} }})
	}()
	next := func(what string, wantErr bool) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case err := <-d.ch:
				if (err != nil) == wantErr {
					return
				}
			case <-deadline:
				t.Fatalf("no report of redis %s", what)
			}
		}
	}
	next("up", false)
	srv.Stop()
	next("down", true)
	select {
	case err := <-d.ch:
		if err == nil {
			t.Fatal("reported up while redis is stopped")
		}
		t.Fatalf("outage reported twice: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	srv.Restart()
	next("back", false)
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("OnReturn not called")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if err := s.Lock(context.Background(), "after-watch"); err == nil {
		t.Fatal("Lock after Watch ended: want an error from the closed Storage")
	}
}
