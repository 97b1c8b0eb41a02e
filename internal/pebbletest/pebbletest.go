package pebbletest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/testnet"
)

// Options configure the pebble that Start runs.
type Options struct {
	// HTTPPort and TLSPort are the loopback ports pebble's validation
	// authority connects to for HTTP-01 and TLS-ALPN-01 challenges. The
	// caller binds them (or reserves them for the code under test);
	// pebble only dials them.
	HTTPPort, TLSPort int
	// AlwaysValid makes pebble accept every challenge without
	// validating it (PEBBLE_VA_ALWAYS_VALID).
	AlwaysValid bool
	// Validity is the lifetime of the certificates pebble issues. Zero
	// means 90 days, as real CAs issue: under about 50 minutes certmagic,
	// checking every 10 minutes, would always find a certificate
	// "expiring imminently".
	Validity time.Duration
}

// Server is a running pebble.
type Server struct {
	// DirectoryURL is the ACME directory URL, on https://127.0.0.1.
	DirectoryURL string
	// Roots trusts pebble's HTTPS endpoints (not the certificates it
	// issues; see IssuedRoots). A test may add certificates to it, for
	// instance the root of a front it puts between client and pebble.
	Roots *x509.CertPool
	// RootFile is the PEM file of the root in Roots, for code that takes
	// its CA roots from a file.
	RootFile string

	mgmt   string // management endpoint base URL
	client *http.Client
	out    *testnet.Buffer
}

// Start runs pebble with its own loopback listeners and an endpoint
// certificate made here, and returns once its directory answers (within
// 15s, or the test fails). Pebble runs without its validation sleeps
// (PEBBLE_VA_NOSLEEP), rejects no nonces and reuses no authorizations.
// It is killed and waited for when the test ends, and its output is
// logged then if the test failed.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	bin := binary(t)
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
	rootFile, err := pki.WriteFile(dir, "root.pem", root.CertPEM(), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	validity := o.Validity
	if validity == 0 {
		validity = 90 * 24 * time.Hour
	}
	// The DNS server listens on port 0 first: started after the ports
	// below were chosen and freed, it could be given one of them.
	dnsAddr := startDNS(t)
	ports := testnet.FreePorts(t, 2)
	listen := fmt.Sprintf("127.0.0.1:%d", ports[0])
	mgmt := fmt.Sprintf("127.0.0.1:%d", ports[1])
	cfgJSON, err := json.Marshal(map[string]any{"pebble": map[string]any{
		"listenAddress":           listen,
		"managementListenAddress": mgmt,
		"certificate":             certPath,
		"privateKey":              keyPath,
		"httpPort":                o.HTTPPort,
		"tlsPort":                 o.TLSPort,
		"ocspResponderURL":        "",
		"keyAlgorithm":            "ecdsa",
		"profiles": map[string]any{"default": map[string]any{
			"description": "test", "validityPeriod": int(validity / time.Second),
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	cfgPath, err := pki.WriteFile(dir, "pebble.json", cfgJSON, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{
		DirectoryURL: "https://" + listen + "/dir",
		Roots:        pki.Pool(root),
		RootFile:     rootFile,
		mgmt:         "https://" + mgmt,
	}
	s.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.Roots}}}

	cmd := exec.Command(bin, "-config", cfgPath, "-dnsserver", dnsAddr)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	if o.AlwaysValid {
		cmd.Env = append(cmd.Env, "PEBBLE_VA_ALWAYS_VALID=1")
	}
	proc := testnet.Run(t, cmd)
	s.out = proc.Out
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := s.client.Get(s.DirectoryURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble did not answer %s: %v\n%s", s.DirectoryURL, err, s.out.String())
		}
		select {
		case <-proc.Exited:
			t.Fatalf("pebble exited:\n%s", s.out.String())
		case <-tick.C:
		}
	}
}

// IssuedRoots fetches, from pebble's management endpoint, the root that
// the certificates it issues chain to. Pebble makes a new one each run.
func (s *Server) IssuedRoots(t testing.TB) *x509.CertPool {
	t.Helper()
	body := s.rootsPEM(t)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(body) {
		t.Fatalf("no root in /roots/0: %q", bytes.TrimSpace(body))
	}
	return pool
}

// IssuedRootsFile writes the roots IssuedRoots fetches to a PEM file in a
// test folder and returns its path.
func (s *Server) IssuedRootsFile(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pebble-roots.pem")
	if err := os.WriteFile(path, s.rootsPEM(t), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// rootsPEM is pebble's /roots/0.
func (s *Server) rootsPEM(t testing.TB) []byte {
	t.Helper()
	resp, err := s.client.Get(s.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// Output returns what pebble has written to stdout and stderr so far.
func (s *Server) Output() string { return s.out.String() }

// binary returns the pebble binary, skipping the test when it is missing
// locally; in CI (env CI set) a missing pebble is a failure.
func binary(t testing.TB) string {
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
	testnet.Missing(t, "pebble (on PATH or in $(go env GOPATH)/bin)", "go install github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.1")
	return ""
}

// startDNS answers A 127.0.0.1 for every name, over TCP (what pebble's
// validation authority uses with -dnsserver), and nothing else. It is
// shut down and waited for when the test ends.
func startDNS(t testing.TB) string {
	t.Helper()
	ln := testnet.Listen(t)
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
	// Shutdown refuses a server not started yet, so wait until it is.
	started, done := make(chan struct{}), make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { defer close(done); srv.ActivateAndServe() }()
	select {
	case <-started:
	case <-done:
		t.Fatal("dns server for pebble did not start")
	}
	t.Cleanup(func() { srv.Shutdown(); <-done })
	return ln.Addr().String()
}
