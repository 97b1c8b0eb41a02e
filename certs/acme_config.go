package certs

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// ACMEConfig is the acme section of the configuration: certificates
// obtained and renewed from an ACME CA (Let's Encrypt by default).
// Enabling it means agreeing to the CA's subscriber agreement.
type ACMEConfig struct {
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
	OnDemand ACMEOnDemandConfig `yaml:"on_demand"`
	// Storage holds the account, certificates and locks. Default
	// <state_dir>/acme. Instances sharing it coordinate issuance and
	// answer each other's challenges.
	Storage string `yaml:"storage"`
}

// ACMEOnDemandConfig is the acme.on_demand section.
type ACMEOnDemandConfig struct {
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

// On reports whether tlsfront obtains certificates itself: enabled, or
// names given, or on-demand on.
func (c *ACMEConfig) On() bool { return c.Enabled || len(c.Names) > 0 || c.OnDemand.Enabled }

// RequireDNS reports whether on-demand names must resolve to this host.
func (c *ACMEOnDemandConfig) RequireDNS() bool {
	return c.RequireDNSToHost == nil || *c.RequireDNSToHost
}

// Validate checks c without I/O; errors name the YAML keys under acme.
func (c *ACMEConfig) Validate() error {
	if !c.On() {
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
			bad("ca", "%q is not an https:// ACME directory URL (e.g. %s)", c.CA, LetsEncryptProduction)
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
		if err := ValidACMEName(n); err != nil {
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
			if err := ValidAllowPattern(p); err != nil {
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

// StorageDir is the folder of the account, certificates and locks:
// Storage, else the default under stateDir.
func (c *ACMEConfig) StorageDir(stateDir string) string {
	if c.Storage != "" {
		return c.Storage
	}
	return DefaultACMEStorage(stateDir)
}

// Options turns the section into ACMEOptions, reading the CA root file.
// stateDir holds the storage folder unless Storage names one.
func (c *ACMEConfig) Options(stateDir string) (ACMEOptions, error) {
	o := ACMEOptions{CA: c.CA, Email: c.Email, EABKeyID: c.EABKeyID, EABHMAC: c.EABHMAC, Storage: c.StorageDir(stateDir)}
	if c.CARoot != "" {
		pool, err := ReadPool(c.CARoot)
		if err != nil {
			return o, fmt.Errorf("acme.ca_root: %w", err)
		}
		o.CARoots = pool
	}
	if od := &c.OnDemand; od.Enabled {
		o.OnDemand = &OnDemandOptions{Allow: od.Allow, RequireDNSToHost: od.RequireDNS(),
			MaxConcurrent: od.MaxConcurrent, MaxPending: od.MaxPending, MaxPerMinute: od.MaxPerMinute,
			MaxPerDomainPerHour: od.MaxPerDomainPerHour, RetryBackoff: od.RetryBackoff}
		for _, s := range od.PublicAddresses {
			ip, err := netip.ParseAddr(s)
			if err != nil {
				return o, fmt.Errorf("acme.on_demand.public_addresses: %w", err)
			}
			o.OnDemand.PublicAddrs = append(o.OnDemand.PublicAddrs, ip)
		}
	}
	return o, nil
}
