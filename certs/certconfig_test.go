package certs_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/tlsfront/tlsfront/certs"
)

// TestCertConfig: an entry is a file or a folder, checked at its keys,
// and sorted into what the manager takes.
func TestCertConfig(t *testing.T) {
	tests := []struct {
		name string
		cc   certs.CertConfig
		want string // error part; empty: valid
	}{
		{name: "file", cc: certs.CertConfig{Cert: "/tls/tls.crt"}},
		{name: "certbot live", cc: certs.CertConfig{Dir: "/etc/letsencrypt/live"}},
		{name: "pattern", cc: certs.CertConfig{Dir: "/certs", Cert: "*.crt", Key: "{name}.key"}},
		{name: "pattern without star", cc: certs.CertConfig{Dir: "/certs", Cert: "server.crt"}, want: "certificates[1]: cert:"},
		{name: "no cert, no dir", cc: certs.CertConfig{Key: "k.pem"}, want: "certificates[1].cert: missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cc.Validate("certificates[1]")
			if tc.want == "" && err != nil {
				t.Fatal(err)
			}
			if tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	files, folders := certs.Sources([]certs.CertConfig{
		{Name: "main", Cert: "a.pem", Key: "a.key"},
		{Name: "live", Dir: "/live"},
		{Cert: "/tls/b.pem"},
	})
	wantFiles := []certs.FileCert{
		{ID: "main", CertFile: "a.pem", KeyFile: "a.key", Entry: "certificates[0]"},
		{ID: "b.pem", CertFile: "/tls/b.pem", Entry: "certificates[2]"},
	}
	if !reflect.DeepEqual(files, wantFiles) {
		t.Fatalf("files %+v", files)
	}
	if len(folders) != 1 || folders[0].Dir != "/live" || folders[0].Prefix != "live" {
		t.Fatalf("folders %+v", folders)
	}
}
