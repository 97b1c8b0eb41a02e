package main

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/certs"
	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/testnet"
	"github.com/tlsfront/tlsfront/proxy"
)

// writeCertbotPair writes live/<name>/fullchain.pem and privkey.pem.
func (f *reloadFixture) writeCertbotPair(t *testing.T, live, name string) *pki.Cert {
	t.Helper()
	leaf := f.ca.Leaf(pki.Options{DNSNames: []string{name}})
	dir := filepath.Join(live, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	atomicWrite(t, filepath.Join(dir, "privkey.pem"), leaf.KeyPEM())
	atomicWrite(t, filepath.Join(dir, "fullchain.pem"), pki.ChainPEM(leaf, f.ca.Intermediate))
	return leaf
}

// serialFor is the serial a new handshake asking for name gets, "" when
// it does not verify for name.
func (f *reloadFixture) serialFor(addr, name string) string {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: f.ca.ClientConfig(name)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return ""
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
}

// waitFor polls until name is served want ("" for: no longer served), for
// up to 5 s.
func (f *reloadFixture) waitFor(t *testing.T, addr, name, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	got := ""
	for time.Now().Before(deadline) {
		if got = f.serialFor(addr, name); got == want {
			return
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
	t.Fatalf("%s served %q 5s after the folder changed, want %q", name, got, want)
}

// A certificates folder in the YAML is served by SNI and watched: a new
// customer's subfolder is served, a removed one no longer is.
func TestWatchCertificateFolder(t *testing.T) {
	f := newReloadFixture(t)
	live := t.TempDir()
	a := f.writeCertbotPair(t, live, "a.example.com")
	ta, addr := startFolderApp(t, f, live)
	if got := f.serialFor(addr, "a.example.com"); got != serialOf(a) {
		t.Fatalf("a.example.com served %q, want %s", got, serialOf(a))
	}
	b := f.writeCertbotPair(t, live, "b.example.com")
	f.waitFor(t, addr, "b.example.com", serialOf(b))
	if err := os.RemoveAll(filepath.Join(live, "a.example.com")); err != nil {
		t.Fatal(err)
	}
	f.waitFor(t, addr, "a.example.com", "")
	if !strings.Contains(ta.Logs(), "certificate removed, no longer served") {
		t.Errorf("no log line for the removed certificate:\n%s", ta.Logs())
	}
	b2 := f.writeCertbotPair(t, live, "b.example.com")
	f.waitFor(t, addr, "b.example.com", serialOf(b2))
}

func TestValidateCertificateFolders(t *testing.T) {
	tests := []struct {
		name string
		cc   certs.CertConfig
		want string // in the error; "" for none
	}{
		{name: "certbot live", cc: certs.CertConfig{Dir: "/etc/letsencrypt/live"}},
		{name: "pattern", cc: certs.CertConfig{Dir: "/certs", Cert: "*.crt", Key: "{name}.key"}},
		{name: "pattern without star", cc: certs.CertConfig{Dir: "/certs", Cert: "server.crt"}, want: "certificates[0]: cert:"},
		{name: "key without name", cc: certs.CertConfig{Dir: "/certs", Cert: "*.crt", Key: "server.key"}, want: "{name}"},
		{name: "no cert, no dir", cc: certs.CertConfig{Key: "k.pem"}, want: "certificates[0].cert: missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := defaultConfig()
			c.Listeners = []proxy.ListenerConfig{{Listen: "127.0.0.1:0", Backend: "127.0.0.1:1"}}
			c.Certificates = []certs.CertConfig{tc.cc}
			err := c.validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("validate = %v, want %q", err, tc.want)
			}
		})
	}
}

// kubeSwap writes a Kubernetes secret volume into dir as the kubelet
// does: files in a new ..<stamp> folder, the ..data symlink swapped to it
// by a rename, tls.crt/tls.key pointing through ..data, the old folder
// removed.
func (f *reloadFixture) kubeSwap(t *testing.T, dir, stamp, name string) *pki.Cert {
	t.Helper()
	leaf := f.ca.Leaf(pki.Options{DNSNames: []string{name}})
	data := "..2026_" + stamp
	if err := os.MkdirAll(filepath.Join(dir, data), 0o755); err != nil {
		t.Fatal(err)
	}
	atomicWrite(t, filepath.Join(dir, data, "tls.crt"), pki.ChainPEM(leaf, f.ca.Intermediate))
	atomicWrite(t, filepath.Join(dir, data, "tls.key"), leaf.KeyPEM())
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	if err := os.Symlink(data, filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"tls.crt", "tls.key"} {
		if _, err := os.Lstat(filepath.Join(dir, n)); err != nil {
			if err := os.Symlink(filepath.Join("..data", n), filepath.Join(dir, n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			t.Fatal(err)
		}
	}
	return leaf
}

// A folder of Kubernetes TLS secrets is watched: a secret's ..data swap
// is served.
func TestWatchKubernetesSecretsFolder(t *testing.T) {
	f := newReloadFixture(t)
	secrets := t.TempDir()
	a := f.kubeSwap(t, filepath.Join(secrets, "customer-a"), "1", "a.example.com")
	_, addr := startFolderApp(t, f, secrets)
	if got := f.serialFor(addr, "a.example.com"); got != serialOf(a) {
		t.Fatalf("a.example.com served %q, want %s", got, serialOf(a))
	}
	a2 := f.kubeSwap(t, filepath.Join(secrets, "customer-a"), "2", "a.example.com")
	f.waitFor(t, addr, "a.example.com", serialOf(a2))
	a3 := f.kubeSwap(t, filepath.Join(secrets, "customer-a"), "3", "a.example.com")
	f.waitFor(t, addr, "a.example.com", serialOf(a3))
}

// startFolderApp starts tlsfront serving the certificate folder dir,
// watched with a short debounce, and returns it with its listener's
// address once the watch runs.
func startFolderApp(t *testing.T, f *reloadFixture, dir string) (*testApp, string) {
	t.Helper()
	cfgFile := filepath.Join(t.TempDir(), "tlsfront.yaml")
	writeConfig(t, cfgFile, `
certificates:
  - dir: `+dir+`
trust:
  ca_file: `+f.root+`
reload:
  debounce: 30ms
listeners:
  - listen: 127.0.0.1:0
    backend: `+testnet.Echo(t)+`
`)
	ta := startApp(t, noClientRate, "--config", cfgFile)
	ta.WaitLog("watching certificate files", 5*time.Second)
	return ta, ta.Addr("tcp-0")
}
