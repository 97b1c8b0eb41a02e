package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/certs"
	"github.com/tlsfront/tlsfront/internal/pebbletest"
	"github.com/tlsfront/tlsfront/internal/testnet"
	"github.com/tlsfront/tlsfront/report"
)

func TestACMEConfigValidate(t *testing.T) {
	f := false
	for _, tc := range []struct {
		name string
		c    certs.ACMEConfig
		want string // substring of the error; empty means valid
	}{
		{"off is valid whatever else is set", certs.ACMEConfig{Email: "x"}, ""},
		{"names imply enabled", certs.ACMEConfig{Names: []string{"mqtt.example.com"}}, ""},
		{"enabled without names", certs.ACMEConfig{Enabled: true}, "acme.names: none given"},
		{"wildcard name", certs.ACMEConfig{Names: []string{"*.example.com"}}, "acme.names[0]: "},
		{"duplicate name", certs.ACMEConfig{Names: []string{"a.example.com", "A.example.com"}}, "acme.names[1]: "},
		{"http CA", certs.ACMEConfig{Names: []string{"a.example.com"}, CA: "http://ca.example/dir"}, "acme.ca: "},
		{"bad email", certs.ACMEConfig{Names: []string{"a.example.com"}, Email: "ops"}, "acme.email: "},
		{"half EAB", certs.ACMEConfig{Names: []string{"a.example.com"}, EABKeyID: "kid"}, "acme.eab_key_id: "},
		{"EAB not base64url", certs.ACMEConfig{Names: []string{"a.example.com"}, EABKeyID: "kid", EABHMAC: "no/pe+"}, "acme.eab_hmac: "},
		{"EAB ok", certs.ACMEConfig{Names: []string{"a.example.com"}, EABKeyID: "kid", EABHMAC: "c2VjcmV0LWtleS0xMjM"}, ""},
		{"on-demand without allow", certs.ACMEConfig{OnDemand: certs.ACMEOnDemandConfig{Enabled: true}}, "acme.on_demand.allow: required"},
		{"on-demand bad pattern", certs.ACMEConfig{OnDemand: certs.ACMEOnDemandConfig{Enabled: true, Allow: []string{"*.com"}}}, "acme.on_demand.allow[0]: "},
		{"on-demand ok", certs.ACMEConfig{OnDemand: certs.ACMEOnDemandConfig{Enabled: true, Allow: []string{"*.devices.example.com"}, RequireDNSToHost: &f}}, ""},
		{"bad public address", certs.ACMEConfig{OnDemand: certs.ACMEOnDemandConfig{Enabled: true, Allow: []string{"a.example.com"}, PublicAddresses: []string{"host"}}}, "acme.on_demand.public_addresses[0]: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate()
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
	if !c.On() || strings.Join(c.Names, " ") != "a.example.com b.example.com c.example.com" || c.Email != "ops@example.com" {
		t.Fatalf("acme config %+v", c)
	}
	if !c.OnDemand.Enabled || c.OnDemand.RequireDNS() || len(c.OnDemand.Allow) != 1 || len(c.OnDemand.PublicAddresses) != 1 {
		t.Fatalf("on_demand %+v", c.OnDemand)
	}
}

// TestACMEAssemblyStartsNothing checks the assembly newApp does (also for
// check-config --load): nothing started, ACME names covered, NextProtos
// untouched so MQTT clients offering ALPN "mqtt" keep working.
func TestACMEAssemblyStartsNothing(t *testing.T) {
	cfg, err := parseConfig("tlsfront", []string{
		"--state-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--backend", "127.0.0.1:1883",
		"--acme-name", "mqtt.example.com",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(context.Background(), cfg, slog.New(slog.DiscardHandler), appOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.acme == nil || a.certs.Covers("other.example.com") {
		t.Fatalf("ACME not assembled: acme %v, covers an unrelated name %v", a.acme != nil, a.certs.Covers("other.example.com"))
	}
	tc := a.certs.TLSConfig()
	if tc.GetConfigForClient == nil || len(tc.NextProtos) != 0 {
		t.Fatalf("tls config: GetConfigForClient %v, NextProtos %v", tc.GetConfigForClient != nil, tc.NextProtos)
	}
	// Not started: nothing to give yet.
	if _, err := tc.GetCertificate(&tls.ClientHelloInfo{ServerName: "mqtt.example.com"}); err == nil {
		t.Fatal("served an ACME certificate before ACME ran")
	}
}

// TestACMEThroughProxy runs the whole app with an MQTT (tcp) listener
// against a real Pebble that validates with TLS-ALPN-01 through the
// proxy's TLS listener, then checks the issued certificate is served
// there and is as visible as a file certificate: on /status, with expiry
// series, probed, and a failed handshake for its name not taken for an
// unknown name.
func TestACMEThroughProxy(t *testing.T) {
	// Pebble's config names the ports it validates on before the app
	// binds them, so they are reserved here and released for the app.
	// HTTP-01 is not offered (no redirect listener), so pebble's HTTP
	// port only needs to be some closed port.
	httpPort, tlsPort := reservePort(t), reservePort(t)
	p := pebbletest.Start(t, pebbletest.Options{HTTPPort: httpPort, TLSPort: tlsPort})
	backend := testnet.Listen(t)
	testnet.Serve(t, backend, func(net.Conn) {})

	const name = "broker.tlsfront.test"
	obtained := make(chan struct{}, 1)
	ta := startAppWith(t, appOptions{tap: acmeTap{name: name, obtained: obtained}},
		"--listen", fmt.Sprintf("127.0.0.1:%d", tlsPort), "--backend", backend.Addr().String(),
		"--acme-ca", p.DirectoryURL, "--acme-ca-root", p.RootFile, "--acme-name", name,
		"--probe-ca", p.IssuedRootsFile(t), "--probe-interval", "200ms",
	)
	select {
	case <-obtained:
	case <-time.After(30 * time.Second):
		t.Fatalf("no certificate obtained in 30s\nlogs:\n%s\npebble:\n%s", ta.Logs(), p.Output())
	}
	roots := p.IssuedRoots(t)
	// The obtained event comes as the certificate is stored; it is in
	// memory a moment later.
	eventually(t, "a verified handshake through the proxy", 10*time.Second, func() bool {
		c, err := tls.Dial("tcp", ta.Addr("main"), &tls.Config{ServerName: name, RootCAs: roots, NextProtos: []string{"mqtt"}})
		if err != nil {
			return false
		}
		c.Close()
		return true
	})

	if _, _, st := adminGet(t, ta, "/status", "application/json"); !strings.Contains(st, name) {
		t.Errorf("/status does not list the ACME certificate for %s:\n%s", name, st)
	}
	if n := metricSum(t, ta, `tlsfront_acme_issuance_seconds_count{result="ok"}`); n != 1 {
		t.Errorf("issuance timed %v times, want 1", n)
	}
	if n := metricSum(t, ta, "tlsfront_acme_renewals_overdue"); n != 0 {
		t.Errorf("%v renewals overdue for a fresh certificate", n)
	}
	if n := metricSum(t, ta, `tlsfront_certificate_expiry_seconds{cert="acme/`+name); n <= 0 {
		t.Errorf("no expiry series for the ACME certificate (sum %v)", n)
	}
	eventually(t, "the ACME name probed and passing", 10*time.Second, func() bool {
		return metricSum(t, ta, `tlsfront_probe_success{listener="main",name="`+name+`"}`) == 1
	})
	// A client that does not trust the CA fails; the name is ours, so
	// that is not an unknown server name.
	failedBefore := metricSum(t, ta, "tlsfront_handshake_failures_total")
	if c, err := tls.Dial("tcp", ta.Addr("main"), &tls.Config{ServerName: name}); err == nil {
		c.Close()
		t.Fatal("a client without the CA's root completed the handshake")
	}
	eventually(t, "the failed handshake counted", 5*time.Second, func() bool {
		return metricSum(t, ta, "tlsfront_handshake_failures_total") > failedBefore
	})
	if n := metricSum(t, ta, `tlsfront_handshake_failures_total{listener="main",reason="unknown_sni"`); n != 0 {
		t.Errorf("%v failures for the ACME name classified unknown_sni", n)
	}
}

// reservePort reserves a loopback port and frees it for the app to bind.
func reservePort(t *testing.T) int {
	t.Helper()
	ln := testnet.Listen(t)
	ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// acmeTap signals when a certificate for name is obtained.
type acmeTap struct {
	report.Nop
	name     string
	obtained chan struct{}
}

func (a acmeTap) ACME(e report.ACME) {
	if e.Event == report.ACMEObtained && len(e.Names) == 1 && e.Names[0] == a.name {
		select {
		case a.obtained <- struct{}{}:
		default:
		}
	}
}
