package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tlsfront/tlsfront/monitor"
)

// monitorConfig is the monitor section of the configuration: self-probes,
// alerts and the failed-handshake log budget. Zero values take the
// defaults below.
type monitorConfig struct {
	// ProbeInterval is the time between self-probe rounds (default 60s).
	// A round also runs right after every reload.
	ProbeInterval time.Duration `yaml:"probe_interval"`
	// ProbeTimeout bounds one probe handshake (default 10s).
	ProbeTimeout time.Duration `yaml:"probe_timeout"`
	// ProbeDisabled turns the self-probe off.
	ProbeDisabled bool `yaml:"probe_disabled"`
	// ReadyRequiresBackend makes /readyz fail while a listener's backend
	// cannot be reached. Off by default: a sidecar's broker has its own
	// readiness, and taking tlsfront out of a load balancer while the
	// broker restarts only turns clients' CONNACK 0x88 into refused
	// connections.
	ReadyRequiresBackend bool `yaml:"ready_requires_backend"`
	// ProbeNames are the server names probed; default every name the
	// certificates cover (a wildcard as "tlsfront-probe.<domain>").
	ProbeNames []string `yaml:"probe_names"`
	// ProbeAddress is where outside clients connect, when not the bound
	// address: a host (each listener's own port is used) or host:port
	// (only with a single TLS listener).
	ProbeAddress string `yaml:"probe_address"`
	// ProbeCAFile is the PEM bundle of roots the clients trust, when it
	// differs from trust.ca_file (e.g. old devices). It is re-read every
	// round. Default trust.ca_file, else the system roots.
	ProbeCAFile string `yaml:"probe_ca_file"`

	// AlertWebhook receives alerts as JSON POSTs.
	AlertWebhook string `yaml:"alert_webhook"`
	// AlertSlack receives alerts as Slack-compatible {"text": ...} POSTs.
	AlertSlack string `yaml:"alert_slack"`
	// Alertmanager is the base URL of an Alertmanager; alerts are posted
	// to its v2 API, so they are routed where operators route the rest.
	Alertmanager string `yaml:"alertmanager"`
	// AlertCooldown is the least time between notifications for one
	// alert (default 1h).
	AlertCooldown time.Duration `yaml:"alert_cooldown"`
	// AlertRetries is how often a failed delivery is retried with
	// exponential backoff (default 5).
	AlertRetries int `yaml:"alert_retries"`
	// ExpiryWarn are the time-left thresholds for expiry alerts (default
	// 21d and 7d). Durations take a d suffix for days.
	ExpiryWarn durationList `yaml:"expiry_warn"`
	// FailureRatio alerts when failures of one reason reach this share of
	// all handshakes over five minutes (default 0.1) ...
	FailureRatio float64 `yaml:"failure_ratio"`
	// ... and number at least FailureMin (default 50).
	FailureMin int `yaml:"failure_min"`
	// RefusalSpike alerts when one limit refuses this many connections in
	// five minutes (default 100).
	RefusalSpike int `yaml:"refusal_spike"`
	// HandshakeLogBurst failed handshakes of one kind (reason and
	// fingerprint) are logged per HandshakeLogPeriod; the rest are
	// summarised (default 5 per 1m).
	HandshakeLogBurst  int           `yaml:"handshake_log_burst"`
	HandshakeLogPeriod time.Duration `yaml:"handshake_log_period"`
}

const day = 24 * time.Hour

// defaults fills in zero values from monitor.Defaults. It runs before
// flags are bound, so that --help shows the defaults and flags override
// the file.
func (c *monitorConfig) defaults() {
	d := monitor.Defaults()
	setZero(&c.ProbeInterval, d.ProbeInterval)
	setZero(&c.ProbeTimeout, d.ProbeTimeout)
	setZero(&c.AlertCooldown, d.Alerts.Cooldown)
	setZero(&c.AlertRetries, d.Alerts.Retries)
	setZero(&c.FailureRatio, d.FailureRatio)
	setZero(&c.FailureMin, d.FailureMin)
	setZero(&c.RefusalSpike, d.RefusalSpike)
	setZero(&c.HandshakeLogBurst, d.HandshakeLogBurst)
	setZero(&c.HandshakeLogPeriod, d.HandshakeLogPeriod)
	if len(c.ExpiryWarn) == 0 {
		c.ExpiryWarn = durationList(d.ExpiryWarn)
	}
}

// setZero sets *p to v when *p is the zero value.
func setZero[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

func (c *monitorConfig) registerFlags(fs *flag.FlagSet) {
	c.defaults()
	fs.DurationVar(&c.ProbeInterval, "probe-interval", c.ProbeInterval, "time between self-probes of every TLS listener and name")
	fs.DurationVar(&c.ProbeTimeout, "probe-timeout", c.ProbeTimeout, "time one self-probe handshake may take")
	fs.BoolVar(&c.ProbeDisabled, "probe-disabled", c.ProbeDisabled, "turn the self-probe off")
	fs.BoolVar(&c.ReadyRequiresBackend, "ready-requires-backend", c.ReadyRequiresBackend, "make /readyz fail while a listener's backend cannot be reached (off: the broker has its own readiness)")
	fs.Var((*stringList)(&c.ProbeNames), "probe-names", "comma-separated server `names` to probe (default: every name the certificates cover)")
	fs.StringVar(&c.ProbeAddress, "probe-address", c.ProbeAddress, "`host` or host:port outside clients connect to, when not the listen address")
	fs.StringVar(&c.ProbeCAFile, "probe-ca", c.ProbeCAFile, "PEM `file` of the roots your clients trust, for the self-probe (default: --trust-ca, else system roots)")
	fs.StringVar(&c.AlertWebhook, "alert-webhook", c.AlertWebhook, "`URL` that receives alerts as JSON POSTs")
	fs.StringVar(&c.AlertSlack, "alert-slack", c.AlertSlack, "Slack incoming-webhook `URL` that receives alerts")
	fs.StringVar(&c.Alertmanager, "alertmanager", c.Alertmanager, "Alertmanager base `URL` (e.g. http://alertmanager:9093) that receives alerts through its v2 API")
	fs.DurationVar(&c.AlertCooldown, "alert-cooldown", c.AlertCooldown, "least time between two notifications of one alert")
	fs.IntVar(&c.AlertRetries, "alert-retries", c.AlertRetries, "retries of a failed alert delivery, with exponential backoff")
	fs.Var(&c.ExpiryWarn, "expiry-warn", "comma-separated time-left `thresholds` for expiry alerts, e.g. 21d,7d")
	fs.Float64Var(&c.FailureRatio, "failure-ratio", c.FailureRatio, "alert when one handshake failure reason reaches this share of handshakes over 5 minutes")
	fs.IntVar(&c.FailureMin, "failure-min", c.FailureMin, "least failures of one reason over 5 minutes for a ratio alert")
	fs.IntVar(&c.RefusalSpike, "refusal-spike", c.RefusalSpike, "alert when one limit refuses this many connections in 5 minutes")
	fs.IntVar(&c.HandshakeLogBurst, "handshake-log-burst", c.HandshakeLogBurst, "failed handshakes of one kind logged per --handshake-log-period; the rest are summarised")
	fs.DurationVar(&c.HandshakeLogPeriod, "handshake-log-period", c.HandshakeLogPeriod, "period of the failed-handshake log budget and its summaries")
}

func (c *monitorConfig) validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("monitor.%s: %s", key, fmt.Sprintf(format, a...)))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"probe_interval", c.ProbeInterval}, {"probe_timeout", c.ProbeTimeout}, {"alert_cooldown", c.AlertCooldown}, {"handshake_log_period", c.HandshakeLogPeriod}} {
		if d.v < 0 {
			bad(d.key, "%v must not be negative", d.v)
		}
	}
	if c.ProbeInterval > 0 && c.ProbeInterval < 100*time.Millisecond {
		bad("probe_interval", "%v is too short: the probe would load the proxy; give at least 100ms", c.ProbeInterval)
	}
	for i, n := range c.ProbeNames {
		if n == "" || strings.ContainsAny(n, " */:") {
			bad(fmt.Sprintf("probe_names[%d]", i), "%q is not a server name (no wildcards, ports or schemes)", n)
		}
	}
	if a := c.ProbeAddress; a != "" {
		host := a
		if h, _, err := net.SplitHostPort(a); err == nil {
			host = h
		}
		if host == "" || strings.ContainsAny(host, "/ ") {
			bad("probe_address", "%q is not a host or host:port", a)
		}
	}
	for _, u := range []struct{ key, v string }{{"alert_webhook", c.AlertWebhook}, {"alert_slack", c.AlertSlack}, {"alertmanager", c.Alertmanager}} {
		if u.v == "" {
			continue
		}
		p, err := url.Parse(u.v)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			bad(u.key, "%q is not an http:// or https:// URL", u.v)
		}
	}
	if c.AlertRetries < 0 || c.AlertRetries > 20 {
		bad("alert_retries", "%d is not between 0 and 20", c.AlertRetries)
	}
	for i, d := range c.ExpiryWarn {
		if d <= 0 {
			bad(fmt.Sprintf("expiry_warn[%d]", i), "%v must be positive", d)
		}
	}
	if c.FailureRatio < 0 || c.FailureRatio > 1 {
		bad("failure_ratio", "%v is not between 0 and 1 (a share, e.g. 0.1 for 10%%)", c.FailureRatio)
	}
	if c.FailureMin < 0 {
		bad("failure_min", "must not be negative")
	}
	if c.RefusalSpike < 0 {
		bad("refusal_spike", "must not be negative")
	}
	if c.HandshakeLogBurst < 0 {
		bad("handshake_log_burst", "must not be negative")
	}
	return errors.Join(errs...)
}

// stringList is a comma-separated flag; setting it replaces the list.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	*s = nil
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}

// durationList is a list of durations that also accepts a d suffix for
// days, from a flag (comma-separated) or YAML (a list or one string).
type durationList []time.Duration

func (d *durationList) String() string {
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

func (d *durationList) Set(v string) error {
	var out durationList
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
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

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *durationList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		return d.Set(n.Value)
	}
	var items []string
	if err := n.Decode(&items); err != nil {
		return err
	}
	return d.Set(strings.Join(items, ","))
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
