package certs_test

import (
	"context"
	"fmt"

	"github.com/tlsfront/tlsfront/certs"
)

// A folder of pairs beside a listed certificate: certbot's live/ folder,
// and customer certificates named example.com.crt + example.com.key.
// Reload lists the folders again: new pairs are added, gone ones removed.
func ExampleFolderSource() {
	m, err := certs.NewManager(certs.ManagerOptions{
		Files: []certs.FileCert{{ID: "broker", CertFile: "/etc/tls/fullchain.pem", KeyFile: "/etc/tls/privkey.pem"}},
		Folders: []certs.FolderSource{
			{Dir: "/etc/letsencrypt/live"},
			{Dir: "/etc/tls/customers", Cert: "*.crt", Key: "{name}.key", Prefix: "customers"},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	results, _ := m.Reload(context.Background(), "sighup", false)
	for _, r := range results {
		switch r.Result {
		case certs.Added, certs.Reloaded:
			fmt.Println(r.ID, "now serving serial", r.Serial)
		case certs.Removed:
			fmt.Println(r.ID, "no longer served")
		case certs.Failed:
			fmt.Println(r.ID, "refused:", r.Error)
		}
	}
}
