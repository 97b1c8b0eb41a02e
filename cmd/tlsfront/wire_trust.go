package main

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/tlsfront/tlsfront/certs"
)

// trustStores are the pools a trustConfig names, read once at start.
type trustStores struct {
	roots     *x509.CertPool // nil: the system roots
	rootsName string
	extra     map[string]*x509.CertPool
}

// load reads the CA file, the extra stores and checks the bundle folder,
// naming the field of anything that cannot be used.
func (c *trustConfig) load() (*trustStores, error) {
	ts := &trustStores{}
	if c.CAFile != "" {
		pool, err := readPool(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("trust.ca_file: %w", err)
		}
		ts.roots, ts.rootsName = pool, c.CAFile
	}
	names := make([]string, 0, len(c.ExtraStores))
	for name := range c.ExtraStores {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		pool, err := readPool(c.ExtraStores[name])
		if err != nil {
			return nil, fmt.Errorf("trust.extra_stores.%s: %w", name, err)
		}
		if ts.extra == nil {
			ts.extra = map[string]*x509.CertPool{}
		}
		ts.extra[name] = pool
	}
	if c.BundleDir != "" {
		fi, err := os.Stat(c.BundleDir)
		if err != nil {
			return nil, fmt.Errorf("trust.bundle_dir: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("trust.bundle_dir: %s is not a folder", c.BundleDir)
		}
	}
	return ts, nil
}

// readPool reads a PEM file of CA certificates.
func readPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// verifyWith builds the certs.Verify for ts; cacheDir keeps fetched
// intermediates ("" for none).
func (c *trustConfig) verifyWith(ts *trustStores, cacheDir string) certs.Verify {
	v := certs.Verify{
		BundleDir:     c.BundleDir,
		FetchAIA:      c.fetchAIA(),
		CacheDir:      cacheDir,
		ExpiryWarning: c.ExpiryWarning,
	}
	if ts != nil {
		v.Roots, v.RootsName, v.ExtraStores = ts.roots, ts.rootsName, ts.extra
	}
	return v
}

func (a *app) loadTrust() error {
	ts, err := a.cfg.Trust.load()
	if err != nil {
		return err
	}
	a.trust = ts
	return nil
}

// verify is what every certificate is checked against, at start and on
// reload. Fetched intermediates are kept in <state_dir>/intermediates so
// that a restart needs no network.
func (a *app) verify() certs.Verify {
	cacheDir := ""
	if a.cfg.StateDir != "" {
		cacheDir = filepath.Join(a.cfg.StateDir, "intermediates")
	}
	ts := a.trust
	if ts == nil { // loadTrust not run: system roots, nothing extra
		ts = &trustStores{}
	}
	return a.cfg.Trust.verifyWith(ts, cacheDir)
}
