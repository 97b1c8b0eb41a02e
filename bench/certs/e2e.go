package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tlsfront/tlsfront/internal/freeport"
	"github.com/tlsfront/tlsfront/internal/procstat"
)

// e2e is what one run of the tlsfront binary measured.
type e2e struct {
	Ready      float64 // exec to /readyz answering 200, seconds
	RSS        int64   // resident memory once ready, bytes
	Served     float64 // one pair rewritten to its new certificate served through the file watch, seconds
	Debounce   time.Duration
	WatchError string
}

// runBinary starts tlsfront on the folder, waits until it is ready,
// rewrites one pair and polls with new handshakes until the new
// certificate is served. The default debounce (500 ms) is part of it.
func runBinary(ctx context.Context, bin, dir string, n, run int) (e2e, error) {
	var out e2e
	tmp, err := os.MkdirTemp("", "bench-certs-e2e")
	if err != nil {
		return out, err
	}
	defer os.RemoveAll(tmp)
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return out, err
	}
	defer backend.Close()
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	ports, err := freeport.Take(2)
	if err != nil {
		return out, err
	}
	admin, listen := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	cfg := filepath.Join(tmp, "tlsfront.yaml")
	err = os.WriteFile(cfg, []byte(fmt.Sprintf(`admin: %s
certificates:
  - dir: %s
trust:
  ca_file: %s
log:
  level: warn
listeners:
  - listen: %s
    backend: %s
`, admin, filepath.Join(dir, "live"), filepath.Join(dir, "root.pem"), listen, backend.Addr())), 0o644)
	if err != nil {
		return out, err
	}
	logf, err := os.Create(filepath.Join(tmp, "tlsfront.log"))
	if err != nil {
		return out, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "--config", cfg, "--state-dir", filepath.Join(tmp, "state"), "--client-rate=0")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return out, err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}()
	cl := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := cl.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return out, fmt.Errorf("tlsfront not ready after 2 minutes; see its log")
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, with a deadline
	}
	out.Ready = time.Since(t0).Seconds()
	out.RSS = rssOf(cmd.Process.Pid)

	// The watch is set up once serving; give it a moment to add its
	// watches (ten thousand folders) before the change.
	time.Sleep(2 * time.Second)
	inter, err := readIntermediate(filepath.Join(dir, "intermediate.pem"))
	if err != nil {
		return out, err
	}
	roots := x509.NewCertPool()
	rootPEM, err := os.ReadFile(filepath.Join(dir, "root.pem"))
	if err != nil {
		return out, err
	}
	roots.AppendCertsFromPEM(rootPEM)
	i := (run*7919 + 1) % n
	t0 = time.Now()
	if err := writePair(dir, inter, i); err != nil {
		return out, err
	}
	want, err := os.ReadFile(filepath.Join(dir, "live", name(i), "fullchain.pem"))
	if err != nil {
		return out, err
	}
	wantLeaf, err := firstCert(want)
	if err != nil {
		return out, err
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", listen, &tls.Config{RootCAs: roots, ServerName: name(i)})
		if err == nil {
			got := c.ConnectionState().PeerCertificates[0]
			c.Close()
			if got.Equal(wantLeaf) {
				break
			}
		}
		if time.Now().After(deadline) {
			return out, errors.New("the rewritten pair not served 30 s after the change")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with a deadline
	}
	out.Served = time.Since(t0).Seconds()
	return out, nil
}

func rssOf(pid int) int64 {
	rss, _ := procstat.Mem(pid)
	return rss << 10
}
