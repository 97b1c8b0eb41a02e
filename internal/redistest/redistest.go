package redistest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/internal/testnet"
)

// Server is a running redis-server on a unix socket.
type Server struct {
	// Socket is the path of the unix socket.
	Socket string
	// URL is a go-redis URL for Socket, "unix://<Socket>".
	URL string

	t   testing.TB
	bin string
	dir string
	out *testnet.Buffer

	mu     sync.Mutex
	cmd    *exec.Cmd
	waited chan struct{} // closed when cmd has exited
}

// Start runs redis-server and returns once it accepts connections on its
// socket (within 10s, or the test fails). It is killed at cleanup, and
// its output is logged then if the test failed.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := binary(t)
	// Unix socket paths are limited to about 108 bytes, which a deep
	// t.TempDir can exceed; a short folder under os.TempDir cannot.
	dir, err := os.MkdirTemp("", "redis")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "redis.sock")
	s := &Server{Socket: sock, URL: "unix://" + sock, t: t, bin: bin, dir: dir, out: &testnet.Buffer{}}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("redis-server output:\n%s", s.out.String())
		}
	})
	s.Restart()
	return s
}

// Stop kills the server and waits for it to exit. Clients see their
// connections closed and the socket refuse new ones. Stop is a no-op
// when the server is not running.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.waited
	s.cmd = nil
	// A killed redis leaves its socket file behind; a new one removes
	// it too, but a client must not reach a dead file meanwhile.
	os.Remove(s.Socket)
}

// Restart starts the server again on the same socket, empty (nothing is
// persisted), and waits until it accepts connections. It stops a running
// server first.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command(s.bin,
		"--port", "0",
		"--unixsocket", s.Socket,
		"--unixsocketperm", "700",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
	)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start %s: %v", s.bin, err)
	}
	waited := make(chan struct{})
	go func() { defer close(waited); cmd.Wait() }()
	s.cmd, s.waited = cmd, waited
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if ping(s.Socket) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server did not answer on %s:\n%s", s.Socket, s.out.String())
		}
		select {
		case <-waited:
			s.t.Fatalf("redis-server exited:\n%s", s.out.String())
		case <-tick.C:
		}
	}
}

// ping sends an inline PING and reports whether +PONG came back.
func ping(sock string) bool {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 7)
	n, _ := c.Read(buf)
	return string(buf[:n]) == "+PONG\r\n"
}

// binary returns redis-server (or valkey-server), skipping the test when
// neither is installed; in CI (env CI set) that is a failure.
func binary(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"redis-server", "valkey-server"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "redis-server not found on PATH; install it with: apt-get install redis-server"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
