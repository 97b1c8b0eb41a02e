package main

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"time"

	"github.com/tlsfront/tlsfront/certs"
)

// defaultDebounce is how long the watched files must stay quiet before a
// reload: long enough for a renewal to write the key after the
// certificate, short enough that nobody notices.
const defaultDebounce = 500 * time.Millisecond

// reloadConfig says when certificates are read again while serving. A
// reload also happens on SIGHUP and on POST /reload to the admin listener,
// whatever this says.
type reloadConfig struct {
	// Watch follows the certificate and key files (through their
	// folders, so that renames, certbot's live/ symlinks and Kubernetes
	// secret volumes are seen) and reloads when they change. Default on.
	Watch *bool `yaml:"watch"`
	// Debounce is the quiet period after the last file event before the
	// files are read. Default 500ms.
	Debounce time.Duration `yaml:"debounce"`
	// Interval re-reads every certificate this often as a safety net for
	// file systems that do not report changes (some network mounts).
	// Zero, the default, turns it off.
	Interval time.Duration `yaml:"interval"`
}

func (c *reloadConfig) registerFlags(fs *flag.FlagSet) {
	if c.Debounce == 0 {
		c.Debounce = defaultDebounce
	}
	fs.BoolFunc("no-watch", "do not watch certificate files for changes (reload with SIGHUP or POST /reload instead)", func(s string) error {
		off, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		on := !off
		c.Watch = &on
		return nil
	})
	fs.DurationVar(&c.Debounce, "reload-debounce", c.Debounce, "quiet `period` after certificate files change before they are reloaded")
	fs.DurationVar(&c.Interval, "reload-interval", c.Interval, "also reload certificates this often, e.g. 1h (0: off)")
}

// watch reports whether the file watch is on.
func (c *reloadConfig) watch() bool { return c.Watch == nil || *c.Watch }

func (c *reloadConfig) validate() error {
	var errs []error
	switch {
	case c.Debounce == 0:
		// Unset in a file read without flags (check-config, tests).
		c.Debounce = defaultDebounce
	case c.Debounce < 0:
		errs = append(errs, fmt.Errorf("reload.debounce: %s must not be negative", c.Debounce))
	case c.Debounce > time.Minute:
		errs = append(errs, fmt.Errorf("reload.debounce: %s is over a minute; a renewed certificate would wait that long after its last write (typical: 500ms)", c.Debounce))
	}
	if c.Interval < 0 {
		errs = append(errs, fmt.Errorf("reload.interval: %s must not be negative (0 turns it off)", c.Interval))
	} else if c.Interval > 0 && c.Interval < time.Second {
		errs = append(errs, fmt.Errorf("reload.interval: %s is under a second; use the file watch for fast reloads, and an interval of minutes or hours as a safety net", c.Interval))
	}
	return errors.Join(errs...)
}

// bindClientAuthFlags binds the client_auth section's flags to c.
func bindClientAuthFlags(fs *flag.FlagSet, c *certs.ClientAuthConfig) {
	fs.StringVar(&c.CAFile, "client-ca", c.CAFile, "PEM `file` of CAs that client certificates must chain to (turns on mTLS)")
	fs.BoolFunc("client-cert-optional", "with --client-ca, also let in clients that send no certificate", func(s string) error {
		opt, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		req := !opt
		c.Required = &req
		return nil
	})
}
