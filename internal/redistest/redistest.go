package redistest

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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
	testnet.Missing(t, "redis-server", "apt-get install redis-server")
	return ""
}

// Sentinel is a redis-server on a loopback TCP port watched by one
// Redis Sentinel, also on loopback, under the master name Master.
type Sentinel struct {
	// Master is the name the sentinel knows the server by.
	Master string
	// Addr is the sentinel's host:port; MasterAddr the server's.
	Addr, MasterAddr string
}

// StartSentinel runs a redis-server and a sentinel watching it, each on
// a free loopback port, and returns once the sentinel reports the
// server as master (within 10s, or the test fails). Both are killed at
// cleanup. TCP, not unix sockets: a sentinel hands clients the master's
// IP and port.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	bin := binary(t)
	dir := t.TempDir()
	ports := testnet.FreePorts(t, 2)
	masterPort, sentinelPort := ports[0], ports[1]
	start := func(args ...string) *testnet.Buffer { return testnet.Run(t, exec.Command(bin, args...)).Out }
	start("--port", strconv.Itoa(masterPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	// A sentinel rewrites its config file, so it gets one of its own.
	conf := filepath.Join(dir, "sentinel.conf")
	err := os.WriteFile(conf, []byte(fmt.Sprintf(
		"port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor tlsfront 127.0.0.1 %d 1\n",
		sentinelPort, dir, masterPort)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	out := start(conf, "--sentinel")
	s := &Sentinel{
		Master:     "tlsfront",
		Addr:       net.JoinHostPort("127.0.0.1", strconv.Itoa(sentinelPort)),
		MasterAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(masterPort)),
	}
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !masterKnown(s) {
		if time.Now().After(deadline) {
			t.Fatalf("sentinel at %s does not report master %s:\n%s", s.Addr, s.MasterAddr, out.String())
		}
		<-tick.C
	}
	return s
}

// masterKnown asks the sentinel for the master's address and checks the
// master answers PING.
func masterKnown(s *Sentinel) bool {
	c, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("SENTINEL get-master-addr-by-name " + s.Master + "\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 256)
	n, _ := c.Read(buf)
	_, port, _ := net.SplitHostPort(s.MasterAddr)
	if !strings.Contains(string(buf[:n]), "\r\n"+port+"\r\n") {
		return false
	}
	mc, err := net.DialTimeout("tcp", s.MasterAddr, time.Second)
	if err != nil {
		return false
	}
	defer mc.Close()
	mc.SetDeadline(time.Now().Add(time.Second))
	mc.Write([]byte("PING\r\n"))
	n, _ = mc.Read(buf)
	return string(buf[:n]) == "+PONG\r\n"
}

// TLSFiles are the PEM files of a TLS redis-server: its certificate
// chain and key, and the CA that client certificates must chain to.
type TLSFiles struct {
	Cert, Key, CA string
}

// StartTLS runs a redis-server that accepts only TLS, with client
// certificates required (Redis's default), on a free loopback port, and
// returns its host:port once it accepts TLS connections with cfg (a
// client config that trusts it and has a client certificate; within
// 10s, or the test fails). It is killed at cleanup.
func StartTLS(t testing.TB, files TLSFiles, cfg *tls.Config) string {
	t.Helper()
	bin := binary(t)
	port := testnet.FreePort(t)
	cmd := exec.Command(bin,
		"--port", "0",
		"--tls-port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--tls-cert-file", files.Cert,
		"--tls-key-file", files.Key,
		"--tls-ca-cert-file", files.CA,
		"--save", "", "--appendonly", "no", "--dir", t.TempDir(),
	)
	proc := testnet.Run(t, cmd)
	out := proc.Out
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, cfg)
		if err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			c.Write([]byte("PING\r\n"))
			buf := make([]byte, 7)
			n, _ := c.Read(buf)
			c.Close()
			if string(buf[:n]) == "+PONG\r\n" {
				return addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not answer TLS on %s: %v\n%s", addr, err, out.String())
		}
		select {
		case <-proc.Exited:
			t.Fatalf("redis-server exited:\n%s", out.String())
		case <-tick.C:
		}
	}
}
