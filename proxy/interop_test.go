package proxy

// The interoperability suite: real clients and servers nobody here wrote,
// through a real tlsfront listener. paho-mqtt (Python) and MQTT.js (node
// and headless Chromium) to Mosquitto over wss, and the node "ws" package
// at both ends for the WebSocket protocol itself.
//
// Each test runs when its tools are installed and skips otherwise, except
// in CI (CI set), where .ci/run installs them and a missing one fails.
// -short skips the suite.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tlsfront/tlsfront/internal/broker"
	"github.com/tlsfront/tlsfront/internal/testnet"
)

const interopDir = "testdata/interop"

func interop(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("interoperability suite: not with -short")
	}
}

func needNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		testnet.Missing(t, "node", "apt-get install nodejs npm")
	}
	if _, err := os.Stat(filepath.Join(interopDir, "node_modules", "ws")); err != nil {
		testnet.Missing(t, interopDir+"/node_modules", "npm ci in "+interopDir)
	}
	return node
}

func needMosquitto(t *testing.T) *broker.Broker {
	t.Helper()
	path := broker.MosquittoPath()
	if path == "" {
		testnet.Missing(t, "mosquitto", "apt-get install mosquitto")
	}
	var log testnet.Buffer
	b, err := broker.StartMosquitto(path, t.TempDir(), &log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.Close()
		// Whether a client ended with a DISCONNECT ("disconnected") or
		// without ("closed its connection") is in the broker's log.
		if t.Failed() {
			t.Logf("mosquitto's log:\n%s", log.String())
		}
	})
	return b
}

// process runs a tool the test started, with its output kept for the
// failure message.
type process struct {
	cmd    *exec.Cmd
	out    testnet.Buffer
	stdin  io.WriteCloser
	lines  chan string // stdout, line by line
	exited chan error
	// stopOnCleanup: the tool does not end by itself (Chromium); it is
	// sent SIGTERM when the test ends.
	stopOnCleanup bool
}

func startProcess(t *testing.T, name string, args ...string) *process {
	t.Helper()
	return startProcessWith(t, func(*exec.Cmd) {}, name, args...)
}

// startProcessWith is startProcess with setup applied to the command
// before it starts.
func startProcessWith(t *testing.T, setup func(*exec.Cmd), name string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(name, args...), lines: make(chan string, 64), exited: make(chan error, 1)}
	p.cmd.Dir = interopDir
	setup(p.cmd)
	p.cmd.Stderr = &p.out
	// Its own process group, so that what it starts (Chromium's
	// helpers) ends with it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			fmt.Fprintln(&p.out, sc.Text())
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		p.exited <- p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.stdin.Close() // the node servers and paho end on it
		if p.stopOnCleanup {
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		}
		select {
		case <-p.exited:
			return
		case <-time.After(5 * time.Second):
		}
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	})
	return p
}

// line waits for the next line of output.
func (p *process) line(t *testing.T, d time.Duration) string {
	t.Helper()
	select {
	case l := <-p.lines:
		return l
	case err := <-p.exited:
		t.Fatalf("exited (%v) before printing:\n%s", err, p.out.String())
	case <-time.After(d):
		t.Fatalf("nothing printed within %s:\n%s", d, p.out.String())
	}
	return ""
}

// wait waits for the process to exit and fails the test unless it
// succeeded.
func (p *process) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("failed (%v):\n%s", err, p.out.String())
		}
	case <-time.After(d):
		t.Fatalf("did not finish within %s:\n%s", d, p.out.String())
	}
}

func wssURL(p *testProxy, path string) string {
	_, port, _ := net.SplitHostPort(p.addr)
	return "wss://localhost:" + port + path
}

// The node ws package at both ends: text, binary, 1 MiB messages, a
// fragmented one and every close code a peer may send, with
// permessage-deflate negotiated between them, all as sent.
func TestInteropNodeWS(t *testing.T) {
	interop(t)
	node := needNode(t)
	srv := startProcess(t, node, "ws_echo_server.js")
	var listening struct{ Port int }
	if err := json.Unmarshal([]byte(srv.line(t, 15*time.Second)), &listening); err != nil || listening.Port == 0 {
		t.Fatalf("echo server: %v\n%s", err, srv.out.String())
	}
	p := startProxy(t, Options{Kind: KindHTTP, Backend: Backend{Network: "tcp", Address: fmt.Sprintf("127.0.0.1:%d", listening.Port)}})
	cl := startProcess(t, node, "ws_client.js", wssURL(p, "/echo"), p.ca.RootFile())
	cl.wait(t, 90*time.Second)
	if !strings.Contains(cl.out.String(), "ok") {
		t.Fatalf("client output:\n%s", cl.out.String())
	}
}

// MQTT.js under node, over wss through tlsfront to Mosquitto.
func TestInteropMQTTjsNode(t *testing.T) {
	interop(t)
	node := needNode(t)
	b := needMosquitto(t)
	p := startProxy(t, Options{Kind: KindHTTP, Backend: Backend{Network: "tcp", Address: b.WS}})
	cl := startProcess(t, node, "mqtt_client.js", wssURL(p, "/mqtt"), p.ca.RootFile(), "tlsfront/interop/node")
	cl.wait(t, 60*time.Second)
}

// MQTT.js's browser bundle in headless Chromium, over wss through
// tlsfront to Mosquitto. The page comes from a server the test runs and
// reports its outcome by requesting /result.
func TestInteropMQTTjsChromium(t *testing.T) {
	interop(t)
	needNode(t) // for node_modules/mqtt/dist
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		testnet.Missing(t, "chromium", "apt-get install chromium")
	}
	b := needMosquitto(t)
	p := startProxy(t, Options{Kind: KindHTTP, Backend: Backend{Network: "tcp", Address: b.WS}})
	page, err := os.ReadFile(filepath.Join(interopDir, "mqtt_page.html"))
	if err != nil {
		t.Fatal(err)
	}
	html := strings.NewReplacer("BROKER_URL", wssURL(p, "/mqtt"), "TOPIC", "tlsfront/interop/chromium").Replace(string(page))
	result := make(chan string, 8)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, html) })
	mux.HandleFunc("/mqtt.min.js", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(interopDir, "node_modules", "mqtt", "dist", "mqtt.min.js"))
	})
	mux.HandleFunc("/result", func(w http.ResponseWriter, r *http.Request) {
		select {
		case result <- r.URL.Query().Get("r"):
		default:
		}
	})
	ln := testnet.Listen(t)
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	br := startProcess(t, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(),
		// The test's CA is not in Chromium's store; the certificate is
		// checked by every other test.
		"--ignore-certificate-errors",
		"http://"+ln.Addr().String()+"/")
	br.stopOnCleanup = true
	select {
	case r := <-result:
		if r != "ok" {
			t.Fatalf("page reported %q\n%s", r, br.out.String())
		}
	case err := <-br.exited:
		t.Fatalf("chromium exited (%v):\n%s", err, br.out.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("no result from the page within 60s:\n%s", br.out.String())
	}
}

// paho-mqtt from Debian (Python) over wss, with its default keepalive
// (60 s) and tlsfront pinging every 300 ms: it stays connected through
// five ping intervals of silence, and its will message never fires.
// paho answers pings with unmasked pongs; before tlsfront took its own
// pongs whatever their masking, every paho client was dropped at the
// first ping.
func TestInteropPahoPython(t *testing.T) {
	interop(t)
	const python = "/usr/bin/python3" // the one Debian's python3-paho-mqtt is for
	if err := exec.Command(python, "-c", "import paho.mqtt.client").Run(); err != nil {
		testnet.Missing(t, "python3-paho-mqtt", "apt-get install python3-paho-mqtt")
	}
	b := needMosquitto(t)
	const interval = 300 * time.Millisecond
	p := startProxy(t, Options{Kind: KindHTTP, Backend: Backend{Network: "tcp", Address: b.WS}, HTTP: HTTPOptions{PingInterval: interval}})

	// A watcher on the broker itself sees any will message.
	const willTopic = "tlsfront/interop/paho-will"
	wills := make(chan string, 8)
	w := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + b.MQTT).SetClientID("will-watcher").SetAutoReconnect(false))
	if tok := w.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher: %v", tok.Error())
	}
	defer w.Disconnect(100)
	if tok := w.Subscribe(willTopic, 1, func(_ paho.Client, m paho.Message) { wills <- string(m.Payload()) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("watch: %v", tok.Error())
	}

	_, port, _ := net.SplitHostPort(p.addr)
	py := startProcess(t, python, "paho_wss.py", port, p.ca.RootFile(), "tlsfront/interop/paho", willTopic)
	if l := py.line(t, 15*time.Second); l != "connected" {
		t.Fatalf("paho: %q\n%s", l, py.out.String())
	}
	// The idle time is what is under test: a client whose pongs were
	// not taken would be closed after two intervals.
	ctx, cancel := context.WithTimeout(context.Background(), 5*interval)
	<-ctx.Done()
	cancel()
	io.WriteString(py.stdin, "go\n")
	py.wait(t, 30*time.Second)

	// A will published earlier would arrive before this marker.
	if tok := w.Publish(willTopic, 1, false, "marker"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("marker: %v", tok.Error())
	}
	select {
	case m := <-wills:
		if m != "marker" {
			t.Fatalf("will message fired: %q", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("marker did not arrive")
	}
}
