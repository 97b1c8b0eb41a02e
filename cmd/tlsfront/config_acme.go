package main

import (
	"flag"
	"strconv"
	"strings"

	"github.com/tlsfront/tlsfront/certs"
)

// listFlag is a repeatable flag that also takes comma-separated values
// (so that TLSFRONT_ACME_NAME=a.example,b.example works). Given at all,
// it replaces the list from the file.
type listFlag struct {
	list *[]string
	set  bool
}

func (l *listFlag) String() string {
	if l.list == nil {
		return ""
	}
	return strings.Join(*l.list, ",")
}

func (l *listFlag) Set(v string) error {
	if !l.set {
		*l.list = nil
		l.set = true
	}
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l.list = append(*l.list, s)
		}
	}
	return nil
}

// registerACMEFlags binds the acme section's flags to c.
func registerACMEFlags(fs *flag.FlagSet, c *certs.ACMEConfig) {
	fs.BoolVar(&c.Enabled, "acme", c.Enabled, "obtain certificates from an ACME CA (implied by --acme-name and --acme-on-demand); agrees to the CA's terms")
	fs.StringVar(&c.Email, "acme-email", c.Email, "ACME account contact `address`")
	fs.StringVar(&c.CA, "acme-ca", c.CA, "ACME directory `URL` (default Let's Encrypt production)")
	fs.StringVar(&c.CARoot, "acme-ca-root", c.CARoot, "PEM `file` of roots for a private ACME CA's HTTPS endpoint")
	fs.Var(&listFlag{list: &c.Names}, "acme-name", "DNS `name` to obtain a certificate for (repeatable, or comma-separated)")
	fs.StringVar(&c.EABKeyID, "acme-eab-key-id", c.EABKeyID, "External Account Binding key `ID`")
	fs.StringVar(&c.EABHMAC, "acme-eab-hmac", c.EABHMAC, "External Account Binding HMAC `key` (base64url, as the CA gives it)")
	fs.StringVar(&c.Storage, "acme-storage", c.Storage, "`folder` for the ACME account, certificates and locks (default <state-dir>/acme)")
	fs.BoolVar(&c.OnDemand.Enabled, "acme-on-demand", c.OnDemand.Enabled, "obtain a certificate during the first handshake for an allowed name")
	fs.Var(&listFlag{list: &c.OnDemand.Allow}, "acme-on-demand-allow", "`name` or *.domain allowed on demand (repeatable, or comma-separated)")
	fs.BoolFunc("acme-on-demand-no-dns-check", "allow on-demand names that do not resolve to this host", func(s string) error {
		noCheck, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		require := !noCheck
		c.OnDemand.RequireDNSToHost = &require
		return nil
	})
	fs.Var(&listFlag{list: &c.OnDemand.PublicAddresses}, "acme-public-address", "public `IP` of this host (or of an instance sharing the storage) for the on-demand DNS check (repeatable)")
}
