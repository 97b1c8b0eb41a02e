package main

import (
	"io"
	"slices"
	"strings"
	"testing"
)

// TestSidecarCertFlagsRepeat: every --cert/--key pair adds a certificate,
// in order; counts that do not pair up are refused, naming the flags.
func TestSidecarCertFlagsRepeat(t *testing.T) {
	base := []string{"--listen", "127.0.0.1:0", "--backend", "127.0.0.1:1"}
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    []certConfig
		wantErr string
	}{
		{name: "one pair", args: []string{"--cert", "a.pem", "--key", "a.key"},
			want: []certConfig{{Name: "main", Cert: "a.pem", Key: "a.key"}}},
		{name: "two pairs", args: []string{"--cert", "ec.pem", "--key", "ec.key", "--cert", "rsa.pem", "--key", "rsa.key"},
			want: []certConfig{{Name: "main", Cert: "ec.pem", Key: "ec.key"}, {Name: "main-2", Cert: "rsa.pem", Key: "rsa.key"}}},
		{name: "certs then keys pair by position", args: []string{"--cert", "ec.pem", "--cert", "rsa.pem", "--key", "ec.key", "--key", "rsa.key"},
			want: []certConfig{{Name: "main", Cert: "ec.pem", Key: "ec.key"}, {Name: "main-2", Cert: "rsa.pem", Key: "rsa.key"}}},
		{name: "combined PEMs without keys", args: []string{"--cert", "ec.pem", "--cert", "rsa.pem"},
			want: []certConfig{{Name: "main", Cert: "ec.pem"}, {Name: "main-2", Cert: "rsa.pem"}}},
		{name: "environment", env: map[string]string{"TLSFRONT_CERT": "env.pem", "TLSFRONT_KEY": "env.key"},
			want: []certConfig{{Name: "main", Cert: "env.pem", Key: "env.key"}}},
		{name: "flags replace the environment", env: map[string]string{"TLSFRONT_CERT": "env.pem", "TLSFRONT_KEY": "env.key"},
			args: []string{"--cert", "a.pem", "--key", "a.key"},
			want: []certConfig{{Name: "main", Cert: "a.pem", Key: "a.key"}}},
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
