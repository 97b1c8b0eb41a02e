package main

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tlsfront/tlsfront/certs"
	"github.com/tlsfront/tlsfront/limits"
	"github.com/tlsfront/tlsfront/monitor"
	"github.com/tlsfront/tlsfront/proxy"
)

// setupMonitor makes tlsfront report on itself: GET /metrics and GET
// /status on the admin listener, a self-probe of every TLS listener that
// /readyz depends on, alerts (log and webhook) and a rate-limited log line
// per failed handshake. It starts nothing; the monitor runs as a task.
func (a *app) setupMonitor() error {
	c := a.cfg.Monitor
	c.defaults() // a config built in code never saw registerFlags
	if err := a.checkProbeAddress(c.ProbeAddress); err != nil {
		return err
	}
	o := monitor.Options{
		Log:          a.log.With("component", "monitor"),
		Certificates: a.monitorCertificates,
		Listeners:    a.monitorListeners,
		LimitStats: func() any {
			if a.limiter == nil {
				return nil
			}
			return a.limiter.Stats()
		},
		ProbeRoots:    func() (*x509.CertPool, error) { return a.probeRoots(c) },
		ProbeInterval: c.ProbeInterval,
		ProbeTimeout:  c.ProbeTimeout,
		Alerts: monitor.AlertOptions{
			Webhook:  c.AlertWebhook,
			Slack:    c.AlertSlack,
			Cooldown: c.AlertCooldown,
			Retries:  c.AlertRetries,
		},
		ExpiryWarn:         c.ExpiryWarn,
		FailureRatio:       c.FailureRatio,
		FailureMin:         c.FailureMin,
		RefusalSpike:       c.RefusalSpike,
		HandshakeLogBurst:  c.HandshakeLogBurst,
		HandshakeLogPeriod: c.HandshakeLogPeriod,
	}
	if !c.ProbeDisabled {
		o.ProbeTargets = func() []monitor.ProbeTarget { return a.probeTargets(c) }
	}
	m, err := monitor.New(o)
	if err != nil {
		return fmt.Errorf("monitor: %w", err)
	}
	if err := m.Registry().Register(limitsCollector{a}); err != nil {
		return fmt.Errorf("monitor: %w", err)
	}

	a.observers = append(a.observers, func(ev *proxy.HandshakeEvent) {
		h := monitorHandshake(ev)
		m.Handshake(&h)
	})
	a.onRefuse = append(a.onRefuse, func(listener string, _ netip.Addr, r *limits.Refusal) {
		m.Refused(listener, r.Limit)
	})
	a.onReload = append(a.onReload, func(id string, _ *certs.Bundle, err error) { m.Reloaded(id, err) })
	a.onACME = append(a.onACME, func(event string, names []string, err error) {
		m.ACMEEvent(acmeMonitorEvent(event), names, err)
	})
	a.admin.Handle("GET /metrics", m.MetricsHandler())
	a.admin.Handle("GET /status", m.StatusHandler())
	a.readyChecks = append(a.readyChecks, m.Ready)
	a.tasks = append(a.tasks, m.Run)
	a.hooks = monitorProxyHooks(m)
	return nil
}

// monitorProxyHooks reports connections, bytes and backend dials of the
// proxy to m. serve.go hands it to every proxy.Options.Hooks through
// a.hooks.
func monitorProxyHooks(m *monitor.Monitor) proxy.Hooks {
	return proxy.Hooks{ConnOpened: m.ConnOpened, ConnClosed: m.ConnClosed, BackendDial: m.BackendDial}
}

// monitorHandshake adapts a proxy event without copying the hello's
// slices: the monitor does not keep them past the call.
func monitorHandshake(ev *proxy.HandshakeEvent) monitor.Handshake {
	h := monitor.Handshake{Listener: ev.Listener, Client: ev.Client, Err: ev.Err, Reason: string(ev.Reason), JA4: ev.JA4, Duration: ev.Duration}
	if ev.Err == nil {
		h.Version, h.SNI = ev.State.Version, ev.State.ServerName
	}
	if ev.Hello != nil {
		h.Offered = ev.Hello.SupportedVersions
		if h.SNI == "" {
			h.SNI = ev.Hello.ServerName
		}
	}
	return h
}

func (a *app) monitorCertificates() []monitor.Certificate {
	var out []monitor.Certificate
	for _, id := range a.store.IDs() {
		b := a.store.Get(id)
		if b == nil || b.Leaf == nil {
			continue
		}
		chain := b.Chain
		if len(chain) == 0 {
			chain = []*x509.Certificate{b.Leaf}
		}
		key := b.Source.KeyFile
		if key == "" {
			key = b.Source.CertFile
		}
		out = append(out, monitor.Certificate{ID: id, Chain: chain, CertFile: b.Source.CertFile, KeyFile: key, LoadedAt: b.LoadedAt})
	}
	return out
}

// monitorListeners reads a.addrs, which serve fills before it starts the
// admin listener and the tasks that call this.
func (a *app) monitorListeners() []monitor.Listener {
	var out []monitor.Listener
	for _, lc := range a.cfg.Listeners {
		addr := lc.Listen
		if b, ok := a.addrs[lc.Name]; ok {
			addr = b.String()
		}
		out = append(out, monitor.Listener{Name: lc.Name, Kind: lc.Kind, Address: addr})
	}
	return out
}

// checkProbeAddress rejects a host:port probe address that cannot say which
// listener it reaches.
func (a *app) checkProbeAddress(pa string) error {
	if _, _, err := net.SplitHostPort(pa); pa == "" || err != nil {
		return nil
	}
	if n := len(a.tlsListeners()); n > 1 {
		return fmt.Errorf("monitor.probe_address: %q names one port but there are %d TLS listeners; give only the host, and each listener's own port is used", pa, n)
	}
	return nil
}

func (a *app) tlsListeners() []listenerConfig {
	var out []listenerConfig
	for _, lc := range a.cfg.Listeners {
		if lc.Kind != "redirect" {
			out = append(out, lc)
		}
	}
	return out
}

// probeTargets dials each TLS listener where outside clients do: through
// the probe address when given, else the bound address, with a listener
// bound on all interfaces reached on loopback.
func (a *app) probeTargets(c monitorConfig) []monitor.ProbeTarget {
	names := c.ProbeNames
	if len(names) == 0 {
		names = a.certificateNames()
	}
	var out []monitor.ProbeTarget
	for _, lc := range a.tlsListeners() {
		bound, ok := a.addrs[lc.Name].(*net.TCPAddr)
		if !ok {
			continue // not serving (yet)
		}
		out = append(out, monitor.ProbeTarget{Listener: lc.Name, Address: probeDialAddress(c.ProbeAddress, bound), Names: names})
	}
	return out
}

func probeDialAddress(probeAddr string, bound *net.TCPAddr) string {
	port := fmt.Sprint(bound.Port)
	if probeAddr != "" {
		if _, _, err := net.SplitHostPort(probeAddr); err == nil {
			return probeAddr
		}
		return net.JoinHostPort(strings.Trim(probeAddr, "[]"), port)
	}
	host := bound.IP.String()
	if bound.IP == nil || bound.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// certificateNames are the names the served certificates cover; a
// wildcard is probed with a label of our own.
func (a *app) certificateNames() []string {
	seen := map[string]bool{}
	var out []string
	add := func(n string) {
		n = strings.ToLower(n)
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	for _, id := range a.store.IDs() {
		b := a.store.Get(id)
		if b == nil || b.Leaf == nil {
			continue
		}
		for _, n := range b.Leaf.DNSNames {
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				n = "tlsfront-probe." + rest
			}
			add(n)
		}
		for _, ip := range b.Leaf.IPAddresses {
			add(ip.String())
		}
	}
	return out
}

// probeRoots re-reads the clients' trust bundle every round, so that an
// updated bundle is seen without a restart. Nil means the system roots.
func (a *app) probeRoots(c monitorConfig) (*x509.CertPool, error) {
	file := c.ProbeCAFile
	if file == "" {
		file = a.cfg.Trust.CAFile
	}
	if file == "" {
		return nil, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("monitor.probe_ca_file: %w", err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("monitor.probe_ca_file: %s holds no PEM certificate", file)
	}
	return p, nil
}

// limitsCollector exports the limiter's state at scrape time.
type limitsCollector struct{ a *app }

var (
	limitTrackedDesc  = prometheus.NewDesc("tlsfront_limits_tracked_clients", "Clients with per-client limit state held.", nil, nil)
	limitEvictedDesc  = prometheus.NewDesc("tlsfront_limits_evicted_clients_total", "Clients forgotten at the tracking cap before their state expired.", nil, nil)
	limitInFlightDesc = prometheus.NewDesc("tlsfront_limits_handshakes_in_flight", "TLS handshakes under way.", nil, nil)
	limitOpenDesc     = prometheus.NewDesc("tlsfront_limits_open_connections", "Connections admitted and open.", nil, nil)
	limitDelayedDesc  = prometheus.NewDesc("tlsfront_limits_delayed_sockets", "Refused sockets held open to slow retry loops.", nil, nil)
	limitBreakerDesc  = prometheus.NewDesc("tlsfront_limits_backend_breaker_open", "1 when the default backend's circuit breaker is open or half open.", nil, nil)
)

func (limitsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{limitTrackedDesc, limitEvictedDesc, limitInFlightDesc, limitOpenDesc, limitDelayedDesc, limitBreakerDesc} {
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
	breaker := 0.0
	if s.Breaker != "" && s.Breaker != "closed" {
		breaker = 1
	}
	g(limitBreakerDesc, breaker)
}

// acmeMonitorEvent maps certs' ACME events onto the monitor's fixed set,
// so that metrics count them by what happened.
func acmeMonitorEvent(e string) string {
	switch e {
	case certs.EventObtaining, certs.EventRenewing:
		return monitor.ACMEObtaining
	case certs.EventObtained:
		return monitor.ACMEObtained
	case certs.EventRenewed:
		return monitor.ACMERenewed
	case certs.EventFailed, certs.EventRenewFailed:
		return monitor.ACMEFailed
	}
	return e
}
