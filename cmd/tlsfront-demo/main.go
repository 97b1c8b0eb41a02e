package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tlsfront/tlsfront/internal/broker"
	"github.com/tlsfront/tlsfront/internal/freeport"
	"github.com/tlsfront/tlsfront/internal/pki"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tlsfront-demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "client" {
		return runClient(ctx, args[1:], stdout)
	}
	fs := flag.NewFlagSet("tlsfront-demo", flag.ContinueOnError)
	bin := fs.String("bin", "bin/tlsfront", "tlsfront binary to run")
	state := fs.String("state", "state/demo", "`folder` for the demo CA, certificate and logs")
	mqttPort := fs.Int("mqtts-port", 8883, "port for MQTT over TLS (a free one is used if taken)")
	wssPort := fs.Int("wss-port", 8084, "port for MQTT over secure WebSocket (a free one is used if taken)")
	adminPort := fs.Int("admin-port", 9901, "port of tlsfront's admin listener on loopback (a free one is used if taken)")
	check := fs.Bool("check", false, "start, check mqtts and wss end to end, and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := os.MkdirAll(*state, 0o700); err != nil {
		return err
	}
	files, err := demoCerts(*state)
	if err != nil {
		return fmt.Errorf("make demo certificates: %w", err)
	}
	logFile, err := os.Create(filepath.Join(*state, "broker.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	b, err := broker.Start(*state, logFile)
	if err != nil {
		return fmt.Errorf("start broker: %w", err)
	}
	defer b.Close()

	mq, ws, admin := portOr(*mqttPort), portOr(*wssPort), portOr(*adminPort)
	cmd := exec.Command(*bin,
		"--listen", fmt.Sprintf("127.0.0.1:%d", mq), "--backend", b.MQTT,
		"--ws-listen", fmt.Sprintf("127.0.0.1:%d", ws), "--ws-backend", b.WS,
		"--cert", files.cert, "--key", files.key, "--trust-ca", files.root,
		"--admin", fmt.Sprintf("127.0.0.1:%d", admin), "--state-dir", *state)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s (run `make build` first): %w", *bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}()
	if err := waitHealthy(ctx, exited, fmt.Sprintf("127.0.0.1:%d", admin)); err != nil {
		return err
	}

	mqttsURL := fmt.Sprintf("ssl://localhost:%d", mq)
	wssURL := fmt.Sprintf("wss://localhost:%d/mqtt", ws)
	if err := selfCheck(ctx, files.root, mqttsURL, wssURL); err != nil {
		return fmt.Errorf("self-check failed: %w", err)
	}
	fmt.Fprintf(stdout, `
tlsfront demo is running: %s broker behind tlsfront, checked end to end over mqtts and wss.

  demo CA (trust only this):  %[2]s
  MQTT over TLS:              localhost:%[3]d  ->  broker %[4]s
  MQTT over secure WebSocket: wss://localhost:%[5]d/mqtt  ->  broker ws://%[6]s
  admin:                      http://127.0.0.1:%[7]d/healthz  /readyz  /metrics  /status

Try it in another terminal:
  mosquitto_sub -h localhost -p %[3]d --cafile %[2]s -t 'demo/#' -v
  mosquitto_pub -h localhost -p %[3]d --cafile %[2]s -t demo/hello -m 'hello over mqtts'
  go run ./cmd/tlsfront-demo client --url wss://localhost:%[5]d/mqtt --cafile %[2]s -t demo/hello -m 'hello over wss'
  openssl s_client -connect localhost:%[3]d -servername localhost -CAfile %[2]s -showcerts </dev/null
  curl -s http://127.0.0.1:%[7]d/readyz

Press Ctrl-C to stop.
`, b.Kind, files.root, mq, b.MQTT, ws, b.WS, admin)
	if *check {
		fmt.Fprintln(stdout, "--check: self-check passed, stopping")
		return nil
	}
	select {
	case <-ctx.Done():
		fmt.Fprintln(stdout, "\nstopping")
		return nil
	case err := <-exited:
		exited <- err
		return fmt.Errorf("tlsfront exited: %v", err)
	}
}

type certFiles struct{ root, cert, key string }

// demoCerts makes a root, an intermediate and a leaf for localhost once and
// reuses them, so that a CA file handed to a client stays valid.
func demoCerts(dir string) (certFiles, error) {
	f := certFiles{root: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "fullchain.pem"), key: filepath.Join(dir, "key.pem")}
	if allExist(f.root, f.cert, f.key) {
		return f, nil
	}
	root, err := pki.NewRoot("tlsfront demo root")
	if err != nil {
		return f, err
	}
	inter, err := root.Issue(pki.Options{CommonName: "tlsfront demo intermediate", IsCA: true})
	if err != nil {
		return f, err
	}
	leaf, err := inter.Issue(pki.Options{CommonName: "localhost", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}})
	if err != nil {
		return f, err
	}
	for _, w := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{f.root, root.CertPEM(), 0o644}, {f.cert, pki.ChainPEM(leaf, inter), 0o644}, {f.key, leaf.KeyPEM(), 0o600}} {
		if err := os.WriteFile(w.path, w.data, w.mode); err != nil {
			return f, err
		}
	}
	return f, nil
}

func allExist(paths ...string) bool {
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

// portOr returns p if it is free on loopback, else a free port.
func portOr(p int) int {
	if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
		ln.Close()
		return p
	}
	free, err := freeport.One()
	if err != nil {
		return p
	}
	return free
}

// waitHealthy waits for tlsfront's admin listener to answer /healthz: its
// sockets are all bound by then. (Dialling the TLS ports instead would
// show up in its logs as failed handshakes.)
func waitHealthy(ctx context.Context, exited chan error, admin string) error {
	deadline := time.Now().Add(15 * time.Second)
	client := &http.Client{Timeout: 500 * time.Millisecond}
	for {
		if resp, err := client.Get("http://" + admin + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("tlsfront exited at start: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("tlsfront did not start within 15s")
		}
	}
}
