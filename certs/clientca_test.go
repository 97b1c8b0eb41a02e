package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/pki/pkitest"
	"github.com/tlsfront/tlsfront/internal/testnet"
)

func TestParseClientCAs(t *testing.T) {
	a, b := pkitest.NewCA(t), pkitest.NewCA(t)
	two := pki.ChainPEM(a.Root, b.Root)
	tests := []struct {
		name  string
		data  []byte
		count int
		err   string
	}{
		{name: "two roots", data: two, count: 2},
		{name: "root and intermediate", data: pki.ChainPEM(a.Root, a.Intermediate), count: 2},
		{name: "empty", data: nil, err: "empty"},
		{name: "blank", data: []byte("\n\n"), err: "empty"},
		{name: "not pem", data: []byte("hello"), err: "not a complete PEM block"},
		{name: "truncated", data: two[:len(two)-40], err: "truncated"},
		{name: "private key", data: append(pki.ChainPEM(a.Root), a.Root.KeyPEM()...), err: `"PRIVATE KEY"`},
		{name: "garbled der", data: []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), err: "certificate 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pool, n, err := ParseClientCAs(tc.data)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || pool != nil {
					t.Fatalf("ParseClientCAs = %v, %d, %v; want an error saying %q", pool, n, err, tc.err)
				}
				if strings.Contains(err.Error(), "PRIVATE KEY-----") {
					t.Fatalf("error %q echoes the file", err)
				}
				return
			}
			if err != nil || n != tc.count || pool == nil {
				t.Fatalf("ParseClientCAs = %v, %d, %v; want %d CAs", pool, n, err, tc.count)
			}
		})
	}
}

func FuzzParseClientCAs(f *testing.F) {
	ca := pkitest.NewCA(f)
	f.Add(pki.ChainPEM(ca.Root, ca.Intermediate))
	f.Add(ca.Root.KeyPEM())
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pool, n, err := ParseClientCAs(data)
		if err != nil {
			if pool != nil || n != 0 {
				t.Fatalf("error %v with a pool of %d", err, n)
			}
			return
		}
		if pool == nil || n == 0 {
			t.Fatalf("no error but no CA either")
		}
	})
}

// mtlsHandshake runs a real handshake over loopback between a server
// configured by cas and a client presenting client (nil for none). It
// returns the server's error.
func mtlsHandshake(t *testing.T, cas *ClientCAs, srvCA *pkitest.CA, client *tls.Certificate) error {
	t.Helper()
	srvLeaf := srvCA.Leaf(pki.Options{})
	cfg := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{srvLeaf.DER, srvCA.Intermediate.DER}, PrivateKey: srvLeaf.Key}}}
	cas.Configure(cfg)
	ln := testnet.Listen(t)
	srvErr := make(chan error, 1)
	testnet.Serve(t, ln, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		srvErr <- tls.Server(c, cfg).Handshake()
	})
	cc := srvCA.ClientConfig("localhost")
	if client != nil {
		cc.Certificates = []tls.Certificate{*client}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d := tls.Dialer{Config: cc}
	if c, err := d.DialContext(ctx, "tcp", ln.Addr().String()); err == nil {
		// TLS 1.3 clients finish before the server checks them: read
		// to learn the server's verdict.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		c.Read(make([]byte, 1))
		c.Close()
	}
	return <-srvErr
}

func TestClientCAsReloadWhileServing(t *testing.T) {
	srvCA, oldCA, newCA := pkitest.NewCA(t), pkitest.NewCA(t), pkitest.NewCA(t)
	certOf := func(ca *pkitest.CA) *tls.Certificate {
		l := ca.Leaf(pki.Options{DNSNames: []string{"device-1"}})
		return &tls.Certificate{Certificate: [][]byte{l.DER, ca.Intermediate.DER}, PrivateKey: l.Key}
	}
	oldClient, newClient := certOf(oldCA), certOf(newCA)
	dir := t.TempDir()
	file := filepath.Join(dir, "clients.pem")
	writeFile(t, file, oldCA.Root.CertPEM())

	cas := NewClientCAs(true)
	if err := mtlsHandshake(t, cas, srvCA, oldClient); err == nil {
		t.Fatal("a verifier with no CA loaded accepted a client")
	}
	if out, n, err := cas.Reload(file); out != Reloaded || n != 1 || err != nil {
		t.Fatalf("Reload = %s, %d, %v", out, n, err)
	}
	steps := []struct {
		name   string
		change []byte // new file content; nil keeps it
		out    Outcome
		client *tls.Certificate
		ok     bool
	}{
		{name: "old client accepted", out: Unchanged, client: oldClient, ok: true},
		{name: "new client refused before rotation", out: Unchanged, client: newClient, ok: false},
		{name: "no client certificate refused", out: Unchanged, client: nil, ok: false},
		{name: "rotated: new accepted", change: newCA.Root.CertPEM(), out: Reloaded, client: newClient, ok: true},
		{name: "rotated: old refused", out: Unchanged, client: oldClient, ok: false},
		{name: "garbled bundle keeps the pool", change: []byte("-----BEGIN CERT"), out: Failed, client: newClient, ok: true},
		{name: "empty bundle keeps the pool", change: []byte{}, out: Failed, client: newClient, ok: true},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.change != nil {
				writeFile(t, file, st.change)
			}
			out, _, err := cas.Reload(file)
			if out != st.out {
				t.Fatalf("Reload = %s (%v), want %s", out, err, st.out)
			}
			if out == Failed {
				var fe *FileError
				if !errors.As(err, &fe) || fe.File != file {
					t.Fatalf("Reload error %v does not name %s", err, file)
				}
			}
			err = mtlsHandshake(t, cas, srvCA, st.client)
			if st.ok && err != nil {
				t.Fatalf("handshake refused: %v", err)
			}
			if !st.ok && err == nil {
				t.Fatal("handshake accepted, want refused")
			}
		})
	}
}

func TestClientCAsOptional(t *testing.T) {
	srvCA, clientCA := pkitest.NewCA(t), pkitest.NewCA(t)
	file := filepath.Join(t.TempDir(), "clients.pem")
	writeFile(t, file, clientCA.Root.CertPEM())
	cas := NewClientCAs(false)
	if _, _, err := cas.Reload(file); err != nil {
		t.Fatal(err)
	}
	if err := mtlsHandshake(t, cas, srvCA, nil); err != nil {
		t.Fatalf("optional client auth refused a client without a certificate: %v", err)
	}
	l := srvCA.Leaf(pki.Options{DNSNames: []string{"stranger"}})
	stranger := &tls.Certificate{Certificate: [][]byte{l.DER, srvCA.Intermediate.DER}, PrivateKey: l.Key}
	if err := mtlsHandshake(t, cas, srvCA, stranger); err == nil {
		t.Fatal("optional client auth accepted a certificate from an unknown CA")
	}
}

func TestClientCAsUnreadable(t *testing.T) {
	cas := NewClientCAs(true)
	dir := t.TempDir()
	if out, _, err := cas.Reload(dir); out != Failed || err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Reload(directory) = %s, %v; want failed naming it", out, err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
}

// ClientCAs adds client certificate verification to a listener's
// configuration; Reload swaps the CA bundle for the next handshakes.
func ExampleClientCAs() {
	cas := NewClientCAs(true)
	_, n, err := cas.Reload("/etc/tlsfront/client-cas.pem")
	if err != nil {
		fmt.Println("not starting:", err)
		return
	}
	fmt.Println(n, "client CAs")
	cfg := &tls.Config{ /* GetCertificate: store.GetCertificate, ... */ }
	cas.Configure(cfg)
}
