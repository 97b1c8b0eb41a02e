package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The hostile suite: what attackers and broken clients do to tlsfront,
// from many loopback addresses, with bounded loads, asserting what a good
// client sees. A guard must never make things worse than no guard.

// silentSockets opens n connections, one from each of n loopback
// addresses starting at 127.<base>.0.1, that send nothing. They are
// closed when the test ends.
func silentSockets(t *testing.T, addr string, base, n int) []net.Conn {
	t.Helper()
	var out []net.Conn
	for i := range n {
		src := net.IPv4(127, byte(base), byte(i/250), byte(i%250+1))
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("silent socket %d from %s: %v", i, src, err)
		}
		out = append(out, c)
	}
	t.Cleanup(func() {
		for _, c := range out {
			c.Close()
		}
	})
	return out
}

// goodClients makes n handshakes from src and returns how many succeeded.
func goodClients(t *testing.T, addr, src string, n int, cfg *tls.Config) int {
	t.Helper()
	ok := 0
	for range n {
		d := &tls.Dialer{NetDialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}, Config: cfg}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := d.DialContext(ctx, "tcp", addr)
		cancel()
		if err == nil {
			ok++
			c.Close()
		}
	}
	return ok
}

// 600 sockets that send nothing, from 600 addresses, once held every
// handshake slot for 10 s and denied everyone, the exempt health check
// included. Now they hold none, and neither do sockets that sent the start
// of a ClientHello and stopped.
func TestHostileSilentSockets(t *testing.T) {
	if testing.Short() {
		t.Skip("hostile suite")
	}
	for _, tt := range []struct {
		name string
		send []byte
	}{
		{"silent", nil},
		{"half a hello", []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00}}, // a 512-byte record, 2 bytes of it
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newMonFixture(t)
			ta := startApp(t, f.args("--probe-disabled", "--no-watch", "--max-handshakes", "64")...)
			addr := ta.Addr("main")
			for _, c := range silentSockets(t, addr, 10, 600) {
				if _, err := c.Write(tt.send); err != nil {
					t.Fatal(err)
				}
			}
			for _, src := range []string{"127.0.0.1", "127.200.0.1"} { // exempt, and not
				if ok := goodClients(t, addr, src, 50, f.ca.ClientConfig("localhost")); ok < 50 {
					t.Errorf("good client from %s: %d of 50 handshakes with 600 %s sockets open", src, ok, tt.name)
				}
			}
		})
	}
}

// A sustained trickle of silent sockets from 250 addresses, while good
// clients connect: they succeed at least 99 % of the time.
func TestHostileSustainedSilentSockets(t *testing.T) {
	if testing.Short() {
		t.Skip("hostile suite")
	}
	f := newMonFixture(t)
	ta := startApp(t, f.args("--probe-disabled", "--no-watch", "--max-handshakes", "32", "--client-hello-timeout", "1s")...)
	addr := ta.Addr("main")
	// 70 silent sockets a second, round robin over 250 addresses, each
	// left open until the end: the attack measured in the field.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var opened atomic.Int64
	wg.Go(func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		tick := time.NewTicker(time.Second / 70)
		defer tick.Stop()
		for i := range 70 * 4 { // at most 4 s
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			src := net.IPv4(127, 11, 0, byte(i%250+1))
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: time.Second}
			if c, err := d.Dial("tcp", addr); err == nil {
				held = append(held, c)
				opened.Add(1)
			}
		}
		<-stop
	})
	// Good clients come at 50 a second while the trickle goes on.
	ok := 0
	pace := time.NewTicker(20 * time.Millisecond)
	for range 150 {
		<-pace.C
		ok += goodClients(t, addr, "127.201.0.1", 1, f.ca.ClientConfig("localhost"))
	}
	pace.Stop()
	close(stop)
	wg.Wait()
	if ok < 149 {
		t.Errorf("good client: %d of 150 handshakes (%d silent sockets opened meanwhile), want at least 99%%", ok, opened.Load())
	}
	t.Logf("good client: %d of 150 handshakes; %d silent sockets opened meanwhile", ok, opened.Load())
}

// A reconnect storm that also leaves idle sockets open: limits on are
// never worse for well-behaved clients than limits off.
func TestHostileStallStormLimitsNeverWorse(t *testing.T) {
	if testing.Short() {
		t.Skip("hostile suite")
	}
	f := newMonFixture(t)
	run := func(limits string) int {
		ta := startApp(t, f.args("--probe-disabled", "--no-watch", "--limits="+limits)...)
		addr := ta.Addr("main")
		for a := range 16 {
			for range 40 {
				silentSockets(t, addr, 20+a, 1)
			}
		}
		return goodClients(t, addr, "127.202.0.1", 100, f.ca.ClientConfig("localhost"))
	}
	off, on := run("false"), run("true")
	if on < off {
		t.Errorf("well-behaved clients: %d/100 with limits on, %d/100 with them off", on, off)
	}
}

// A hostile certificate path (a FIFO, a symlink to /dev/zero, a 50 MB
// file) is refused with a message naming it, the last good certificate
// keeps serving, and SIGTERM still exits.
func TestHostileCertificatePaths(t *testing.T) {
	if testing.Short() {
		t.Skip("hostile suite")
	}
	f := newMonFixture(t)
	p := startTLSFront(t, "--listen", "127.0.0.1:0", "--backend", f.backend, "--cert", f.files.Cert, "--key", f.files.Key,
		"--trust-ca", f.root, "--probe-disabled", "--no-watch")
	rssBefore := rssKB(t, p.cmd.Process.Pid)
	for _, tc := range []struct {
		name  string
		plant func(path string) error
		says  string
	}{
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o600) }, "not a regular file"},
		{"symlink to /dev/zero", func(p string) error { return os.Symlink("/dev/zero", p) }, "not a regular file"},
		{"50 MB file", func(p string) error {
			fh, err := os.Create(p)
			if err != nil {
				return err
			}
			defer fh.Close()
			return fh.Truncate(50 << 20)
		}, "more than the 1048576 allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			good, err := os.ReadFile(f.files.Cert)
			if err != nil {
				t.Fatal(err)
			}
			os.Remove(f.files.Cert)
			if err := tc.plant(f.files.Cert); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Remove(f.files.Cert); os.WriteFile(f.files.Cert, good, 0o600) })
			req, _ := http.NewRequest(http.MethodPost, "http://"+p.admin+"/reload", nil)
			req.Header.Set("Content-Type", "application/json")
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				t.Fatalf("POST /reload with a %s at the certificate path: %v", tc.name, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(body), f.files.Cert) || !strings.Contains(string(body), tc.says) {
				t.Fatalf("reload = %d %s; want 500 naming %s and saying %q", resp.StatusCode, body, f.files.Cert, tc.says)
			}
			c, err := tls.Dial("tcp", p.addrs["main"], f.ca.ClientConfig("localhost"))
			if err != nil {
				t.Fatalf("the last good certificate stopped serving: %v", err)
			}
			c.Close()
		})
	}
	if grew := rssKB(t, p.cmd.Process.Pid) - rssBefore; grew > 8<<10 {
		t.Errorf("RSS grew by %d KB across the hostile reloads", grew)
	}
	// Whatever the reloads did, SIGTERM exits within the grace period.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		p.exited <- err
		if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 0) {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("tlsfront did not exit 20s after SIGTERM")
	}
}

// rssKB is a process's resident memory, from /proc.
func rssKB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
