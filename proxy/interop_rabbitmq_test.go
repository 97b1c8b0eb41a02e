package proxy

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/tlsfront/tlsfront/internal/testnet"
)

// RabbitMQ's web_mqtt with proxy_protocol on drops every connection whose
// PROXY header is LOCAL or missing: MQTT over wss through tlsfront, with
// PROXY headers v1 and v2, must work. Opt in with TLSFRONT_RABBITMQ=1
// (make test-interop): RabbitMQ takes tens of seconds to start, and CI
// does not install it (apt-get install rabbitmq-server).
func TestInteropRabbitMQWebMQTTProxyProtocol(t *testing.T) {
	interop(t)
	if os.Getenv("TLSFRONT_RABBITMQ") == "" {
		t.Skip("RabbitMQ is opt-in: TLSFRONT_RABBITMQ=1 (make test-interop)")
	}
	const server = "/usr/lib/rabbitmq/bin/rabbitmq-server" // not /usr/sbin's, which switches user
	if _, err := os.Stat(server); err != nil {
		t.Fatalf("TLSFRONT_RABBITMQ is set but RabbitMQ is not installed (apt-get install rabbitmq-server): %v", err)
	}
	webMQTT := startRabbitMQ(t, server)
	for _, version := range []int{1, 2} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			p := startProxy(t, Options{Kind: KindHTTP, Backend: Backend{Network: "tcp", Address: webMQTT, ProxyProtocol: version}})
			topic := fmt.Sprintf("tlsfront/rabbitmq/v%d", version)
			got := make(chan string, 1)
			o := paho.NewClientOptions().AddBroker(wssURL(p, "/ws")).SetClientID(fmt.Sprintf("tlsfront-v%d", version)).
				SetTLSConfig(p.ca.ClientConfig("localhost")).SetConnectTimeout(10 * time.Second).SetAutoReconnect(false)
			c := paho.NewClient(o)
			if tok := c.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
				t.Fatalf("connect through tlsfront: %v", tok.Error())
			}
			defer c.Disconnect(100)
			if tok := c.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("subscribe: %v", tok.Error())
			}
			if tok := c.Publish(topic, 1, false, "hello rabbit"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("publish: %v", tok.Error())
			}
			select {
			case m := <-got:
				if m != "hello rabbit" {
					t.Fatalf("got %q", m)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("message did not come back")
			}
		})
	}
}

// startRabbitMQ runs a private RabbitMQ node (its own epmd, ports, files)
// with web_mqtt and proxy_protocol on, and returns web_mqtt's address.
func startRabbitMQ(t *testing.T, server string) string {
	t.Helper()
	dir := t.TempDir()
	ports := testnet.FreePorts(t, 4)
	epmdPort, distPort, mqttPort, webPort := ports[0], ports[1], ports[2], ports[3]
	conf := fmt.Sprintf(`listeners.tcp = none
mqtt.listeners.tcp.default = 127.0.0.1:%d
web_mqtt.tcp.ip = 127.0.0.1
web_mqtt.tcp.port = %d
web_mqtt.proxy_protocol = true
loopback_users = none
log.console = true
log.file = false
`, mqttPort, webPort)
	if err := os.WriteFile(filepath.Join(dir, "rabbitmq.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "enabled_plugins"), []byte("[rabbitmq_web_mqtt].\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	epmd, err := exec.LookPath("epmd")
	if err != nil {
		epmd = "/usr/lib/erlang/bin/epmd"
	}
	// Our own epmd, so the node does not start a daemon that outlives
	// the test.
	startProcess(t, epmd, "-port", fmt.Sprint(epmdPort))
	env := append(os.Environ(),
		"HOME="+dir,
		fmt.Sprintf("ERL_EPMD_PORT=%d", epmdPort),
		fmt.Sprintf("RABBITMQ_NODENAME=tlsfront%d@localhost", webPort),
		fmt.Sprintf("RABBITMQ_DIST_PORT=%d", distPort),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_PID_FILE="+filepath.Join(dir, "pid"),
	)
	rmq := startProcessEnv(t, env, server)
	rmq.stopOnCleanup = true // the script stops the node on SIGTERM
	deadline := time.Now().Add(120 * time.Second)
	for !strings.Contains(rmq.out.String(), "Server startup complete") {
		select {
		case err := <-rmq.exited:
			t.Fatalf("rabbitmq-server exited (%v):\n%s", err, rmq.out.String())
		case <-time.After(100 * time.Millisecond): // polling its log, with a deadline
		}
		if time.Now().After(deadline) {
			t.Fatalf("RabbitMQ did not start within 120s:\n%s", rmq.out.String())
		}
	}
	return net.JoinHostPort("127.0.0.1", fmt.Sprint(webPort))
}

// startProcessEnv is startProcess with an environment.
func startProcessEnv(t *testing.T, env []string, name string, args ...string) *process {
	t.Helper()
	return startProcessWith(t, func(c *exec.Cmd) { c.Env = env }, name, args...)
}
