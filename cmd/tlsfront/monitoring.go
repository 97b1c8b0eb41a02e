package main

import (
	"context"
	"crypto/x509"
	"fmt"

	"github.com/tlsfront/tlsfront/certs"
	"github.com/tlsfront/tlsfront/internal/supervise"
	"github.com/tlsfront/tlsfront/monitor"
	"github.com/tlsfront/tlsfront/proxy"
)

// buildMonitor makes tlsfront report on itself: metrics, status, the
// self-probe of every TLS listener that /readyz depends on, alerts and the
// failed-handshake log. It starts nothing; it runs as a component.
func (a *app) buildMonitor() error {
	if err := a.cfg.Monitor.CheckProbeAddress(proxy.CountTLS(a.cfg.Listeners)); err != nil {
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
	if a.limiter != nil {
		o.LimitCounts = func() monitor.LimitCounts {
			s := a.limiter.Stats()
			return monitor.LimitCounts{Tracked: s.TrackedClients, Evicted: s.EvictedClients, InFlight: s.HandshakesInFlight,
				Open: s.OpenConns, Delayed: s.DelayedSockets, TableFull: s.ClientTableFull, TableFullTimes: s.ClientTableFullTimes}
		}
	}
	if am := a.acme; am != nil {
		onDemand := a.cfg.ACME.OnDemand.Enabled
		o.Issuance = func() monitor.Issuance {
			out := monitor.Issuance{Overdue: am.Overdue()}
			if onDemand {
				s := am.OnDemandStats()
				out.OnDemand = &monitor.OnDemandCounts{Queued: s.Queued, Running: s.Running, Failing: s.Failing,
					Started: s.Started, Obtained: s.Obtained, Failed: s.Failed, Refused: s.Refused}
			}
			return out
		}
	}
	o.Version = version
	m, err := monitor.New(o)
	if err != nil {
		return fmt.Errorf("monitor: %w", err)
	}
	a.mon = m
	a.components = append(a.components, supervise.Component{Name: "monitor", Run: func(ctx context.Context) error { m.Run(ctx); return nil }})
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
		ml := monitor.Listener{Name: l.cfg.Name, Kind: l.cfg.Kind, Address: l.ln.Addr().String(), TLS: l.kind.TLS}
		if l.kind.TLS {
			ml.TLSProfile, ml.BelowDefault = l.cfg.TLS.Policy().Name(), l.cfg.TLS.Policy().BelowDefault()
		}
		out = append(out, ml)
	}
	return out
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
