package redisstore_test

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tlsfront/tlsfront/certs/redisstore"
	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/pki/pkitest"
	"github.com/tlsfront/tlsfront/internal/redistest"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string // want: a YAML key the error names, "" for valid
	}{
		{"off", "{}", ""},
		{"url", "url: redis://127.0.0.1:6379/0\nprefix: eu\nlock_expiry: 15s", ""},
		{"sentinel", "url: redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/certs", ""},
		{"settings without url", "prefix: eu", "url"},
		{"bad scheme", "url: http://127.0.0.1", "url"},
		{"two passwords", "url: redis://:pw@127.0.0.1:6379\npassword_file: /run/secrets/redis", "password_file"},
		{"sentinel password and master password file", "url: redis+sentinel://:sentinelpw@127.0.0.1:26379/m\npassword_file: /run/secrets/redis", ""},
		{"two master passwords", "url: redis+sentinel://127.0.0.1:26379/m?password=x\npassword_file: /run/secrets/redis", "password_file"},
		{"braced prefix", "url: redis://127.0.0.1\nprefix: '{x}'", "prefix"},
		{"short expiry", "url: redis://127.0.0.1\nlock_expiry: 100ms", "lock_expiry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c redisstore.Config
			if err := yaml.Unmarshal([]byte(tc.yaml), &c); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			if tc.want == "" && err != nil {
				t.Fatal(err)
			}
			if tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want+":")) {
				t.Fatalf("got %v, want an error about %s", err, tc.want)
			}
		})
	}
}

// TestConfigPasswordFile connects to a Redis that requires a password
// with the password read from a file.
func TestConfigPasswordFile(t *testing.T) {
	srv := redistest.Start(t)
	ctx := ctxT(t, 10*time.Second)
	if err := raw(t, srv).ConfigSet(ctx, "requirepass", "s3cret-from-file").Err(); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(t.TempDir(), "redis.pw")
	os.WriteFile(pw, []byte("s3cret-from-file\n"), 0o600)
	for _, tc := range []struct {
		name string
		file string
		ok   bool
	}{
		{"right password", pw, true},
		{"no password", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := redisstore.Config{URL: srv.URL, PasswordFile: tc.file}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			s, err := c.Open(nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.Ping(context.Background()); (err == nil) != tc.ok {
				t.Fatalf("ping: %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// TestConfigTLS: rediss:// to a Redis that wants client certificates,
// with a private CA.
func TestConfigTLS(t *testing.T) {
	ca := pkitest.NewCA(t)
	server := ca.WriteLeaf(ca.Leaf(pki.Options{}))
	client := ca.WriteLeaf(ca.Leaf(pki.Options{CommonName: "tlsfront"}))
	root := ca.RootFile()
	probe := ca.ClientConfig("127.0.0.1")
	cc, err := tls.LoadX509KeyPair(client.Cert, client.Key)
	if err != nil {
		t.Fatal(err)
	}
	probe.Certificates = []tls.Certificate{cc}
	addr := redistest.StartTLS(t, redistest.TLSFiles{Cert: server.Cert, Key: server.Key, CA: root}, probe)

	for _, tc := range []struct {
		name string
		c    redisstore.Config
		ok   bool
	}{
		{"private ca and client certificate", redisstore.Config{CAFile: root, CertFile: client.Cert, KeyFile: client.Key}, true},
		{"no client certificate", redisstore.Config{CAFile: root}, false},
		{"system roots", redisstore.Config{CertFile: client.Cert, KeyFile: client.Key}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			c.URL = "rediss://" + addr
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			s, err := c.Open(nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := ctxT(t, 10*time.Second)
			err = s.Store(ctx, "k", []byte("over tls"))
			t.Logf("store: %v", err)
			if (err == nil) != tc.ok {
				t.Fatalf("store: %v, want ok %v", err, tc.ok)
			}
			if tc.ok {
				if v, err := s.Load(ctx, "k"); err != nil || string(v) != "over tls" {
					t.Fatalf("%q %v", v, err)
				}
			}
		})
	}
	t.Run("tls settings on a plain url", func(t *testing.T) {
		c := redisstore.Config{URL: "redis://" + addr, CAFile: root}
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "ca_file") {
			t.Fatalf("Validate: %v", err)
		}
	})
}
