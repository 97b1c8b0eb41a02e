package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/certs"
	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/pki/pkitest"
	"github.com/tlsfront/tlsfront/internal/testnet"
)

// checkFixture is a CA and files for tlsfront check.
type checkFixture struct {
	ca                  *pkitest.CA
	dir, root, bundle   string
	leafOnly, full, key string
	otherKey            string
	aiaURL              string
	expired, expiredKey string
}

func newCheckFixture(t *testing.T) *checkFixture {
	t.Helper()
	ca := pkitest.NewCA(t)
	f := &checkFixture{ca: ca, dir: t.TempDir()}
	w := func(name string, data []byte, mode os.FileMode) string {
		p, err := pki.WriteFile(f.dir, name, data, mode)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// An AIA server on loopback, so the default HTTP fetch is exercised.
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { rw.Write(ca.Intermediate.DER) }))
	t.Cleanup(srv.Close)
	f.aiaURL = srv.URL + "/inter.der"
	leaf := ca.Leaf(pki.Options{DNSNames: []string{"broker.example", "localhost"}, AIA: f.aiaURL})
	other := ca.Leaf(pki.Options{})
	old := ca.Leaf(pki.Options{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	f.root = w("root.pem", ca.Root.CertPEM(), 0o644)
	f.leafOnly = w("leaf.pem", leaf.CertPEM(), 0o644)
	f.full = w("full.pem", pki.ChainPEM(ca.Intermediate, leaf, ca.Root), 0o644)
	f.key = w("key.pem", leaf.KeyPEM(), 0o600)
	f.otherKey = w("other-key.pem", other.KeyPEM(), 0o600)
	f.expired = w("expired.pem", pki.ChainPEM(old, ca.Intermediate), 0o644)
	f.expiredKey = w("expired-key.pem", old.KeyPEM(), 0o600)
	f.bundle = filepath.Join(f.dir, "bundle")
	if err := os.Mkdir(f.bundle, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.WriteFile(f.bundle, "inter.pem", ca.Intermediate.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func runCheckArgs(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := run(ctx, append([]string{"check"}, args...), &stdout, &stderr)
	t.Logf("tlsfront check %s\n%s%s", strings.Join(args, " "), stdout.String(), stderr.String())
	return stdout.String(), stderr.String(), err
}

func TestCheckFile(t *testing.T) {
	f := newCheckFixture(t)
	cases := []struct {
		name     string
		args     []string
		fail     bool
		contains []string
		absent   []string
	}{
		{
			name: "leaf only completed from the bundle folder",
			args: []string{"--cert", f.leafOnly, "--key", f.key, "--name", "broker.example", "--trust-ca", f.root, "--bundle-dir", f.bundle, "--no-fetch"},
			contains: []string{
				"ok     the private key matches",
				"completed the chain: added \"tlsfront test intermediate\"",
				"0 leaf", "1 intermediate", "from      the bundle file",
				"(not served: clients must already trust it)", "result: OK",
			},
		},
		{
			name:     "leaf only completed from AIA",
			args:     []string{"--cert", f.leafOnly, "--key", f.key, "--trust-ca", f.root},
			contains: []string{"its AIA URL " + f.aiaURL, "1 intermediate", "result: OK", "no --name given"},
		},
		{
			name:     "leaf only, fetching off, nothing to complete with",
			args:     []string{"--cert", f.leafOnly, "--key", f.key, "--trust-ca", f.root, "--no-fetch"},
			fail:     true,
			contains: []string{"error  chain does not verify", "is turned off", "result: FAIL"},
		},
		{
			name:     "out of order with root, key found nowhere",
			args:     []string{"--cert", f.full, "--trust-ca", f.root, "--name", "localhost"},
			contains: []string{"was certificate 2 of 3", "dropped the root", "whether it matches was not checked", "result: OK"},
			absent:   []string{"private key matches"},
		},
		{
			name:     "mismatched key",
			args:     []string{"--cert", f.full, "--key", f.otherKey, "--trust-ca", f.root},
			fail:     true,
			contains: []string{"error  private key does not match", "install the matching pair"},
		},
		{
			name:     "wrong name",
			args:     []string{"--cert", f.full, "--key", f.key, "--trust-ca", f.root, "--name", "mqtt.other.example"},
			fail:     true,
			contains: []string{`"mqtt.other.example" is routed here but the certificate covers only broker.example, localhost`},
		},
		{
			name:     "expired",
			args:     []string{"--cert", f.expired, "--key", f.expiredKey, "--trust-ca", f.root},
			fail:     true,
			contains: []string{"certificate has expired", "minutes ago)", "EXPIRED", "result: FAIL: 1 problem(s)"},
		},
		{
			name:     "untrusted against the system roots",
			args:     []string{"--cert", f.full, "--key", f.key, "--no-fetch"},
			fail:     true,
			contains: []string{"which the system trust store does not hold"},
		},
		{
			name:     "extra store warns",
			args:     []string{"--cert", f.full, "--key", f.key, "--trust-ca", f.root, "--extra-store", "legacy=" + f.otherKeyStore(t)},
			contains: []string{`warn   clients that trust only the "legacy" store cannot verify`, "result: OK with 1 warning(s)"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := runCheckArgs(t, tc.args...)
			if tc.fail {
				var se *silentError
				if !errors.As(err, &se) {
					t.Errorf("error %v (%T), want a silentError after printing", err, err)
				}
			} else if err != nil {
				t.Errorf("check failed: %v", err)
			}
			for _, s := range tc.contains {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q", s)
				}
			}
			for _, s := range tc.absent {
				if strings.Contains(out, s) {
					t.Errorf("output has %q", s)
				}
			}
			if strings.Contains(out, "PRIVATE KEY") {
				t.Error("output shows key material")
			}
		})
	}
}

// otherKeyStore writes a store holding an unrelated root.
func (f *checkFixture) otherKeyStore(t *testing.T) string {
	r, err := pki.NewRoot("some other root")
	if err != nil {
		t.Fatal(err)
	}
	p, err := pki.WriteFile(f.dir, "other-root.pem", r.CertPEM(), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckJSON(t *testing.T) {
	f := newCheckFixture(t)
	cases := []struct {
		name   string
		args   []string
		ok     bool
		served int
	}{
		{"complete", []string{"--cert", f.leafOnly, "--key", f.key, "--trust-ca", f.root, "--bundle-dir", f.bundle}, true, 2},
		{"incomplete", []string{"--cert", f.leafOnly, "--key", f.key, "--trust-ca", f.root, "--no-fetch"}, false, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := runCheckArgs(t, append(tc.args, "--json")...)
			if (err == nil) != tc.ok {
				t.Errorf("err = %v, want ok=%v", err, tc.ok)
			}
			var d certs.Diagnosis
			if err := json.Unmarshal([]byte(out), &d); err != nil {
				t.Fatalf("not JSON: %v", err)
			}
			if d.OK != tc.ok || len(d.Chain) != tc.served || d.Chain[0].Role != "leaf" || d.Chain[0].DaysLeft < 80 {
				t.Errorf("diagnosis ok=%v chain=%+v", d.OK, d.Chain)
			}
			for _, fi := range d.Findings {
				if fi.Severity == "" || fi.Message == "" {
					t.Errorf("empty finding %+v", fi)
				}
			}
		})
	}
}

func TestCheckUsage(t *testing.T) {
	cases := []struct {
		name string
		args []string
	}{
		{"nothing to check", nil},
		{"both cert and connect", []string{"--cert", "a.pem", "--connect", "127.0.0.1:1"}},
		{"key with connect", []string{"--connect", "127.0.0.1:1", "--key", "k.pem"}},
		{"bad extra store", []string{"--cert", "a.pem", "--extra-store", "nofile"}},
		{"stray argument", []string{"--cert", "a.pem", "extra"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runCheckArgs(t, tc.args...)
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Errorf("error %v (%T), want a usageError", err, err)
			}
		})
	}
	t.Run("missing file names it", func(t *testing.T) {
		_, _, err := runCheckArgs(t, "--cert", "/nonexistent/cert.pem")
		var fe *certs.FileError
		if !errors.As(err, &fe) || fe.File != "/nonexistent/cert.pem" {
			t.Errorf("error %v, want a FileError naming the file", err)
		}
	})
}

// checkServer is a real TLS server on loopback serving chain; it is
// closed, and its goroutines waited for, when the test ends.
func checkServer(t *testing.T, chain [][]byte, key *pki.Cert) string {
	t.Helper()
	ln := tls.NewListener(testnet.Listen(t), &tls.Config{Certificates: []tls.Certificate{{Certificate: chain, PrivateKey: key.Key}}})
	testnet.Serve(t, ln, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_ = c.(*tls.Conn).Handshake()
	})
	return ln.Addr().String()
}

func TestCheckConnect(t *testing.T) {
	f := newCheckFixture(t)
	ca := f.ca
	leaf := ca.Leaf(pki.Options{})
	cases := []struct {
		name     string
		chain    [][]byte
		args     []string
		fail     bool
		contains []string
	}{
		{
			name:  "leaf only: missing intermediate",
			chain: [][]byte{leaf.DER}, args: []string{"--bundle-dir", f.bundle},
			fail:     true,
			contains: []string{"does not send the intermediate \"tlsfront test intermediate\"", "certificate unknown", "chain it should send:", "result: FAIL"},
		},
		{
			name:  "leaf only, intermediate found nowhere",
			chain: [][]byte{leaf.DER}, fail: true,
			contains: []string{"the chain is incomplete", "configure the server to send it"},
		},
		{
			name:     "wrong order and root included",
			chain:    [][]byte{leaf.DER, ca.Root.DER, ca.Intermediate.DER},
			contains: []string{"warn   the server sends the root", "chain the server sends (in its order):", "1 root", "2 intermediate", "result: OK with 1 warning(s)"},
		},
		{
			name:  "name mismatch",
			chain: [][]byte{leaf.DER, ca.Intermediate.DER}, args: []string{"--name", "broker.example"},
			fail:     true,
			contains: []string{`"broker.example" was asked for but the certificate covers only localhost, 127.0.0.1`, `SNI "broker.example"`},
		},
		{
			name:     "good",
			chain:    [][]byte{leaf.DER, ca.Intermediate.DER},
			contains: []string{"the leaf covers 127.0.0.1", "can verify the chain", "result: OK: clients can connect"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := checkServer(t, tc.chain, leaf)
			out, _, err := runCheckArgs(t, append([]string{"--connect", addr, "--trust-ca", f.root, "--no-fetch"}, tc.args...)...)
			if tc.fail != (err != nil) {
				t.Errorf("err = %v, want failure %v", err, tc.fail)
			}
			for _, s := range tc.contains {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q", s)
				}
			}
		})
	}
	t.Run("nothing listening", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if _, _, err := runCheckArgs(t, "--connect", addr, "--timeout", "2s"); err == nil || !strings.Contains(err.Error(), "connect to "+addr) {
			t.Errorf("error %v, want one naming %s", err, addr)
		}
	})
}

func TestCheckTrustConfig(t *testing.T) {
	f := newCheckFixture(t)
	cfgFile := filepath.Join(f.dir, "tlsfront.yaml")
	yaml := "trust:\n  ca_file: " + f.root + "\n  bundle_dir: " + f.bundle + "\n  fetch_aia: false\n  expiry_warning: 720h\n  extra_stores:\n    legacy: " + f.root + "\n"
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"--config", cfgFile, "--cert", f.full, "--key", f.key, "--listen", "127.0.0.1:0", "--backend", "127.0.0.1:1", "--state-dir", filepath.Join(f.dir, "state")}
	cases := []struct {
		name  string
		args  []string
		fetch bool
		warn  time.Duration
	}{
		{"from the file", nil, false, 720 * time.Hour},
		{"flags override", []string{"--no-fetch-aia=false", "--expiry-warning", "48h"}, true, 48 * time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			cfg, err := parseConfig("tlsfront", append(append([]string(nil), base...), tc.args...), &stderr)
			if err != nil {
				t.Fatalf("parseConfig: %v\n%s", err, stderr.String())
			}
			trust := cfg.Trust
			trust.CacheDir = filepath.Join(cfg.StateDir, "intermediates")
			v, err := certs.LoadTrust(trust)
			if err != nil {
				t.Fatal(err)
			}
			if v.Roots == nil || v.RootsName != f.root || v.BundleDir != f.bundle || v.FetchAIA != tc.fetch || v.ExpiryWarning != tc.warn {
				t.Errorf("verify() = %+v", v)
			}
			if v.ExtraStores["legacy"] == nil {
				t.Error("extra store legacy not loaded")
			}
			if want := filepath.Join(f.dir, "state", "intermediates"); v.CacheDir != want {
				t.Errorf("CacheDir = %q, want %q", v.CacheDir, want)
			}
			// The point of it all: a leaf-only file loads, completed from
			// the bundle folder.
			b, err := certs.LoadFile(certs.Source{CertFile: f.leafOnly, KeyFile: f.key}, v)
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Cert.Certificate) != 2 {
				t.Errorf("served %d certificates, want leaf and intermediate", len(b.Cert.Certificate))
			}
		})
	}
	t.Run("bad values are refused", func(t *testing.T) {
		for _, args := range [][]string{
			{"--expiry-warning", "-1h"},
			{"--extra-store", "=x"},
		} {
			var stderr bytes.Buffer
			if _, err := parseConfig("tlsfront", append(append([]string(nil), base...), args...), &stderr); err == nil {
				t.Errorf("%v accepted", args)
			}
		}
		if _, err := certs.LoadTrust(certs.TrustOptions{BundleDir: f.leafOnly}); err == nil || !strings.Contains(err.Error(), "trust.bundle_dir") {
			t.Errorf("a file as bundle folder: %v", err)
		}
	})
}
