package ja4

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// recordingConn keeps a copy of every byte read, so that the raw ClientHello
// can be compared with what crypto/tls parsed out of the same bytes.
type recordingConn struct {
	net.Conn
	got []byte
}

func (c *recordingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.got = append(c.got, b[:n]...)
	return n, err
}

var errSeenHello = errors.New("test: hello captured, stopping")

// captured is one ClientHello as bytes and as crypto/tls parsed it.
type captured struct {
	raw  []byte
	info *tls.ClientHelloInfo
}

// captureHello listens on loopback, runs client against it, and returns the
// first ClientHello received. The server stops the handshake right after
// the hello (the client sees an alert), so clients need not trust anything.
func captureHello(t *testing.T, client func(addr string)) captured {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan captured, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		rc := &recordingConn{Conn: c}
		srv := tls.Server(rc, &tls.Config{
			GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
				got <- captured{raw: append([]byte(nil), rc.got...), info: h}
				return nil, errSeenHello
			},
		})
		srv.Handshake()
	}()
	clientDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		client(ln.Addr().String())
	}()
	defer func() {
		ln.Close()
		<-done
		<-clientDone
	}()
	select {
	case c := <-got:
		return c
	case <-time.After(15 * time.Second):
		t.Fatal("no ClientHello within 15s")
	}
	return captured{}
}

func goClient(cfg *tls.Config) func(string) {
	return func(addr string) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
		if err == nil {
			c.Close()
		}
	}
}

// execClient runs a command line with the address substituted for ADDR
// (and its port for PORT), stdin empty, bounded in time.
func execClient(t *testing.T, args ...string) func(string) {
	return func(addr string) {
		_, port, _ := net.SplitHostPort(addr)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a := make([]string, len(args))
		for i, s := range args {
			s = strings.ReplaceAll(s, "ADDR", addr)
			a[i] = strings.ReplaceAll(s, "PORT", port)
		}
		// The server aborts every handshake, so a failure exit is expected.
		out, _ := exec.CommandContext(ctx, a[0], a[1:]...).CombinedOutput()
		t.Logf("%s: %.300s", strings.Join(a, " "), out)
	}
}

func TestFromInfoMatchesWire(t *testing.T) {
	type client struct {
		name string
		run  func(string)
		need string // binary that must be installed
	}
	clients := []client{
		{name: "go default", run: goClient(&tls.Config{ServerName: "device.example", InsecureSkipVerify: true})},
		{name: "go alpn mqtt", run: goClient(&tls.Config{ServerName: "broker.example", NextProtos: []string{"mqtt"}, InsecureSkipVerify: true})},
		{name: "go no sni", run: goClient(&tls.Config{InsecureSkipVerify: true})},
		{name: "go tls1.2 only", run: goClient(&tls.Config{ServerName: "a.example", MaxVersion: tls.VersionTLS12, InsecureSkipVerify: true})},
		{name: "go tls1.0 only", run: goClient(&tls.Config{ServerName: "a.example", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10, InsecureSkipVerify: true})},
		{name: "go cbc suites", run: goClient(&tls.Config{ServerName: "a.example", MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_256_CBC_SHA}, InsecureSkipVerify: true})},
		{name: "openssl default", need: "openssl", run: execClient(t, "openssl", "s_client", "-connect", "ADDR")},
		{name: "openssl tls1_2", need: "openssl", run: execClient(t, "openssl", "s_client", "-connect", "ADDR", "-tls1_2")},
		{name: "openssl tls1_3", need: "openssl", run: execClient(t, "openssl", "s_client", "-connect", "ADDR", "-tls1_3")},
		{name: "openssl alpn servername", need: "openssl", run: execClient(t, "openssl", "s_client", "-connect", "ADDR", "-alpn", "h2,http/1.1", "-servername", "device.example")},
		{name: "openssl no_tls1_3 servername", need: "openssl", run: execClient(t, "openssl", "s_client", "-connect", "ADDR", "-no_tls1_3", "-servername", "device.example")},
		{name: "openssl tls1 seclevel0", need: "openssl", run: execClient(t, "openssl", "s_client", "-connect", "ADDR", "-tls1", "-cipher", "DEFAULT@SECLEVEL=0")},
		{name: "openssl alpn mqtt", need: "openssl", run: execClient(t, "openssl", "s_client", "-connect", "ADDR", "-alpn", "mqtt", "-servername", "broker.example")},
		{name: "curl", need: "curl", run: execClient(t, "curl", "-sk", "--max-time", "5", "https://localhost:PORT/")},
		{name: "curl tls1.2 http1.1", need: "curl", run: execClient(t, "curl", "-sk", "--max-time", "5", "--tls-max", "1.2", "--http1.1", "https://localhost:PORT/")},
	}
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			if c.need != "" {
				if _, err := exec.LookPath(c.need); err != nil {
					t.Skipf("%s not installed", c.need)
				}
			}
			h := captureHello(t, c.run)
			wire, err := FromClientHello(h.raw)
			if err != nil {
				t.Fatalf("FromClientHello: %v (raw %x)", err, h.raw)
			}
			info := FromInfo(h.info)
			if info != wire {
				t.Errorf("FromInfo = %q, FromClientHello = %q", info, wire)
			}
			rawWire, _ := RawFromClientHello(h.raw)
			if rawInfo := RawFromInfo(h.info); rawInfo != rawWire {
				t.Errorf("RawFromInfo =\n%s\nRawFromClientHello =\n%s", rawInfo, rawWire)
			}
			if !fingerprintRE.MatchString(wire) {
				t.Errorf("%q does not look like a JA4 fingerprint", wire)
			}
			t.Logf("%s  %s", wire, rawWire)
		})
	}
}
