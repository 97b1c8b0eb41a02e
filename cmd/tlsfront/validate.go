package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tlsfront/tlsfront/proxy"
)

// validate checks cfg and fills in derived defaults (listener names). It
// reports every problem at once, each naming its field.
func (c *config) validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if err := proxy.ValidHostPort(c.Admin); err != nil && c.Admin != "" {
		bad("admin", "%v", err)
	}
	if err := proxy.ValidHostPort(c.AdminGuard.Metrics); err != nil && c.AdminGuard.Metrics != "" {
		bad("admin_guard.metrics", "%v", err)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format", "%q is not text or json", c.Log.Format)
	}
	if _, err := parseLevel(c.Log.Level); err != nil {
		bad("log.level", "%v", err)
	}
	if c.ShutdownGrace < 0 {
		bad("shutdown_grace", "must not be negative")
	}
	if c.ShutdownDelay < 0 || c.ShutdownDelay > 5*time.Minute {
		bad("shutdown_delay", "%v is not between 0 and 5m (typical: 5s)", c.ShutdownDelay)
	}
	if len(c.Listeners) == 0 {
		bad("listeners", "none configured; give --listen and --backend, or a listeners section in --config")
	}
	if err := proxy.ValidateListeners(c.Listeners); err != nil {
		errs = append(errs, err)
	}
	for i, l := range c.Listeners {
		if !l.ClientAllow.Empty() && !c.ClientAuth.Enabled() {
			bad(fmt.Sprintf("listeners[%d].client_allow", i), "needs client_auth.ca_file (--client-ca): only certificates that verify are checked against the list")
		}
	}
	if len(c.Certificates) == 0 && !c.ACME.On() && proxy.CountTLS(c.Listeners) > 0 {
		bad("certificates", "none configured; give --cert and --key, a certificates section, or acme")
	}
	for i, cc := range c.Certificates {
		if err := cc.Validate(fmt.Sprintf("certificates[%d]", i)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.Trust.Validate(); err != nil {
		errs = append(errs, err)
	}
	for _, sec := range []struct {
		key string
		err error
	}{{"redis", c.Redis.Validate()}, {"session_tickets", c.SessionTickets.Validate()}} {
		if sec.err != nil {
			errs = append(errs, prefixErrors(sec.key, sec.err))
		}
	}
	if err := c.ACME.Validate(); err != nil {
		errs = append(errs, err)
	}
	for _, v := range []interface{ validate() error }{&c.Limits, &c.Monitor, &c.Reload} {
		if err := v.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.ClientAuth.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func parseLevel(s string) (level int, err error) {
	switch strings.ToLower(s) {
	case "debug":
		return -4, nil
	case "info", "":
		return 0, nil
	case "warn":
		return 4, nil
	case "error":
		return 8, nil
	}
	return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
}

// prefixErrors puts section. before each of err's lines, for a package
// whose Validate names keys within its section.
func prefixErrors(section string, err error) error {
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		lines[i] = section + "." + l
	}
	return errors.New(strings.Join(lines, "\n"))
}
