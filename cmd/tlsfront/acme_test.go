package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsfront/tlsfront/certs"
	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/testnet"
)

func TestACMEConfigValidate(t *testing.T) {
	f := false
	for _, tc := range []struct {
		name string
		c    acmeConfig
		want string // substring of the error; empty means valid
	}{
		{"off is valid whatever else is set", acmeConfig{Email: "x"}, ""},
		{"names imply enabled", acmeConfig{Names: []string{"mqtt.example.com"}}, ""},
		{"enabled without names", acmeConfig{Enabled: true}, "acme.names: none given"},
		{"wildcard name", acmeConfig{Names: []string{"*.example.com"}}, "acme.names[0]: "},
		{"duplicate name", acmeConfig{Names: []string{"a.example.com", "A.example.com"}}, "acme.names[1]: "},
		{"http CA", acmeConfig{Names: []string{"a.example.com"}, CA: "http://ca.example/dir"}, "acme.ca: "},
		{"bad email", acmeConfig{Names: []string{"a.example.com"}, Email: "ops"}, "acme.email: "},
		{"half EAB", acmeConfig{Names: []string{"a.example.com"}, EABKeyID: "kid"}, "acme.eab_key_id: "},
		{"EAB not base64url", acmeConfig{Names: []string{"a.example.com"}, EABKeyID: "kid", EABHMAC: "no/pe+"}, "acme.eab_hmac: "},
		{"EAB ok", acmeConfig{Names: []string{"a.example.com"}, EABKeyID: "kid", EABHMAC: "c2VjcmV0LWtleS0xMjM"}, ""},
		{"on-demand without allow", acmeConfig{OnDemand: acmeOnDemandConfig{Enabled: true}}, "acme.on_demand.allow: required"},
		{"on-demand bad pattern", acmeConfig{OnDemand: acmeOnDemandConfig{Enabled: true, Allow: []string{"*.com"}}}, "acme.on_demand.allow[0]: "},
		{"on-demand ok", acmeConfig{OnDemand: acmeOnDemandConfig{Enabled: true, Allow: []string{"*.devices.example.com"}, RequireDNSToHost: &f}}, ""},
		{"bad public address", acmeConfig{OnDemand: acmeOnDemandConfig{Enabled: true, Allow: []string{"a.example.com"}, PublicAddresses: []string{"host"}}}, "acme.on_demand.public_addresses[0]: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestACMEFlags(t *testing.T) {
	t.Setenv("TLSFRONT_ACME_EMAIL", "ops@example.com")
	cfg, err := parseConfig("tlsfront", []string{
		"--listen", "127.0.0.1:0", "--backend", "127.0.0.1:1883",
		"--acme-name", "a.example.com,b.example.com", "--acme-name", "c.example.com",
		"--acme-on-demand", "--acme-on-demand-allow", "*.devices.example.com",
		"--acme-on-demand-no-dns-check", "--acme-public-address", "198.51.100.7",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.ACME
	if !c.enabled() || strings.Join(c.Names, " ") != "a.example.com b.example.com c.example.com" || c.Email != "ops@example.com" {
		t.Fatalf("acme config %+v", c)
	}
	if !c.OnDemand.Enabled || c.OnDemand.requireDNS() || len(c.OnDemand.Allow) != 1 || len(c.OnDemand.PublicAddresses) != 1 {
		t.Fatalf("on_demand %+v", c.OnDemand)
	}
}

// TestSetupACMEStartsNothing checks the wiring newApp does (also for
// check-config --load): hooks in place, nothing started, NextProtos
// untouched so MQTT clients offering ALPN "mqtt" keep working.
func TestSetupACMEStartsNothing(t *testing.T) {
	cfg, err := parseConfig("tlsfront", []string{
		"--state-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--backend", "127.0.0.1:1883",
		"--acme-name", "mqtt.example.com",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if a.store.Fallback == nil || a.redirectWrap == nil || len(a.tasks) == 0 {
		t.Fatalf("not wired: fallback %v, redirectWrap %v, %d tasks", a.store.Fallback != nil, a.redirectWrap != nil, len(a.tasks))
	}
	tc := a.tlsConfig()
	if tc.GetConfigForClient == nil || len(tc.NextProtos) != 0 {
		t.Fatalf("tls config: GetConfigForClient %v, NextProtos %v", tc.GetConfigForClient != nil, tc.NextProtos)
	}
	// Not started: the fallback has nothing to give yet.
	if _, err := a.store.Fallback(&tls.ClientHelloInfo{ServerName: "mqtt.example.com"}); err == nil {
		t.Fatal("fallback served a certificate before the ACME task ran")
	}
}

// TestACMEThroughProxy runs the whole app with a redirect listener and an
// MQTT (tcp) listener against a real Pebble that validates with
// TLS-ALPN-01 through the proxy's TLS listener, then checks the issued
// certificate is served there.
func TestACMEThroughProxy(t *testing.T) {
	bin := pebbleBinary(t)
	// Pebble's config names the ports it validates on before the app
	// binds them, so they are reserved here and released for the app.
	// HTTP-01 is not offered (no redirect listener), so pebble's HTTP
	// port only needs to be some closed port.
	httpPort, tlsPort := reservePort(t), reservePort(t)
	p := runPebble(t, bin, httpPort, tlsPort)
	backend := testnet.Listen(t)
	testnet.Serve(t, backend, func(net.Conn) {})

	const name = "broker.tlsfront.test"
	obtained := make(chan struct{}, 1)
	ta := startAppWith(t, func(a *app) {
		a.onACME = append(a.onACME, func(ev string, names []string, err error) {
			if ev == certs.EventObtained && len(names) == 1 && names[0] == name {
				select {
				case obtained <- struct{}{}:
				default:
				}
			}
		})
	},
		"--listen", fmt.Sprintf("127.0.0.1:%d", tlsPort), "--backend", backend.Addr().String(),
		"--acme-ca", p.dir, "--acme-ca-root", p.rootFile, "--acme-name", name,
	)
	select {
	case <-obtained:
	case <-time.After(30 * time.Second):
		t.Fatalf("no certificate obtained in 30s\nlogs:\n%s\npebble:\n%s", ta.Logs(), p.out.String())
	}
	roots := p.issuedRoots(t)
	c, err := tls.Dial("tcp", ta.Addr("main"), &tls.Config{ServerName: name, RootCAs: roots, NextProtos: []string{"mqtt"}})
	if err != nil {
		t.Fatalf("handshake through the proxy: %v", err)
	}
	c.Close()
}

// --- a small Pebble harness (certs has the full one; tests cannot share
// code across packages without an internal helper package).

func pebbleBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("pebble"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "pebble")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	msg := "pebble not found; install with: go install github.com/letsencrypt/pebble/v2/cmd/pebble@latest"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func reservePort(t *testing.T) int {
	t.Helper()
	ln := testnet.Listen(t)
	ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

type pebbleProc struct {
	dir, mgmt, rootFile string
	client              *http.Client
	out                 *testnet.Buffer
}

func runPebble(t *testing.T, bin string, httpPort, tlsPort int) *pebbleProc {
	t.Helper()
	dir := t.TempDir()
	root, err := pki.NewRoot("pebble endpoint root")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := root.Issue(pki.Options{CommonName: "localhost", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	certPath, _ := pki.WriteFile(dir, "cert.pem", leaf.CertPEM(), 0o644)
	keyPath, _ := pki.WriteFile(dir, "key.pem", leaf.KeyPEM(), 0o600)
	rootFile, _ := pki.WriteFile(dir, "root.pem", root.CertPEM(), 0o644)

	dnsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dnsSrv := &dns.Server{Listener: dnsLn, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for _, q := range r.Question {
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: net.IPv4(127, 0, 0, 1)})
			}
		}
		w.WriteMsg(m)
	})}
	dnsDone := make(chan struct{})
	go func() { defer close(dnsDone); dnsSrv.ActivateAndServe() }()
	t.Cleanup(func() { dnsSrv.Shutdown(); <-dnsDone })

	listen := fmt.Sprintf("127.0.0.1:%d", reservePort(t))
	mgmt := fmt.Sprintf("127.0.0.1:%d", reservePort(t))
	cfgJSON, _ := json.Marshal(map[string]any{"pebble": map[string]any{
		"listenAddress": listen, "managementListenAddress": mgmt,
		"certificate": certPath, "privateKey": keyPath,
		"httpPort": httpPort, "tlsPort": tlsPort, "keyAlgorithm": "ecdsa",
	}})
	cfgPath, _ := pki.WriteFile(dir, "pebble.json", cfgJSON, 0o644)
	p := &pebbleProc{dir: "https://" + listen + "/dir", mgmt: "https://" + mgmt, rootFile: rootFile, out: &testnet.Buffer{}}
	p.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.Pool(root)}}}
	cmd := exec.Command(bin, "-config", cfgPath, "-dnsserver", dnsLn.Addr().String())
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { defer close(waited); cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill(); <-waited })
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := p.client.Get(p.dir)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble not answering: %v\n%s", err, p.out.String())
		}
		select {
		case <-waited:
			t.Fatalf("pebble exited:\n%s", p.out.String())
		case <-tick.C:
		}
	}
}

func (p *pebbleProc) issuedRoots(t *testing.T) *x509.CertPool {
	t.Helper()
	resp, err := p.client.Get(p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(body) {
		t.Fatalf("no root from pebble: %q", bytes.TrimSpace(body))
	}
	return pool
}
