package monitor

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Validate checks the configurable fields of o; each error names its YAML
// key under monitor and says what to do.
func (o Options) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("monitor.%s: %s", key, fmt.Sprintf(format, a...)))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"probe_interval", o.ProbeInterval}, {"probe_timeout", o.ProbeTimeout}, {"alert_cooldown", o.Alerts.Cooldown}, {"handshake_log_period", o.HandshakeLogPeriod}} {
		if d.v < 0 {
			bad(d.key, "%v must not be negative", d.v)
		}
	}
	if o.ProbeInterval > 0 && o.ProbeInterval < 100*time.Millisecond {
		bad("probe_interval", "%v is too short: the probe would load the proxy; give at least 100ms", o.ProbeInterval)
	}
	for i, n := range o.ProbeNames {
		if n == "" || strings.ContainsAny(n, " */:") {
			bad(fmt.Sprintf("probe_names[%d]", i), "%q is not a server name (no wildcards, ports or schemes)", n)
		}
	}
	if a := o.ProbeAddress; a != "" {
		host := a
		if h, _, err := net.SplitHostPort(a); err == nil {
			host = h
		}
		if host == "" || strings.ContainsAny(host, "/ ") {
			bad("probe_address", "%q is not a host or host:port", a)
		}
	}
	for _, u := range []struct{ key, v string }{{"alert_webhook", o.Alerts.Webhook}, {"alert_slack", o.Alerts.Slack}, {"alertmanager", o.Alerts.Alertmanager}} {
		if u.v == "" {
			continue
		}
		p, err := url.Parse(u.v)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			bad(u.key, "%q is not an http:// or https:// URL", u.v)
		}
	}
	if o.Alerts.Retries < 0 || o.Alerts.Retries > 20 {
		bad("alert_retries", "%d is not between 0 and 20", o.Alerts.Retries)
	}
	for i, d := range o.ExpiryWarn {
		if d <= 0 {
			bad(fmt.Sprintf("expiry_warn[%d]", i), "%v must be positive", d)
		}
	}
	if o.FailureRatio < 0 || o.FailureRatio > 1 {
		bad("failure_ratio", "%v is not between 0 and 1 (a share, e.g. 0.1 for 10%%)", o.FailureRatio)
	}
	for _, n := range []struct {
		key string
		v   int
	}{{"failure_min", o.FailureMin}, {"refusal_spike", o.RefusalSpike}, {"handshake_log_burst", o.HandshakeLogBurst}, {"probe_budget", o.ProbeBudget}, {"probe_concurrency", o.ProbeConcurrency}, {"max_alerts", o.Alerts.MaxAlerts}} {
		if n.v < 0 {
			bad(n.key, "must not be negative")
		}
	}
	return errors.Join(errs...)
}

// CheckProbeAddress rejects a host:port probe_address when there are
// several TLS listeners: one port cannot say which listener it reaches.
func (o Options) CheckProbeAddress(tlsListeners int) error {
	if _, _, err := net.SplitHostPort(o.ProbeAddress); o.ProbeAddress == "" || err != nil {
		return nil
	}
	if tlsListeners > 1 {
		return fmt.Errorf("monitor.probe_address: %q names one port but there are %d TLS listeners; give only the host, and each listener's own port is used", o.ProbeAddress, tlsListeners)
	}
	return nil
}

const day = 24 * time.Hour

// Durations is a list of durations that also takes a d suffix for days,
// from a flag (comma-separated) or YAML (a list, or one string).
type Durations []time.Duration

func (d *Durations) String() string {
	if d == nil {
		return ""
	}
	var out []string
	for _, v := range *d {
		if v%day == 0 {
			out = append(out, strconv.Itoa(int(v/day))+"d")
		} else {
			out = append(out, v.String())
		}
	}
	return strings.Join(out, ",")
}

// Set replaces the list; it makes *Durations a flag.Value.
func (d *Durations) Set(v string) error {
	var out Durations
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		x, err := parseDays(p)
		if err != nil {
			return err
		}
		out = append(out, x)
	}
	*d = out
	return nil
}

// UnmarshalYAML reads a list of durations or one comma-separated string.
// It is the YAML decoder's function-style interface, so this package
// needs no YAML library.
func (d *Durations) UnmarshalYAML(unmarshal func(any) error) error {
	var list []string
	if err := unmarshal(&list); err != nil {
		var one string
		if err := unmarshal(&one); err != nil {
			return err
		}
		return d.Set(one)
	}
	return d.Set(strings.Join(list, ","))
}

// parseDays is time.ParseDuration that also takes whole days ("21d").
func parseDays(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if v, err := strconv.Atoi(n); err == nil {
			return time.Duration(v) * day, nil
		}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (e.g. 21d, 36h)", s)
	}
	return v, nil
}

// defaultProbeTargets probes every TLS listener where outside clients
// connect: through ProbeAddress when given, else the bound address, with a
// listener bound on all interfaces reached on loopback; for ProbeNames, or
// every name the served certificates cover (a wildcard with a label of
// its own).
func (m *Monitor) defaultProbeTargets() []ProbeTarget {
	names := m.o.ProbeNames
	if len(names) == 0 {
		names = m.certificateNames()
	}
	var out []ProbeTarget
	for _, l := range m.o.Listeners() {
		if !l.TLS {
			continue
		}
		addr, err := probeDialAddress(m.o.ProbeAddress, l.Address)
		if err != nil {
			continue
		}
		out = append(out, ProbeTarget{Listener: l.Name, Address: addr, Names: names})
	}
	return out
}

func probeDialAddress(probeAddr, bound string) (string, error) {
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return "", err
	}
	if probeAddr != "" {
		if _, _, err := net.SplitHostPort(probeAddr); err == nil {
			return probeAddr, nil
		}
		return net.JoinHostPort(strings.Trim(probeAddr, "[]"), port), nil
	}
	if ip := net.ParseIP(host); host == "" || ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// certificateNames are the names the served certificates cover; a
// wildcard is probed with a label of our own.
func (m *Monitor) certificateNames() []string {
	seen := map[string]bool{}
	var out []string
	add := func(n string) {
		n = strings.ToLower(n)
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	for _, c := range m.o.Certificates() {
		if len(c.Chain) == 0 {
			continue
		}
		leaf := c.Chain[0]
		for _, n := range leaf.DNSNames {
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				n = "tlsfront-probe." + rest
			}
			add(n)
		}
		for _, ip := range leaf.IPAddresses {
			add(ip.String())
		}
	}
	return out
}
