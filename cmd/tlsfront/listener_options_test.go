package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"

	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/pki/pkitest"
	"github.com/tlsfront/tlsfront/internal/testnet"
	"github.com/tlsfront/tlsfront/proxy"
)

// TestListenerOptionKeys: the per-listener keys for MQTT and client
// identity are read from the file, checked with errors naming the key,
// and reach the listener.
func TestListenerOptionKeys(t *testing.T) {
	tests := []struct {
		name    string
		top     string // top-level keys
		yaml    string // listener keys
		wantErr string
		check   func(t *testing.T, lc proxy.ListenerConfig)
	}{
		{name: "mqtt_max_connect_size", yaml: "mqtt_max_connect_size: 1048576",
			check: func(t *testing.T, lc proxy.ListenerConfig) {
				if lc.MQTTMaxConnectSize != 1<<20 {
					t.Fatalf("mqtt_max_connect_size = %d", lc.MQTTMaxConnectSize)
				}
			}},
		{name: "mqtt_max_connect_size too small", yaml: "mqtt_max_connect_size: 10", wantErr: "listeners[0].mqtt_max_connect_size: 10 is not between 128"},
		{name: "mqtt_max_connect_size over MQTT's", yaml: "mqtt_max_connect_size: 300000000", wantErr: "listeners[0].mqtt_max_connect_size"},
		{name: "mqtt_max_connect_size on raw", yaml: "protocol: raw\n    mqtt_max_connect_size: 1024", wantErr: "only a tcp listener with protocol mqtt"},
		{name: "proxy_protocol_tls", yaml: "proxy_protocol: 2\n    proxy_protocol_tls: true",
			check: func(t *testing.T, lc proxy.ListenerConfig) {
				if !lc.ProxyProtocolTLS {
					t.Fatal("proxy_protocol_tls not read")
				}
			}},
		{name: "proxy_protocol_tls without version 2", yaml: "proxy_protocol: 1\n    proxy_protocol_tls: true", wantErr: "listeners[0].proxy_protocol_tls: needs a tcp listener with proxy_protocol: 2"},
		{name: "client_allow", top: "client_auth: {ca_file: ca.pem}\n", yaml: "client_allow: {cn: [device-1], ou: [meters], dns: [gw.example.com], uri: ['spiffe://example.org/ns/x']}",
			check: func(t *testing.T, lc proxy.ListenerConfig) {
				want := proxy.ClientAllow{CN: []string{"device-1"}, OU: []string{"meters"}, DNS: []string{"gw.example.com"}, URI: []string{"spiffe://example.org/ns/x"}}
				if !reflect.DeepEqual(lc.ClientAllow, want) {
					t.Fatalf("client_allow = %+v", lc.ClientAllow)
				}
			}},
		{name: "client_allow without client_auth", yaml: "client_allow: {cn: [device-1]}", wantErr: "listeners[0].client_allow: needs client_auth.ca_file"},
		{name: "client_allow bad uri", top: "client_auth: {ca_file: ca.pem}\n", yaml: "client_allow: {uri: [not a uri]}", wantErr: "listeners[0].client_allow.uri[0]"},
		{name: "client_allow unknown key", top: "client_auth: {ca_file: ca.pem}\n", yaml: "client_allow: {san: [x]}", wantErr: "san"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "tlsfront.yaml")
			cfgText := tc.top + "certificates: [{cert: c.pem, key: k.pem}]\nlisteners:\n  - listen: 127.0.0.1:0\n    backend: 127.0.0.1:1\n    " + tc.yaml + "\n"
			if err := os.WriteFile(file, []byte(cfgText), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := parseConfig("tlsfront", []string{"--config", file, "--state-dir", dir}, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, cfg.Listeners[0])
		})
	}
}

// TestClientIdentityThroughApp runs the app from a file with client
// authentication, an allow list and the PROXY SSL TLV on an MQTT
// listener: a listed device reaches a PROXY protocol backend that reads
// its verified CN; an unlisted one is refused and counted under its own
// reason.
func TestClientIdentityThroughApp(t *testing.T) {
	ca := pkitest.NewCA(t)
	server := ca.WriteLeaf(ca.Leaf(pki.Options{}))
	root := ca.RootFile()
	headers := make(chan *proxyproto.Header, 4)
	backend := testnet.Listen(t)
	testnet.Serve(t, backend, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		h, err := proxyproto.Read(br)
		if err != nil {
			return
		}
		headers <- h
		io.Copy(c, br)
	})
	cfgFile := filepath.Join(t.TempDir(), "tlsfront.yaml")
	writeConfig(t, cfgFile, fmt.Sprintf(`
certificates: [{cert: %q, key: %q}]
trust: {ca_file: %q}
client_auth: {ca_file: %q}
listeners:
  - name: main
    listen: 127.0.0.1:0
    backend: %q
    proxy_protocol: 2
    proxy_protocol_tls: true
    client_allow: {cn: [device-1]}
`, server.Cert, server.Key, root, root, backend.Addr().String()))
	ta := startApp(t, "--config", cfgFile)

	dial := func(cn string) error {
		leaf := ca.Leaf(pki.Options{CommonName: cn, DNSNames: []string{"client.invalid"}})
		cfg := ca.ClientConfig("localhost")
		cfg.Certificates = []tls.Certificate{{Certificate: [][]byte{leaf.DER, ca.Intermediate.DER}, PrivateKey: leaf.Key}}
		c, err := tls.Dial("tcp", ta.Addr("main"), cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "ping"); err != nil {
			return err
		}
		_, err = io.ReadFull(c, make([]byte, 4))
		return err
	}
	if err := dial("device-1"); err != nil {
		t.Fatalf("listed device refused: %v", err)
	}
	var h *proxyproto.Header
	select {
	case h = <-headers:
	case <-time.After(10 * time.Second):
		t.Fatal("no PROXY header at the backend")
	}
	tlvs, err := h.TLVs()
	if err != nil || len(tlvs) != 1 {
		t.Fatalf("TLVs %v, %v", tlvs, err)
	}
	ssl, err := tlvparse.SSL(tlvs[0])
	if cn, _ := ssl.ClientCN(); err != nil || !ssl.Verified() || cn != "device-1" {
		t.Fatalf("SSL TLV %+v (%v): want verified, CN device-1", ssl, err)
	}
	if err := dial("device-2"); err == nil {
		t.Fatal("unlisted device let in")
	}
	eventually(t, "the refusal counted as client_cert_not_allowed", 5*time.Second, func() bool {
		return metricSum(t, ta, `tlsfront_handshake_failures_total{listener="main",reason="client_cert_not_allowed",`) == 1
	})
}
