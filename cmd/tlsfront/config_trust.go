package main

import (
	"errors"
	"flag"
	"fmt"
	"github.com/tlsfront/tlsfront/certs"
	"sort"
	"strconv"
	"strings"
	"time"
)

// trustConfig says what served chains are checked against and how a chain
// missing intermediates is completed.
type trustConfig struct {
	// CAFile is a PEM bundle of the roots clients trust. Served chains
	// are verified against it; empty means the system roots.
	CAFile string `yaml:"ca_file"`
	// BundleDir is a folder of PEM/DER/PKCS#7 intermediates used to
	// complete chains whose file lacks them.
	BundleDir string `yaml:"bundle_dir"`
	// FetchAIA lets tlsfront fetch a missing intermediate from the
	// caIssuers URL of the certificate that lacks it, once, and keep it
	// in <state_dir>/intermediates. Default true.
	FetchAIA *bool `yaml:"fetch_aia"`
	// ExpiryWarning is how long before a leaf expires to warn; default
	// 21 days.
	ExpiryWarning time.Duration `yaml:"expiry_warning"`
	// ExtraStores maps a name to a PEM file of the roots some clients
	// trust (e.g. old devices that get no updates). A chain one of them
	// cannot verify is a warning naming the store.
	ExtraStores map[string]string `yaml:"extra_stores"`
}

func (c *trustConfig) registerFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.CAFile, "trust-ca", c.CAFile, "PEM `file` of the roots clients trust (default: system roots)")
	fs.StringVar(&c.BundleDir, "bundle-dir", c.BundleDir, "`folder` of intermediates (PEM, DER, PKCS#7) to complete chains with")
	fs.BoolFunc("no-fetch-aia", "never fetch a missing intermediate from its AIA URL", func(s string) error {
		off, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		on := !off
		c.FetchAIA = &on
		return nil
	})
	fs.DurationVar(&c.ExpiryWarning, "expiry-warning", c.ExpiryWarning, "warn when a leaf expires within this `duration` (default 504h, 21 days)")
	fs.Func("extra-store", "a further trust store some clients use, as `name=file`; failing it is a warning (repeatable)", func(s string) error {
		name, file, ok := strings.Cut(s, "=")
		if !ok || name == "" || file == "" {
			return errors.New("want name=file, e.g. old-android=/etc/tlsfront/isrg-x1-cross.pem")
		}
		if c.ExtraStores == nil {
			c.ExtraStores = map[string]string{}
		}
		c.ExtraStores[name] = file
		return nil
	})
}

// options are the trust store as the certificate manager reads it;
// cacheDir keeps fetched intermediates ("" for none).
func (c *trustConfig) options(cacheDir string) certs.TrustOptions {
	return certs.TrustOptions{CAFile: c.CAFile, ExtraStores: c.ExtraStores, BundleDir: c.BundleDir,
		FetchAIA: c.fetchAIA(), CacheDir: cacheDir, ExpiryWarning: c.ExpiryWarning}
}

// fetchAIA reports whether missing intermediates may be fetched; on
// unless turned off.
func (c *trustConfig) fetchAIA() bool { return c.FetchAIA == nil || *c.FetchAIA }

func (c *trustConfig) validate() error {
	var errs []error
	if c.ExpiryWarning < 0 {
		errs = append(errs, errors.New("trust.expiry_warning: must not be negative"))
	}
	names := make([]string, 0, len(c.ExtraStores))
	for name := range c.ExtraStores {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if name == "" {
			errs = append(errs, errors.New("trust.extra_stores: a store has an empty name"))
		}
		if c.ExtraStores[name] == "" {
			errs = append(errs, fmt.Errorf("trust.extra_stores.%s: missing the PEM file of its roots", name))
		}
	}
	return errors.Join(errs...)
}
