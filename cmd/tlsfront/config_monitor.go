package main

import (
	"flag"
	"strings"

	"github.com/tlsfront/tlsfront/monitor"
)

// monitorSection is the monitor section of the configuration:
// monitor.Options, which owns the keys, their defaults and their
// validation, and the readiness switch the assembly reads.
type monitorSection struct {
	monitor.Options `yaml:",inline"`
	// ReadyRequiresBackend makes /readyz fail while a listener's backend
	// cannot be reached. Off by default: a sidecar's broker has its own
	// readiness, and taking tlsfront out of a load balancer while the
	// broker restarts only turns clients' CONNACK 0x88 into refused
	// connections.
	ReadyRequiresBackend bool `yaml:"ready_requires_backend"`
}

func defaultMonitor() monitorSection { return monitorSection{Options: monitor.Defaults()} }

func (c *monitorSection) registerFlags(fs *flag.FlagSet) {
	o := &c.Options
	fs.DurationVar(&o.ProbeInterval, "probe-interval", o.ProbeInterval, "time between self-probes of every TLS listener and name")
	fs.DurationVar(&o.ProbeTimeout, "probe-timeout", o.ProbeTimeout, "time one self-probe handshake may take")
	fs.BoolVar(&o.ProbeDisabled, "probe-disabled", o.ProbeDisabled, "turn the self-probe off")
	fs.Var((*stringList)(&o.ProbeNames), "probe-names", "comma-separated server `names` to probe (default: every name the certificates cover)")
	fs.StringVar(&o.ProbeAddress, "probe-address", o.ProbeAddress, "`host` or host:port outside clients connect to, when not the listen address")
	fs.StringVar(&o.ProbeCAFile, "probe-ca", o.ProbeCAFile, "PEM `file` of the roots your clients trust, for the self-probe (default: --trust-ca, else system roots)")
	fs.BoolVar(&c.ReadyRequiresBackend, "ready-requires-backend", c.ReadyRequiresBackend, "make /readyz fail while a listener's backend cannot be reached (off: the broker has its own readiness)")
	fs.StringVar(&o.Alerts.Webhook, "alert-webhook", o.Alerts.Webhook, "`URL` that receives alerts as JSON POSTs")
	fs.StringVar(&o.Alerts.Slack, "alert-slack", o.Alerts.Slack, "Slack incoming-webhook `URL` that receives alerts")
	fs.StringVar(&o.Alerts.Alertmanager, "alertmanager", o.Alerts.Alertmanager, "Alertmanager base `URL` (e.g. http://alertmanager:9093) that receives alerts through its v2 API")
	fs.DurationVar(&o.Alerts.Cooldown, "alert-cooldown", o.Alerts.Cooldown, "least time between two notifications of one alert that keeps firing")
	fs.IntVar(&o.Alerts.Retries, "alert-retries", o.Alerts.Retries, "quick retries of a failed alert delivery, with exponential backoff, before a pause")
	fs.Var(&o.ExpiryWarn, "expiry-warn", "comma-separated time-left `thresholds` for expiry alerts, e.g. 21d,7d")
	fs.Float64Var(&o.FailureRatio, "failure-ratio", o.FailureRatio, "alert when one handshake failure reason reaches this share of handshakes over 5 minutes")
	fs.IntVar(&o.FailureMin, "failure-min", o.FailureMin, "least failures of one reason over 5 minutes for a ratio alert")
	fs.IntVar(&o.RefusalSpike, "refusal-spike", o.RefusalSpike, "alert when one limit refuses this many connections in 5 minutes")
	fs.IntVar(&o.HandshakeLogBurst, "handshake-log-burst", o.HandshakeLogBurst, "failed handshakes of one kind logged per --handshake-log-period; the rest are summarised")
	fs.DurationVar(&o.HandshakeLogPeriod, "handshake-log-period", o.HandshakeLogPeriod, "period of the failed-handshake log budget and its summaries")
	fs.BoolVar(&o.AccessLog, "access-log", o.AccessLog, "log one line per proxied connection when it ends (client, SNI, JA4, backend, bytes, duration)")
}

func (c *monitorSection) validate() error { return c.Options.Validate() }

// stringList is a comma-separated flag; setting it replaces the list.
type stringList []string

func (s *stringList) String() string {
	if s == nil {
		return ""
	}
	return strings.Join(*s, ",")
}

func (s *stringList) Set(v string) error {
	*s = nil
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}
