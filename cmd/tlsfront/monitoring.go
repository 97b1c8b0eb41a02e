package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tlsfront/tlsfront/certs"
	"github.com/tlsfront/tlsfront/monitor"
)

// buildMonitor makes tlsfront report on itself: metrics, status, the
// self-probe of every TLS listener that /readyz depends on, alerts and the
// failed-handshake log. It starts nothing; it runs as a component.
func (a *app) buildMonitor() error {
	if err := a.cfg.checkProbeAddress(a.cfg.Monitor.ProbeAddress); err != nil {
		return err
	}
	o := a.cfg.Monitor.Options
	o.Log = a.log.With("component", "monitor")
	o.Certificates = a.monitorCertificates
	o.Listeners = a.monitorListeners
	o.LimitStats = func() any {
		if a.limiter == nil {
			return nil
		}
		return a.limiter.Stats()
	}
	o.ProbeRoots = a.probeRoots
	o.Backends = a.backendStates
	o.Version = version
	m, err := monitor.New(o)
	if err != nil {
		return fmt.Errorf("monitor: %w", err)
	}
	for _, c := range []prometheus.Collector{limitsCollector{a}, issuanceCollector{a}} {
		if err := m.Registry().Register(c); err != nil {
			return fmt.Errorf("monitor: %w", err)
		}
	}
	a.mon = m
	a.components = append(a.components, component{name: "monitor", run: func(ctx context.Context) error { m.Run(ctx); return nil }})
	return nil
}

// monitorCertificates is every certificate served now, ACME's included.
// The monitor asks at scrape, status, probe and evaluation time, once the
// certificates are loaded.
func (a *app) monitorCertificates() []monitor.Certificate {
	var out []monitor.Certificate
	for _, s := range a.certs.Served() {
		out = append(out, monitor.Certificate{ID: s.ID, Chain: s.Chain, CertFile: s.CertFile, KeyFile: s.KeyFile, LoadedAt: s.LoadedAt})
	}
	return out
}

// monitorListeners lists the listeners with their bound addresses.
func (a *app) monitorListeners() []monitor.Listener {
	var out []monitor.Listener
	for _, l := range a.listeners {
		ml := monitor.Listener{Name: l.cfg.Name, Kind: l.cfg.Kind, Address: l.ln.Addr().String(), TLS: l.kind.tls}
		if l.kind.tls {
			ml.TLSProfile, ml.BelowDefault = l.cfg.TLS.policy.Name(), l.cfg.TLS.policy.BelowDefault()
		}
		out = append(out, ml)
	}
	return out
}

// checkProbeAddress rejects a host:port probe address that cannot say which
// listener it reaches.
func (c *config) checkProbeAddress(pa string) error {
	if _, _, err := net.SplitHostPort(pa); pa == "" || err != nil {
		return nil
	}
	n := 0
	for _, lc := range c.Listeners {
		if listenerKinds[lc.Kind].tls {
			n++
		}
	}
	if n > 1 {
		return fmt.Errorf("monitor.probe_address: %q names one port but there are %d TLS listeners; give only the host, and each listener's own port is used", pa, n)
	}
	return nil
}

// probeRoots are the roots the probe verifies against, as clients would:
// monitor.probe_ca_file, re-read every round since it is the clients'
// bundle, else the trust store in force (re-read on every reload), else
// the system roots (nil).
func (a *app) probeRoots() (*x509.CertPool, error) {
	if file := a.cfg.Monitor.ProbeCAFile; file != "" {
		p, err := certs.ReadPool(file)
		if err != nil {
			return nil, fmt.Errorf("monitor.probe_ca_file: %w", err)
		}
		return p, nil
	}
	return a.certs.Verify().Roots, nil
}

// limitsCollector exports the limiter's state at scrape time.
type limitsCollector struct{ a *app }

var (
	limitTrackedDesc  = prometheus.NewDesc("tlsfront_limits_tracked_clients", "Clients with per-client limit state held.", nil, nil)
	limitEvictedDesc  = prometheus.NewDesc("tlsfront_limits_evicted_clients_total", "Clients forgotten at the tracking cap before their state expired.", nil, nil)
	limitInFlightDesc = prometheus.NewDesc("tlsfront_limits_handshakes_in_flight", "TLS handshakes under way.", nil, nil)
	limitOpenDesc     = prometheus.NewDesc("tlsfront_limits_open_connections", "Connections admitted and open.", nil, nil)
	limitDelayedDesc  = prometheus.NewDesc("tlsfront_limits_delayed_sockets", "Refused sockets held open to slow retry loops.", nil, nil)
	limitFullDesc     = prometheus.NewDesc("tlsfront_limits_client_table_full", "1 while the per-client table is full: newcomers are admitted untracked (raise limits.max_clients).", nil, nil)
	limitFullTimes    = prometheus.NewDesc("tlsfront_limits_client_table_full_total", "Times a newcomer found the per-client table full and was admitted untracked.", nil, nil)
)

func (limitsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{limitTrackedDesc, limitEvictedDesc, limitInFlightDesc, limitOpenDesc, limitDelayedDesc, limitFullDesc, limitFullTimes} {
		ch <- d
	}
}

func (c limitsCollector) Collect(ch chan<- prometheus.Metric) {
	if c.a.limiter == nil {
		return
	}
	s := c.a.limiter.Stats()
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	g(limitTrackedDesc, float64(s.TrackedClients))
	ch <- prometheus.MustNewConstMetric(limitEvictedDesc, prometheus.CounterValue, float64(s.EvictedClients))
	g(limitInFlightDesc, float64(s.HandshakesInFlight))
	g(limitOpenDesc, float64(s.OpenConns))
	g(limitDelayedDesc, float64(s.DelayedSockets))
	full := 0.0
	if s.ClientTableFull {
		full = 1
	}
	g(limitFullDesc, full)
	ch <- prometheus.MustNewConstMetric(limitFullTimes, prometheus.CounterValue, float64(s.ClientTableFullTimes))
}

// backendStates is the limiter's view of each backend, for the monitor's
// per-backend metrics, /status and breaker alerts.
func (a *app) backendStates() []monitor.BackendState {
	if a.limiter == nil {
		return nil
	}
	var out []monitor.BackendState
	for _, b := range a.limiter.Stats().Backends {
		out = append(out, monitor.BackendState{Backend: b.Name, Breaker: b.Breaker, Waiting: b.Waiting})
	}
	return out
}

// issuanceCollector exports what ACME is doing at scrape time: on-demand
// names waiting, being obtained or failing (allowed names without a
// certificate), attempts and refusals by cap, and certificates past their
// renewal point that are not renewed yet. Names are never labels, so a
// host with thousands of them has a handful of series.
type issuanceCollector struct{ a *app }

var (
	odNamesDesc    = prometheus.NewDesc("tlsfront_acme_on_demand_names", "Allowed on-demand names without a certificate, by state: queued (waiting for a worker), running (order placed at the CA), failing (backing off after a failure).", []string{"state"}, nil)
	odAttemptsDesc = prometheus.NewDesc("tlsfront_acme_on_demand_attempts_total", "On-demand issuance attempts by outcome (started, obtained, failed).", []string{"outcome"}, nil)
	odRefusedDesc  = prometheus.NewDesc("tlsfront_acme_on_demand_refused_total", "Handshakes whose on-demand name could not start an order, by cap (pending, rate, domain, name_table).", []string{"cap"}, nil)
	overdueDesc    = prometheus.NewDesc("tlsfront_acme_renewals_overdue", "ACME certificates past their renewal point (a third of their lifetime left) by more than a day and not renewed yet.", nil, nil)
)

func (issuanceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{odNamesDesc, odAttemptsDesc, odRefusedDesc, overdueDesc} {
		ch <- d
	}
}

func (c issuanceCollector) Collect(ch chan<- prometheus.Metric) {
	am := c.a.acme
	if am == nil {
		return
	}
	if c.a.cfg.ACME.OnDemand.Enabled {
		s := am.OnDemandStats()
		for state, n := range map[string]int{"queued": s.Queued, "running": s.Running, "failing": s.Failing} {
			ch <- prometheus.MustNewConstMetric(odNamesDesc, prometheus.GaugeValue, float64(n), state)
		}
		for outcome, n := range map[string]uint64{"started": s.Started, "obtained": s.Obtained, "failed": s.Failed} {
			ch <- prometheus.MustNewConstMetric(odAttemptsDesc, prometheus.CounterValue, float64(n), outcome)
		}
		for cap, n := range s.Refused {
			ch <- prometheus.MustNewConstMetric(odRefusedDesc, prometheus.CounterValue, float64(n), cap)
		}
	}
	overdue := 0
	now := time.Now()
	for _, s := range am.Served() {
		leaf := s.Chain[0]
		life := leaf.NotAfter.Sub(leaf.NotBefore)
		if now.After(leaf.NotAfter.Add(-life / 3).Add(24 * time.Hour)) {
			overdue++
		}
	}
	ch <- prometheus.MustNewConstMetric(overdueDesc, prometheus.GaugeValue, float64(overdue))
}
