package certs_test

// A real Pebble ACME server on loopback, with a tiny DNS server in front of
// its validation authority so that test names resolve to 127.0.0.1.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/testnet"
)

// findPebble returns the pebble binary, skipping the test when it is
// missing locally; in CI (env CI set) a missing pebble is a failure.
func findPebble(t *testing.T) string {
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
	msg := "pebble not found on PATH or in $(go env GOPATH)/bin; install it with: go install github.com/letsencrypt/pebble/v2/cmd/pebble@latest"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// freePort reserves a loopback port and frees it for pebble to bind.
func freePort(t *testing.T) int {
	t.Helper()
	ln := testnet.Listen(t)
	ln.Close()
	return port(ln)
}

// startDNS answers A 127.0.0.1 for every name, over TCP (what pebble's
// validation authority uses with -dnsserver), and nothing else.
func startDNS(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for _, q := range r.Question {
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		w.WriteMsg(m)
	})}
	done := make(chan struct{})
	go func() { defer close(done); srv.ActivateAndServe() }()
	t.Cleanup(func() { srv.Shutdown(); <-done })
	return ln.Addr().String()
}

type pebbleOptions struct {
	httpPort, tlsPort int
	alwaysValid       bool
	validity          time.Duration // default 1h
	eab               map[string]string
}

type pebble struct {
	dir     string         // ACME directory URL
	roots   *x509.CertPool // trusts pebble's HTTPS endpoints
	mgmt    string
	client  *http.Client
	out     *testnet.Buffer
	counted atomic.Int64 // requests through the counting front, see countingFront
}

// startPebble runs pebble with its own loopback listeners and a test
// certificate made here, and waits for its directory to answer.
func startPebble(t *testing.T, o pebbleOptions) *pebble {
	t.Helper()
	bin := findPebble(t)
	dir := t.TempDir()
	root, err := pki.NewRoot("pebble endpoint root")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := root.Issue(pki.Options{CommonName: "localhost", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	certPath, err := pki.WriteFile(dir, "cert.pem", leaf.CertPEM(), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	keyPath, err := pki.WriteFile(dir, "key.pem", leaf.KeyPEM(), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	validity := o.validity
	if validity == 0 {
		// Real CAs' 90 days. Under about 50 minutes certmagic, checking
		// every 10 minutes, would always find it "expiring imminently".
		validity = 90 * 24 * time.Hour
	}
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	mgmt := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  listen,
		"managementListenAddress":        mgmt,
		"certificate":                    certPath,
		"privateKey":                     keyPath,
		"httpPort":                       o.httpPort,
		"tlsPort":                        o.tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": len(o.eab) > 0,
		"externalAccountMACKeys":         o.eab,
		"keyAlgorithm":                   "ecdsa",
		"profiles": map[string]any{"default": map[string]any{
			"description": "test", "validityPeriod": int(validity / time.Second),
		}},
	}}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath, err := pki.WriteFile(dir, "pebble.json", cfgJSON, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p := &pebble{dir: "https://" + listen + "/dir", mgmt: "https://" + mgmt, roots: pki.Pool(root), out: &testnet.Buffer{}}
	p.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.roots}}}

	cmd := exec.Command(bin, "-config", cfgPath, "-dnsserver", startDNS(t))
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	if o.alwaysValid {
		cmd.Env = append(cmd.Env, "PEBBLE_VA_ALWAYS_VALID=1")
	}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start pebble: %v", err)
	}
	waited := make(chan struct{})
	go func() { defer close(waited); cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-waited
		if t.Failed() {
			t.Logf("pebble output:\n%s", p.out.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := p.client.Get(p.dir)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-waited:
			t.Fatalf("pebble exited:\n%s", p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble did not answer %s: %v\n%s", p.dir, err, p.out.String())
		}
	}
	return p
}

// issuedRoots fetches the root pebble signs certificates under.
func (p *pebble) issuedRoots(t *testing.T) *x509.CertPool {
	t.Helper()
	resp, err := p.client.Get(p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(body) {
		b, _ := pem.Decode(body)
		t.Fatalf("no root in /roots/0: %q", b)
	}
	return pool
}

// countingFront puts a reverse proxy that counts requests in front of
// pebble's directory. Every ACME client starts by fetching the directory,
// so zero requests here means the CA was never contacted.
func (p *pebble) countingFront(t *testing.T) string {
	t.Helper()
	target, err := url.Parse(p.dir)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(&url.URL{Scheme: target.Scheme, Host: target.Host})
			r.Out.URL.Path = target.Path
		},
		Transport: p.client.Transport,
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.counted.Add(1)
		rp.ServeHTTP(w, r)
	}))
	root, err := pki.NewRoot("front root")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := root.Issue(pki.Options{CommonName: "localhost", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.DER}, PrivateKey: leaf.Key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	p.roots.AddCert(root.Cert)
	return srv.URL + "/dir"
}

func port(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// serveTLS completes handshakes on ln with cfg, then holds each
// connection until the peer closes it. It is stopped and waited for at
// cleanup.
func serveTLS(t *testing.T, ln net.Listener, cfg *tls.Config) {
	t.Helper()
	testnet.Serve(t, ln, func(c net.Conn) {
		tc := tls.Server(c, cfg)
		tc.SetDeadline(time.Now().Add(20 * time.Second))
		if tc.Handshake() == nil {
			// Pebble closes after the handshake; a test client
			// closes after reading the certificate.
			io.Copy(io.Discard, tc)
		}
	})
}

// serveHTTP serves h on ln until cleanup.
func serveHTTP(t *testing.T, ln net.Listener, h http.Handler) {
	t.Helper()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
}

// handshake connects to addr asking for name and returns the verified
// leaf, or the handshake error.
func handshake(addr net.Addr, name string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := (&tls.Dialer{NetDialer: d, Config: &tls.Config{ServerName: name, RootCAs: roots}}).DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	st := c.(*tls.Conn).ConnectionState()
	if len(st.PeerCertificates) == 0 {
		return nil, errors.New("no certificate")
	}
	return st.PeerCertificates[0], nil
}
