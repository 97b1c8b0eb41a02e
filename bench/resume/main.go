package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/procstat"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/resume:", err)
		os.Exit(1)
	}
}

type instance struct {
	cmd  *exec.Cmd
	addr string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench/resume", flag.ContinueOnError)
	bin := fs.String("tlsfront", "", "tlsfront `binary` (default: build ./cmd/tlsfront)")
	clients := fs.Int("clients", 300, "devices in the storm, each with its own session cache")
	rounds := fs.Int("rounds", 3, "reconnections per device after its first connection")
	workers := fs.Int("workers", 16, "concurrent connectors")
	tls12 := fs.Bool("tls12", false, "clients speak TLS 1.2, where a resumed handshake needs no key exchange")
	only := fs.String("only", "", "run one `phase` (full or resumed), e.g. to profile the instances with perf while it runs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	phases := []bool{false, true}
	switch *only {
	case "":
	case "full":
		phases = []bool{false}
	case "resumed":
		phases = []bool{true}
	default:
		return fmt.Errorf("-only: %q is neither full nor resumed", *only)
	}
	dir, err := os.MkdirTemp("", "tlsfront-bench-resume")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if *bin == "" {
		*bin = filepath.Join(dir, "tlsfront")
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", *bin, "./cmd/tlsfront").CombinedOutput(); err != nil {
			return fmt.Errorf("build: %v\n%s", err, out)
		}
	}
	root, err := pki.NewRoot("bench root")
	if err != nil {
		return err
	}
	leaf, err := root.Issue(pki.Options{CommonName: "localhost", DNSNames: []string{"localhost"}})
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{"cert.pem": pki.ChainPEM(leaf), "key.pem": leaf.KeyPEM(), "root.pem": root.CertPEM()} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	secret := make([]byte, 48)
	rand.Read(secret)
	if err := os.WriteFile(filepath.Join(dir, "ticket.key"), secret, 0o600); err != nil {
		return err
	}
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()

	var fleet []*instance
	defer func() {
		for _, in := range fleet {
			in.cmd.Process.Signal(syscall.SIGTERM)
			in.cmd.Wait()
		}
	}()
	for i := range 3 {
		in, err := start(ctx, *bin, dir, echo.Addr().String(), i)
		if err != nil {
			return err
		}
		fleet = append(fleet, in)
	}
	roots := pki.Pool(root)
	version := "TLS 1.3"
	if *tls12 {
		version = "TLS 1.2"
	}
	fmt.Fprintf(stdout, "fleet of 3 tlsfront instances sharing a ticket key; %d devices (%s), %d reconnections each, round robin over the instances\n\n", *clients, version, *rounds)
	fmt.Fprintf(stdout, "| handshakes | reconnections | resumed | proxy CPU per reconnection (µs, all three) |\n| --- | --- | --- | --- |\n")
	var fullCPU float64
	for _, resume := range phases {
		res, err := storm(ctx, fleet, roots, *clients, *rounds, *workers, resume, *tls12)
		if err != nil {
			return err
		}
		label := "full (no session cache)"
		if resume {
			label = "resumption-capable clients"
		}
		perConn := res.cpu / float64(res.conns) * 1e6
		fmt.Fprintf(stdout, "| %s | %d | %.1f %% | %.0f |\n", label, res.conns, 100*float64(res.resumed)/float64(res.conns), perConn)
		if !resume {
			fullCPU = perConn
		} else if fullCPU > 0 {
			fmt.Fprintf(stdout, "\nresumed / full CPU per reconnection: %.2f\n", perConn/fullCPU)
		}
	}
	return nil
}

// start runs one instance and returns once it serves.
func start(ctx context.Context, bin, dir, backend string, i int) (*instance, error) {
	cmd := exec.CommandContext(ctx, bin, "--listen", "127.0.0.1:0", "--backend", backend, "--kind", "tcp",
		"--cert", filepath.Join(dir, "cert.pem"), "--key", filepath.Join(dir, "key.pem"), "--trust-ca", filepath.Join(dir, "root.pem"),
		"--session-ticket-key-file", filepath.Join(dir, "ticket.key"), "--admin", "", "--probe-disabled", "--limits=false",
		"--log-format", "json", "--state-dir", filepath.Join(dir, "state"+strconv.Itoa(i)))
	pr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var line struct {
				Msg       string            `json:"msg"`
				Listeners map[string]string `json:"listeners"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "tlsfront started" {
				addr <- line.Listeners["main"]
			}
		}
	}()
	select {
	case a := <-addr:
		return &instance{cmd: cmd, addr: a}, nil
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		return nil, errors.New("an instance did not start within 20s")
	}
}

type result struct {
	conns, resumed int
	cpu            float64 // seconds, all instances
}

// storm connects every device once (to fill its session cache, when it
// has one), then measures rounds reconnections per device, each to the
// next instance round robin, as a load balancer would spread them.
func storm(ctx context.Context, fleet []*instance, roots *x509.CertPool, clients, rounds, workers int, resume, tls12 bool) (result, error) {
	caches := make([]tls.ClientSessionCache, clients)
	config := func(dev int) *tls.Config {
		cfg := &tls.Config{ServerName: "localhost", RootCAs: roots, MinVersion: tls.VersionTLS12,
			CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}}
		if tls12 {
			cfg.MaxVersion = tls.VersionTLS12
		}
		if resume {
			if caches[dev] == nil {
				caches[dev] = tls.NewLRUClientSessionCache(4)
			}
			cfg.ClientSessionCache = caches[dev]
		}
		return cfg
	}
	connect := func(dev, inst int) (bool, error) {
		d := tls.Dialer{Config: config(dev), NetDialer: &net.Dialer{Timeout: 10 * time.Second}}
		c, err := d.DialContext(ctx, "tcp", fleet[inst%len(fleet)].addr)
		if err != nil {
			return false, err
		}
		defer c.Close()
		// One echo: the ticket (sent after a TLS 1.3 handshake) is read
		// with it, and the connection is a real one.
		msg := []byte("ping")
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(msg); err != nil {
			return false, err
		}
		if _, err := io.ReadFull(c, make([]byte, len(msg))); err != nil {
			return false, err
		}
		return c.(*tls.Conn).ConnectionState().DidResume, nil
	}
	for dev := range clients {
		if _, err := connect(dev, dev); err != nil {
			return result{}, fmt.Errorf("first connection: %w", err)
		}
	}
	cpu0, err := fleetCPU(fleet)
	if err != nil {
		return result{}, err
	}
	var res result
	var resumed, conns atomic.Int64
	var firstErr atomic.Value
	jobs := make(chan [2]int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for j := range jobs {
				r, err := connect(j[0], j[1])
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				conns.Add(1)
				if r {
					resumed.Add(1)
				}
			}
		})
	}
	for r := 1; r <= rounds; r++ {
		for dev := range clients {
			jobs <- [2]int{dev, dev + r}
		}
	}
	close(jobs)
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil && conns.Load() == 0 {
		return res, err
	}
	cpu1, err := fleetCPU(fleet)
	if err != nil {
		return result{}, err
	}
	res.conns, res.resumed, res.cpu = int(conns.Load()), int(resumed.Load()), cpu1-cpu0
	return res, nil
}

// fleetCPU is the user and system CPU the instances have used, in seconds.
func fleetCPU(fleet []*instance) (float64, error) {
	var total time.Duration
	for _, in := range fleet {
		cpu, err := procstat.CPU(in.cmd.Process.Pid)
		if err != nil {
			return 0, err
		}
		total += cpu
	}
	return total.Seconds(), nil
}
