package monitor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/tlsfront/tlsfront/report"
)

// ProbeTarget is one TLS listener to probe as an outside client would.
type ProbeTarget struct {
	Listener string
	// Address is what to dial: the public address when configured, else
	// the bound one (with an unspecified host replaced by loopback).
	Address string
	// Names are the server names to ask for, one handshake each. An IP
	// address is verified against the certificate's IP SANs.
	Names []string
}

// ProbeResult is the outcome of one probe.
type ProbeResult struct {
	Listener string        `json:"listener"`
	Name     string        `json:"name"`
	Address  string        `json:"address"`
	OK       bool          `json:"ok"`
	Error    string        `json:"error,omitempty"`
	Latency  time.Duration `json:"latency_ns"`
	// Serial is the hex serial of the leaf the probe was served.
	Serial   string    `json:"serial,omitempty"`
	NotAfter time.Time `json:"not_after,omitzero"`
	At       time.Time `json:"at"`
}

type probeKey struct{ listener, name string }

// probeConcurrency bounds the handshakes one round runs at once.
const probeConcurrency = 4

// maxProbesPerRound bounds a round however many names are configured.
const maxProbesPerRound = 256

// probeRound probes every target once and publishes the results together.
func (m *Monitor) probeRound(ctx context.Context) {
	targets := m.o.ProbeTargets()
	roots, rootsErr := m.o.ProbeRoots()
	type job struct {
		t    ProbeTarget
		name string
	}
	var jobs []job
	for _, t := range targets {
		for _, n := range t.Names {
			if len(jobs) < maxProbesPerRound {
				jobs = append(jobs, job{t, n})
			}
		}
	}
	results := make([]ProbeResult, len(jobs))
	sem := make(chan struct{}, probeConcurrency)
	var wg sync.WaitGroup
	for i, j := range jobs {
		if rootsErr != nil {
			results[i] = ProbeResult{Listener: j.t.Listener, Name: j.name, Address: j.t.Address, At: m.now(),
				Error: fmt.Sprintf("load the trust store clients use: %v", rootsErr)}
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			results[i] = m.probe(ctx, j.t, j.name, roots)
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // shutting down: these failures are ours, not the clients'
	}

	next := make(map[probeKey]ProbeResult, len(results))
	active := map[string]Alert{}
	for _, r := range results {
		next[probeKey{r.Listener, r.Name}] = r
		ok := 0.0
		if r.OK {
			ok = 1
			m.met.probeSeconds.WithLabelValues(r.Listener, r.Name).Set(r.Latency.Seconds())
		} else {
			m.met.probeFailures.WithLabelValues(r.Listener, r.Name).Inc()
			key := "probe/" + r.Listener + "/" + r.Name
			active[key] = Alert{Key: key, Severity: "critical",
				Summary: fmt.Sprintf("clients cannot complete a verified TLS handshake with %s via %s (listener %s): %s", r.Name, r.Address, r.Listener, r.Error),
				Labels:  map[string]string{"listener": r.Listener, "name": r.Name, "address": r.Address}}
		}
		m.met.probeSuccess.WithLabelValues(r.Listener, r.Name).Set(ok)
	}
	m.mu.Lock()
	m.probes = next
	m.probedAt = m.now()
	m.rounds++
	m.mu.Unlock()
	m.met.probeRounds.Inc()
	m.alerts.sync("probe/", active)
}

// probe dials t.Address and completes a handshake for name, verifying the
// served chain against roots as a client would.
func (m *Monitor) probe(ctx context.Context, t ProbeTarget, name string, roots *x509.CertPool) ProbeResult {
	r := ProbeResult{Listener: t.Listener, Name: name, Address: t.Address, At: m.now()}
	// A nil RootCAs is the system roots, which is what clients without a
	// configured bundle use too.
	// The probe's own ALPN tells the listener to end the connection after
	// the handshake: no backend, no breaker, not a client handshake.
	cfg := &tls.Config{ServerName: name, RootCAs: roots, NextProtos: []string{report.ProbeALPN}}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: m.o.ProbeTimeout}, Config: cfg}
	ctx, cancel := context.WithTimeout(ctx, m.o.ProbeTimeout)
	defer cancel()
	start := time.Now()
	c, err := d.DialContext(ctx, "tcp", t.Address)
	r.Latency = time.Since(start)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer c.Close()
	st := c.(*tls.Conn).ConnectionState()
	if len(st.PeerCertificates) > 0 {
		leaf := st.PeerCertificates[0]
		r.Serial = fmt.Sprintf("%X", leaf.SerialNumber)
		r.NotAfter = leaf.NotAfter
	}
	r.OK = true
	return r
}

// ProbeResults returns the last round's results, sorted.
func (m *Monitor) ProbeResults() []ProbeResult {
	m.mu.Lock()
	defer m.mu.Unlock()
	return sortedProbes(m.probes)
}

// ProbeRounds returns how many probe rounds have completed.
func (m *Monitor) ProbeRounds() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rounds
}

func sortedProbes(ps map[probeKey]ProbeResult) []ProbeResult {
	out := make([]ProbeResult, 0, len(ps))
	for _, r := range ps {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Listener != out[j].Listener {
			return out[i].Listener < out[j].Listener
		}
		return out[i].Name < out[j].Name
	})
	return out
}
