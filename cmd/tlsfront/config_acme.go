package main

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tlsfront/tlsfront/certs"
)

// acmeConfig is the acme section of the configuration: certificates
// obtained and renewed from an ACME CA (Let's Encrypt by default).
// Enabling it means agreeing to the CA's subscriber agreement.
type acmeConfig struct {
	// Enabled turns ACME on; names or on_demand.enabled imply it.
	Enabled bool `yaml:"enabled"`
	// Email is the account contact the CA writes to about expiry and
	// policy changes. Optional, recommended.
	Email string `yaml:"email"`
	// CA is the ACME directory URL. Default Let's Encrypt production.
	CA string `yaml:"ca"`
	// CARoot is a PEM file of roots for the CA's own HTTPS endpoint, for
	// private CAs (step-ca, Pebble). Default the system roots.
	CARoot string `yaml:"ca_root"`
	// Names are obtained at start (in the background) and renewed.
	Names []string `yaml:"names"`
	// EABKeyID and EABHMAC are the External Account Binding some CAs
	// require (ZeroSSL, Google Trust Services, many private CAs).
	EABKeyID string `yaml:"eab_key_id"`
	EABHMAC  string `yaml:"eab_hmac"`
	// OnDemand obtains certificates during the first handshake for a name.
	OnDemand acmeOnDemandConfig `yaml:"on_demand"`
	// Storage holds the account, certificates and locks. Default
	// <state_dir>/acme. Instances sharing it coordinate issuance and
	// answer each other's challenges.
	Storage string `yaml:"storage"`
}

type acmeOnDemandConfig struct {
	Enabled bool `yaml:"enabled"`
	// Allow lists the names a handshake may obtain a certificate for:
	// exact names or *.example.com (one label). Required.
	Allow []string `yaml:"allow"`
	// RequireDNSToHost refuses names that do not resolve to an address
	// of this host, before asking the CA. Default true.
	RequireDNSToHost *bool `yaml:"require_dns_to_host"`
	// PublicAddresses count as this host's addresses for that check:
	// the public IPs of a host behind NAT or a load balancer, or of every
	// instance sharing the storage.
	PublicAddresses []string `yaml:"public_addresses"`
	// Caps on issuance, so that a burst of new names (or a scanner
	// trying allowed ones) cannot walk into the CA's rate limits; 0 takes
	// the default: 2 at once, 100 waiting, 5 orders a minute, 5 an hour
	// per registered domain, a failed name retried after 2m, doubling.
	MaxConcurrent       int           `yaml:"max_concurrent"`
	MaxPending          int           `yaml:"max_pending"`
	MaxPerMinute        int           `yaml:"max_per_minute"`
	MaxPerDomainPerHour int           `yaml:"max_per_domain_per_hour"`
	RetryBackoff        time.Duration `yaml:"retry_backoff"`
}

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

func (c *acmeConfig) registerFlags(fs *flag.FlagSet) {
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

// enabled reports whether tlsfront obtains certificates itself.
func (c *acmeConfig) enabled() bool { return c.Enabled || len(c.Names) > 0 || c.OnDemand.Enabled }

// requireDNS reports whether on-demand names must resolve to this host.
func (c *acmeOnDemandConfig) requireDNS() bool {
	return c.RequireDNSToHost == nil || *c.RequireDNSToHost
}

func (c *acmeConfig) validate() error {
	if !c.enabled() {
		return nil
	}
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("acme.%s: %s", key, fmt.Sprintf(format, a...)))
	}
	if c.CA != "" {
		u, err := url.Parse(c.CA)
		switch {
		case err != nil:
			bad("ca", "%v", err)
		case u.Scheme != "https" || u.Host == "":
			bad("ca", "%q is not an https:// ACME directory URL (e.g. %s)", c.CA, certs.LetsEncryptProduction)
		}
	}
	if c.Email != "" && !strings.Contains(c.Email, "@") {
		bad("email", "%q is not an email address", c.Email)
	}
	if len(c.Names) == 0 && !c.OnDemand.Enabled {
		bad("names", "none given and on_demand is off: nothing to obtain; list the names, or turn on on_demand")
	}
	seen := map[string]bool{}
	for i, n := range c.Names {
		if err := certs.ValidACMEName(n); err != nil {
			bad(fmt.Sprintf("names[%d]", i), "%v", err)
		}
		k := strings.ToLower(n)
		if seen[k] {
			bad(fmt.Sprintf("names[%d]", i), "%q is listed twice", n)
		}
		seen[k] = true
	}
	if (c.EABKeyID == "") != (c.EABHMAC == "") {
		bad("eab_key_id", "eab_key_id and eab_hmac go together; the CA gives both")
	} else if c.EABHMAC != "" {
		if _, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(c.EABHMAC, "=")); err != nil {
			bad("eab_hmac", "not base64url as the CA gives it: %v", err)
		}
	}
	od := &c.OnDemand
	if od.Enabled {
		if len(od.Allow) == 0 {
			bad("on_demand.allow", "required: without it any name pointed at this host would make it order certificates")
		}
		for i, p := range od.Allow {
			if err := certs.ValidAllowPattern(p); err != nil {
				bad(fmt.Sprintf("on_demand.allow[%d]", i), "%v", err)
			}
		}
	}
	for i, s := range od.PublicAddresses {
		if _, err := netip.ParseAddr(s); err != nil {
			bad(fmt.Sprintf("on_demand.public_addresses[%d]", i), "%q is not an IP address", s)
		}
	}
	for _, f := range []struct {
		key string
		v   int
	}{{"max_concurrent", od.MaxConcurrent}, {"max_pending", od.MaxPending}, {"max_per_minute", od.MaxPerMinute}, {"max_per_domain_per_hour", od.MaxPerDomainPerHour}} {
		if f.v < 0 {
			bad("on_demand."+f.key, "must not be negative; use 0 for the default")
		}
	}
	if od.RetryBackoff < 0 {
		bad("on_demand.retry_backoff", "must not be negative; use 0 for the default")
	}
	return errors.Join(errs...)
}
