package main

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// On SIGTERM with a shutdown delay, /readyz fails at once while new
// clients are still served, then tlsfront drains and stops.
func TestShutdownDelayKeepsAccepting(t *testing.T) {
	f := newMonFixture(t)
	ta := startApp(t, f.args("--probe-disabled", "--no-watch", "--shutdown-delay", "1500ms")...)
	addr := ta.Addr("main")
	ta.cancel()
	eventually(t, "/readyz failing", 5*time.Second, func() bool {
		code, _ := adminDo(t, "GET", "http://"+ta.Admin()+"/readyz", nil)
		return code == http.StatusServiceUnavailable
	})
	c, err := tls.Dial("tcp", addr, f.ca.ClientConfig("localhost"))
	if err != nil {
		t.Fatalf("a new client during the shutdown delay was refused: %v", err)
	}
	c.Close()
	if err := ta.Stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ta.Logs(), "not ready, still accepting") {
		t.Errorf("the delay was not logged:\n%s", ta.Logs())
	}
}

// Under systemd (Type=notify) tlsfront says when it is ready, reloading and
// stopping.
func TestSystemdNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	msgs := make(chan string, 32)
	go func() {
		buf := make([]byte, 512)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	next := func(want string) {
		t.Helper()
		select {
		case m := <-msgs:
			if !strings.HasPrefix(m, want) {
				t.Fatalf("sd_notify %q, want %q", m, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no sd_notify %q", want)
		}
	}
	f := newMonFixture(t)
	ta := startApp(t, f.args("--probe-disabled", "--no-watch")...)
	next("READY=1")
	postReload(t, ta)
	next("RELOADING=1\nMONOTONIC_USEC=")
	next("READY=1")
	ta.Stop()
	next("STOPPING=1")
}

// With systemd socket activation tlsfront serves on the socket it was
// given, named by FileDescriptorName=, instead of binding its own.
func TestSocketActivation(t *testing.T) {
	f := newMonFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	file, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	// systemd sets LISTEN_PID to the service's own pid; a shell that
	// execs tlsfront keeps its pid.
	p := startTLSFrontWith(t, func(cmd *exec.Cmd) {
		args := append([]string{"-c", `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=main exec "$0" "$@"`, cmd.Path}, cmd.Args[1:]...)
		cmd.Path, cmd.Args = "/bin/sh", append([]string{"sh"}, args...)
		cmd.ExtraFiles = []*os.File{file}
	}, "--listen", "127.0.0.1:1", "--backend", f.backend, "--cert", f.files.Cert, "--key", f.files.Key, "--trust-ca", f.root, "--probe-disabled")
	if got := p.addrs["main"]; got != ln.Addr().String() {
		t.Fatalf("listener main on %s, want the passed socket %s", got, ln.Addr())
	}
	c, err := tls.Dial("tcp", ln.Addr().String(), f.ca.ClientConfig("localhost"))
	if err != nil {
		t.Fatalf("handshake on the passed socket: %v", err)
	}
	c.Close()
}

// With reuse_port a second tlsfront binds the same port; when the first
// stops, clients are still served.
func TestReusePortHandOver(t *testing.T) {
	f := newMonFixture(t)
	port := reservePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := []string{"--listen", addr, "--backend", f.backend, "--cert", f.files.Cert, "--key", f.files.Key, "--trust-ca", f.root, "--probe-disabled", "--reuse-port"}
	old := startTLSFront(t, args...)
	startTLSFront(t, args...)
	if err := old.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-old.exited:
		old.exited <- err // for the cleanup
	case <-time.After(15 * time.Second):
		t.Fatal("the old tlsfront did not exit")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 20 {
		d := tls.Dialer{Config: f.ca.ClientConfig("localhost")}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			t.Fatalf("handshake %d after the old tlsfront left: %v", i, err)
		}
		c.Close()
	}
}
