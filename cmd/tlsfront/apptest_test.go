package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/internal/testnet"
)

// testApp is the whole proxy running in the test process, as runServe
// would run it: configuration parsed from args, newApp, serve.
type testApp struct {
	t      testing.TB
	app    *app
	logs   *testnet.Buffer
	cancel context.CancelFunc
	done   chan error // receives serve's result once

	stopOnce sync.Once
	stopErr  error
}

// startApp starts the app with args (flags as on the command line) and
// waits until it serves. The admin listener and the defaults tests need
// (admin on 127.0.0.1:0, a temporary state folder, debug logs, a short
// shutdown grace) come first, so args override them. The app is stopped
// when the test ends.
func startApp(t testing.TB, args ...string) *testApp {
	t.Helper()
	return startAppWith(t, appOptions{}, args...)
}

// startAppWith is startApp with assembly options (a tap on the events).
func startAppWith(t testing.TB, o appOptions, args ...string) *testApp {
	t.Helper()
	logs := &testnet.Buffer{}
	full := append([]string{
		"--admin", "127.0.0.1:0",
		"--state-dir", t.TempDir(),
		"--log-level", "debug",
		"--shutdown-grace", "2s",
	}, args...)
	cfg, err := parseConfig("tlsfront", full, logs)
	if err != nil {
		t.Fatalf("parse config %q: %v", args, err)
	}
	a, err := newApp(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), o)
	if err != nil {
		t.Fatalf("newApp: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ta := &testApp{t: t, app: a, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { ta.done <- a.serve(ctx) }()
	t.Cleanup(func() {
		if err := ta.Stop(); err != nil {
			t.Errorf("app stopped with: %v", err)
		}
	})

	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !a.serving.Load() {
		select {
		case err := <-ta.done:
			ta.done <- err // for Stop
			t.Fatalf("app did not start: %v\nlogs:\n%s", err, logs.String())
		case <-deadline.C:
			t.Fatalf("app not serving after 10s\nlogs:\n%s", logs.String())
		case <-tick.C:
		}
	}
	return ta
}

// Addr is the bound address of the named listener ("main" for --listen,
// "ws" for --ws-listen).
func (ta *testApp) Addr(listener string) string {
	ta.t.Helper()
	// a.addrs is filled before serving starts, which startApp waited for.
	addr, ok := ta.app.addrs[listener]
	if !ok {
		ta.t.Fatalf("no listener %q", listener)
	}
	return addr.String()
}

// Admin is the admin listener's host:port.
func (ta *testApp) Admin() string { return ta.app.cfg.Admin }

// Logs is everything the app logged so far.
func (ta *testApp) Logs() string { return ta.logs.String() }

// WaitLog waits until the logs contain s, or fails the test after d.
func (ta *testApp) WaitLog(s string, d time.Duration) {
	ta.t.Helper()
	deadline := time.Now().Add(d)
	for !bytes.Contains(ta.logs.Bytes(), []byte(s)) {
		if time.Now().After(deadline) {
			ta.t.Fatalf("no %q in the logs after %s:\n%s", s, d, ta.Logs())
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with a deadline
	}
}

// Stop cancels the app and waits for serve to return, returning its error.
// It is safe to call more than once.
func (ta *testApp) Stop() error {
	ta.stopOnce.Do(func() {
		ta.cancel()
		select {
		case ta.stopErr = <-ta.done:
		case <-time.After(15 * time.Second):
			ta.stopErr = fmt.Errorf("serve did not return 15s after cancel")
		}
	})
	return ta.stopErr
}
