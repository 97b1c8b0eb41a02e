package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/internal/pebbletest"
	"github.com/tlsfront/tlsfront/internal/redistest"
	"github.com/tlsfront/tlsfront/internal/testnet"
)

// A fleet of three on one Redis obtains a name once, and every instance
// serves it, whichever one the CA's validation reaches.
func TestFleetObtainsOnceAndServesEverywhere(t *testing.T) {
	redis := redistest.Start(t)
	httpPort, tlsPort := reservePort(t), reservePort(t)
	p := pebbletest.Start(t, pebbletest.Options{HTTPPort: httpPort, TLSPort: tlsPort})
	backend := testnet.Listen(t)
	testnet.Serve(t, backend, func(net.Conn) {})
	const name = "fleet.tlsfront.test"
	var fleet []*testApp
	for i := range 3 {
		listen := "127.0.0.1:0"
		if i == 0 {
			// Only the first instance can be reached by the CA; the
			// others' orders are validated through the shared storage.
			listen = fmt.Sprintf("127.0.0.1:%d", tlsPort)
		}
		fleet = append(fleet, startApp(t, "--listen", listen, "--backend", backend.Addr().String(),
			"--acme-ca", p.DirectoryURL, "--acme-ca-root", p.RootFile, "--acme-name", name,
			"--redis", redis.URL, "--probe-disabled"))
	}
	roots := p.IssuedRoots(t)
	for i, ta := range fleet {
		eventually(t, fmt.Sprintf("instance %d serving %s", i, name), 60*time.Second, func() bool {
			c, err := tls.Dial("tcp", ta.Addr("main"), &tls.Config{ServerName: name, RootCAs: roots})
			if err != nil {
				return false
			}
			c.Close()
			return true
		})
	}
	if n := strings.Count(p.Output(), "Added order"); n != 1 {
		t.Errorf("the CA got %d orders for one name from a fleet of three, want 1", n)
	}
}

// With a shared ticket key, a session from one instance resumes on
// another: a reconnect storm after an outage pays no full handshake on
// whichever instance it lands.
func TestSessionTicketResumesOnAnotherInstance(t *testing.T) {
	f := newMonFixture(t)
	keyFile := filepath.Join(t.TempDir(), "ticket.key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("0123456789abcdef", 4)), 0o600); err != nil {
		t.Fatal(err)
	}
	args := f.args("--probe-disabled", "--no-watch", "--session-ticket-key-file", keyFile)
	a, b := startApp(t, args...), startApp(t, args...)
	cache := tls.NewLRUClientSessionCache(4)
	dial := func(addr string) tls.ConnectionState {
		t.Helper()
		cfg := f.ca.ClientConfig("localhost")
		cfg.ClientSessionCache = cache
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// TLS 1.3 tickets arrive after the handshake; a read lets the
		// client take them in.
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		c.Read(make([]byte, 1))
		return c.ConnectionState()
	}
	if st := dial(a.Addr("main")); st.DidResume {
		t.Fatal("the first connection resumed")
	}
	if st := dial(b.Addr("main")); !st.DidResume {
		t.Fatal("a ticket from instance A did not resume on instance B")
	}
	eventually(t, "the resumption counted", 5*time.Second, func() bool {
		return metricSum(t, b, `tlsfront_handshakes_resumed_total{listener="main"}`) == 1
	})
}

// Redis going away never takes traffic down: the instance keeps serving,
// says so (metric, alert), and says so again when Redis returns.
func TestRedisOutageKeepsServing(t *testing.T) {
	redis := redistest.Start(t)
	f := newMonFixture(t)
	sink := &alertSink{}
	hook := httptest.NewServer(sink)
	defer hook.Close()
	ta := startAppWith(t, appOptions{redisCheck: 100 * time.Millisecond},
		f.args("--probe-disabled", "--no-watch", "--redis", redis.URL, "--alert-webhook", hook.URL)...)
	eventually(t, "redis reported up", 10*time.Second, func() bool {
		return metricSum(t, ta, `tlsfront_dependency_up{dependency="redis"}`) == 1
	})
	redis.Stop()
	eventually(t, "redis reported down and alerted", 10*time.Second, func() bool {
		return metricSum(t, ta, `tlsfront_dependency_up{dependency="redis"}`) == 0 && sink.count("dependency/redis", "firing") == 1
	})
	for range 5 {
		c, err := tls.Dial("tcp", ta.Addr("main"), f.ca.ClientConfig("localhost"))
		if err != nil {
			t.Fatalf("a client during the Redis outage: %v", err)
		}
		c.Close()
	}
	redis.Restart()
	eventually(t, "redis reported back and resolved", 10*time.Second, func() bool {
		return metricSum(t, ta, `tlsfront_dependency_up{dependency="redis"}`) == 1 && sink.count("dependency/redis", "resolved") == 1
	})
}
