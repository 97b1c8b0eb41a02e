package main

// End-to-end tests run the real tlsfront binary, as an operator would,
// in front of a real MQTT broker.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tlsfront/tlsfront/internal/broker"
	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/pki/pkitest"
	"github.com/tlsfront/tlsfront/internal/testnet"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

// TestMain also makes this test binary the tlsfront command (and a
// certificate factory) for the testscript CLI tests in script_test.go.
func TestMain(m *testing.M) {
	testscript.Main(cleanupM{m}, map[string]func(){
		"tlsfront": func() { exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)) },
		"gencerts": genCertsMain,
	})
}

// cleanupM removes the built binary after the tests.
type cleanupM struct{ m *testing.M }

func (c cleanupM) Run() int {
	code := c.m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	return code
}

// tlsfrontBinary builds the binary once per test run.
func tlsfrontBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "tlsfront-bin")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "tlsfront")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// proc is a running tlsfront.
type proc struct {
	cmd    *exec.Cmd
	logs   *testnet.Buffer
	exited chan error
	addrs  map[string]string // listener name -> address, from the log
	admin  string
}

// startTLSFront runs the binary with args (plus JSON logs and an admin on
// a free port) and waits until it logs that it started.
func startTLSFront(t *testing.T, args ...string) *proc {
	t.Helper()
	return startTLSFrontWith(t, nil, args...)
}

// startTLSFrontWith is startTLSFront with prepare run on the command
// before it starts (environment, passed descriptors).
func startTLSFrontWith(t *testing.T, prepare func(*exec.Cmd), args ...string) *proc {
	t.Helper()
	args = append([]string{"--log-format", "json", "--admin", "127.0.0.1:0", "--state-dir", t.TempDir()}, args...)
	p := &proc{cmd: exec.Command(tlsfrontBinary(t), args...), logs: &testnet.Buffer{}, exited: make(chan error, 1), addrs: map[string]string{}}
	if prepare != nil {
		prepare(p.cmd)
	}
	pr, pw := io.Pipe()
	p.cmd.Stderr = io.MultiWriter(p.logs, pw)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait(); pw.Close() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("tlsfront log:\n%s", p.logs.String())
		}
	})
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			if line["msg"] == "tlsfront started" {
				p.admin, _ = line["admin"].(string)
				ls, _ := line["listeners"].(map[string]any)
				for name, addr := range ls {
					p.addrs[name] = addr.(string)
				}
				close(started)
			}
		}
	}()
	select {
	case <-started:
	case err := <-p.exited:
		t.Fatalf("tlsfront exited at start (%v):\n%s", err, p.logs.String())
	case <-time.After(15 * time.Second):
		t.Fatalf("tlsfront did not start within 15s:\n%s", p.logs.String())
	}
	return p
}

// requireMosquitto fails in CI, where .ci/run installs it, and skips
// elsewhere.
func requireMosquitto(t *testing.T) string {
	t.Helper()
	p := broker.MosquittoPath()
	if p == "" {
		testnet.Missing(t, "mosquitto", "apt-get install -y mosquitto mosquitto-clients")
	}
	return p
}

func startBroker(t *testing.T, kind string) *broker.Broker {
	t.Helper()
	var b *broker.Broker
	var err error
	if kind == "mosquitto" {
		b, err = broker.StartMosquitto(requireMosquitto(t), t.TempDir(), io.Discard)
	} else {
		b, err = broker.StartEmbedded()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

type testCerts struct {
	ca                   *pkitest.CA
	root, cert, key, dir string
}

// leafOnlyTrust writes a chain (leaf + intermediate) and the root alone:
// clients that trust only the root need the intermediate served.
func newTestCerts(t *testing.T) testCerts {
	ca := pkitest.NewCA(t)
	f := ca.WriteLeaf(ca.Leaf(pki.Options{}))
	return testCerts{ca: ca, root: ca.RootFile(), cert: f.Cert, key: f.Key, dir: f.Dir}
}

func pahoClient(t *testing.T, url string, tc testCerts, id string) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).
		SetTLSConfig(tc.ca.ClientConfig("localhost")).SetConnectTimeout(5 * time.Second).
		SetAutoReconnect(false).SetConnectRetry(false)
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func TestMQTTThroughTLSFront(t *testing.T) {
	for _, kind := range []string{"mosquitto", "embedded"} {
		t.Run(kind, func(t *testing.T) {
			b := startBroker(t, kind)
			tc := newTestCerts(t)
			p := startTLSFront(t, "--listen", "127.0.0.1:0", "--backend", b.MQTT,
				"--ws-listen", "127.0.0.1:0", "--ws-backend", b.WS,
				"--cert", tc.cert, "--key", tc.key, "--trust-ca", tc.root)
			mqtts := "ssl://" + p.addrs["main"]
			wss := "wss://" + p.addrs["ws"] + "/mqtt"

			// Subscribe over one transport, publish over the other, both
			// ways, so each path carries real MQTT traffic.
			for _, tt := range []struct{ name, sub, pub string }{
				{"mqtts to wss", mqtts, wss}, {"wss to mqtts", wss, mqtts},
			} {
				t.Run(tt.name, func(t *testing.T) {
					got := make(chan string, 1)
					sub := pahoClient(t, tt.sub, tc, "sub-"+kind)
					topic := "tlsfront/test/" + strings.ReplaceAll(tt.name, " ", "-")
					tok := sub.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) })
					if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
						t.Fatalf("subscribe: %v", tok.Error())
					}
					pub := pahoClient(t, tt.pub, tc, "pub-"+kind)
					if tok := pub.Publish(topic, 1, false, "hello "+tt.name); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
						t.Fatalf("publish: %v", tok.Error())
					}
					select {
					case m := <-got:
						if m != "hello "+tt.name {
							t.Fatalf("got %q", m)
						}
					case <-time.After(10 * time.Second):
						t.Fatal("message did not arrive")
					}
				})
			}
		})
	}
}

// TestMosquittoClientsThroughTLSFront uses the command-line clients the
// README tells users to try.
func TestMosquittoClientsThroughTLSFront(t *testing.T) {
	requireMosquitto(t)
	sub, err1 := exec.LookPath("mosquitto_sub")
	pub, err2 := exec.LookPath("mosquitto_pub")
	if err1 != nil || err2 != nil {
		testnet.Missing(t, "mosquitto-clients", "apt-get install -y mosquitto-clients")
	}
	b := startBroker(t, "mosquitto")
	tc := newTestCerts(t)
	p := startTLSFront(t, "--listen", "127.0.0.1:0", "--backend", b.MQTT, "--cert", tc.cert, "--key", tc.key, "--trust-ca", tc.root)
	_, port, _ := net.SplitHostPort(p.addrs["main"])

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s := exec.CommandContext(ctx, sub, "-h", "localhost", "-p", port, "--cafile", tc.root, "-t", "demo/#", "-C", "1", "-v")
	var out bytes.Buffer
	s.Stdout, s.Stderr = &out, &out
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	// Publish until the subscriber has it: the subscription may not be in
	// place yet when the first publish lands.
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	for {
		if o, err := exec.CommandContext(ctx, pub, "-h", "localhost", "-p", port, "--cafile", tc.root, "-t", "demo/x", "-m", "through tlsfront").CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v %s", err, o)
		}
		select {
		case err := <-done:
			if err != nil || strings.TrimSpace(out.String()) != "demo/x through tlsfront" {
				t.Fatalf("mosquitto_sub: %v %q", err, out.String())
			}
			return
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			t.Fatalf("mosquitto_sub got nothing: %q", out.String())
		}
	}
}

func TestStartRefusesBadInput(t *testing.T) {
	ca := pkitest.NewCA(t)
	good := ca.WriteLeaf(ca.Leaf(pki.Options{}))
	other := ca.WriteLeaf(ca.Leaf(pki.Options{}))
	expired := ca.WriteLeaf(ca.Leaf(pki.Options{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}))
	root := ca.RootFile()
	badYAML := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(badYAML, []byte("listeners:\n  - listen: :8883\n    backend: 127.0.0.1:1883\n    handshake_timout: 5s\n"), 0o644)

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantMsg  []string
	}{
		{"unknown yaml key", []string{"--config", badYAML}, 2, []string{badYAML, "line 4", "handshake_timout"}},
		{"no backend", []string{"--listen", "127.0.0.1:0", "--cert", good.Cert, "--key", good.Key}, 2, []string{"listeners[0].backend", "missing"}},
		{"mismatched key", []string{"--listen", "127.0.0.1:0", "--backend", "127.0.0.1:1", "--cert", good.Cert, "--key", other.Key, "--trust-ca", root}, 2, []string{other.Key, "does not match"}},
		{"expired leaf", []string{"--listen", "127.0.0.1:0", "--backend", "127.0.0.1:1", "--cert", expired.Cert, "--key", expired.Key, "--trust-ca", root}, 2, []string{expired.Cert, "expired"}},
		{"untrusted chain", []string{"--listen", "127.0.0.1:0", "--backend", "127.0.0.1:1", "--cert", good.Cert, "--key", good.Key, "--trust-ca", pkitest.NewCA(t).RootFile()}, 2, []string{good.Cert, "verif"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, tlsfrontBinary(t), append(tt.args, "--admin", "127.0.0.1:0", "--state-dir", t.TempDir())...).CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != tt.wantCode {
				t.Fatalf("exit = %v, want code %d; output:\n%s", err, tt.wantCode, out)
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(string(out), m) {
					t.Errorf("output does not mention %q:\n%s", m, out)
				}
			}
		})
	}
}

func TestSIGTERMDrainsThenExits(t *testing.T) {
	backend := testnet.Echo(t)
	tc := newTestCerts(t)
	p := startTLSFront(t, "--listen", "127.0.0.1:0", "--backend", backend, "--kind", "tcp",
		"--cert", tc.cert, "--key", tc.key, "--trust-ca", tc.root, "--shutdown-grace", "30s")
	c, err := tls.Dial("tcp", p.addrs["main"], tc.ca.ClientConfig("localhost"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := make([]byte, 16<<20)
	rand.Read(payload)
	want := sha256.Sum256(payload)
	got := make(chan []byte, 1)
	go func() {
		h := sha256.New()
		io.Copy(h, io.LimitReader(c, int64(len(payload))))
		got <- h.Sum(nil)
	}()
	if _, err := c.Write(payload[:1<<20]); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Once it stops accepting, the transfer in flight must still finish.
	deadline := time.Now().Add(10 * time.Second)
	for {
		nc, err := net.DialTimeout("tcp", p.addrs["main"], time.Second)
		if err != nil {
			break
		}
		nc.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting 10s after SIGTERM")
		}
	}
	if _, err := c.Write(payload[1<<20:]); err != nil {
		t.Fatalf("write during drain: %v", err)
	}
	select {
	case sum := <-got:
		if !bytes.Equal(sum, want[:]) {
			t.Fatal("transfer corrupted during drain")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("transfer did not complete during drain")
	}
	c.CloseWrite()
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("exit after drain = %v, want success", err)
		}
		p.exited <- nil // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatal("tlsfront did not exit after its last connection ended")
	}
}
