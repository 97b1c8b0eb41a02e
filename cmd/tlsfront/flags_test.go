package main

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/tlsfront/tlsfront/certs"
	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/pki/pkitest"
	"github.com/tlsfront/tlsfront/internal/testnet"
)

// TestSidecarCertFlagsRepeat: every --cert/--key pair adds a certificate,
// in order; counts that do not pair up are refused, naming the flags.
func TestSidecarCertFlagsRepeat(t *testing.T) {
	base := []string{"--listen", "127.0.0.1:0", "--backend", "127.0.0.1:1"}
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    []certs.CertConfig
		wantErr string
	}{
		{name: "one pair", args: []string{"--cert", "a.pem", "--key", "a.key"},
			want: []certs.CertConfig{{Name: "main", Cert: "a.pem", Key: "a.key"}}},
		{name: "two pairs", args: []string{"--cert", "ec.pem", "--key", "ec.key", "--cert", "rsa.pem", "--key", "rsa.key"},
			want: []certs.CertConfig{{Name: "main", Cert: "ec.pem", Key: "ec.key"}, {Name: "main-2", Cert: "rsa.pem", Key: "rsa.key"}}},
		{name: "certs then keys pair by position", args: []string{"--cert", "ec.pem", "--cert", "rsa.pem", "--key", "ec.key", "--key", "rsa.key"},
			want: []certs.CertConfig{{Name: "main", Cert: "ec.pem", Key: "ec.key"}, {Name: "main-2", Cert: "rsa.pem", Key: "rsa.key"}}},
		{name: "combined PEMs without keys", args: []string{"--cert", "ec.pem", "--cert", "rsa.pem"},
			want: []certs.CertConfig{{Name: "main", Cert: "ec.pem"}, {Name: "main-2", Cert: "rsa.pem"}}},
		{name: "environment", env: map[string]string{"TLSFRONT_CERT": "env.pem", "TLSFRONT_KEY": "env.key"},
			want: []certs.CertConfig{{Name: "main", Cert: "env.pem", Key: "env.key"}}},
		{name: "flags replace the environment", env: map[string]string{"TLSFRONT_CERT": "env.pem", "TLSFRONT_KEY": "env.key"},
			args: []string{"--cert", "a.pem", "--key", "a.key"},
			want: []certs.CertConfig{{Name: "main", Cert: "a.pem", Key: "a.key"}}},
		{name: "one key short", args: []string{"--cert", "ec.pem", "--key", "ec.key", "--cert", "rsa.pem"}, wantErr: "--key given 1 times for 2 --cert"},
		{name: "key without cert", args: []string{"--key", "a.key"}, wantErr: "--key given 1 times for 0 --cert"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cfg, err := parseConfig("tlsfront", append(slices.Clone(base), tc.args...), io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cfg.Certificates, tc.want) {
				t.Fatalf("certificates = %+v, want %+v", cfg.Certificates, tc.want)
			}
		})
	}
}

// TestTwoCertPairsServeByClient: an ECDSA and an RSA pair given as two
// --cert/--key pairs both serve: a modern client gets ECDSA, a TLS 1.2
// client with only ECDHE_RSA suites gets RSA instead of failing.
func TestTwoCertPairsServeByClient(t *testing.T) {
	ca := pkitest.NewCA(t)
	ec := ca.WriteLeaf(ca.Leaf(pki.Options{}))
	rsaPair := ca.WriteLeaf(ca.Leaf(pki.Options{RSA: true}))
	backend := testnet.Listen(t)
	testnet.Serve(t, backend, func(net.Conn) {})
	ta := startApp(t, "--listen", "127.0.0.1:0", "--backend", backend.Addr().String(), "--trust-ca", ca.RootFile(),
		"--cert", ec.Cert, "--key", ec.Key, "--cert", rsaPair.Cert, "--key", rsaPair.Key)
	for _, tt := range []struct {
		name string
		cfg  func(*tls.Config)
		want x509.PublicKeyAlgorithm
	}{
		{"modern", func(*tls.Config) {}, x509.ECDSA},
		{"TLS 1.2 ECDHE_RSA only", func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
		}, x509.RSA},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ca.ClientConfig("localhost")
			tt.cfg(cfg)
			c, err := tls.Dial("tcp", ta.Addr("main"), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := c.ConnectionState().PeerCertificates[0].PublicKeyAlgorithm; got != tt.want {
				t.Fatalf("served a %v certificate, want %v", got, tt.want)
			}
		})
	}
}
