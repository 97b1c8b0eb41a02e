package monitor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/tlsfront/tlsfront/report"
)

// ProbeALPN is the ALPN protocol the self-probe offers, and the only one.
// It tells the proxy that the connection is tlsfront's own probe, so that
// the proxy can close it right after the handshake and not count it as a
// client.
const ProbeALPN = report.ProbeALPN

// ProbeTarget is one TLS listener to probe as an outside client would.
type ProbeTarget struct {
	Listener string
	// Address is what to dial: the public address when configured, else
	// the bound address (with an unspecified host replaced by loopback).
	Address string
	// Names are the server names to ask for, one handshake each. An IP
	// address is verified against the certificate's IP SANs.
	Names []string
}

// ProbeResult is the outcome of one probe.
type ProbeResult struct {
	Listener string `json:"listener"`
	Name     string `json:"name"`
	Address  string `json:"address"`
	OK       bool   `json:"ok"`
	Error    string `json:"error,omitempty"`
	// Cause classifies a failure: unknown_authority, name_mismatch,
	// expired, invalid_certificate, alpn_refused (the listener does not
	// accept ProbeALPN), server_alert, connect, timeout, trust_store or
	// handshake.
	Cause string `json:"cause,omitempty"`
	// Latency is the dial and handshake time; JSON has it as latency_ms.
	Latency time.Duration `json:"-"`
	// Serial is the hex serial of the leaf the probe was served.
	Serial   string    `json:"serial,omitempty"`
	NotAfter time.Time `json:"not_after,omitzero"`
	At       time.Time `json:"at"`
	// FailingSince is when this name was first found failing, while it
	// still fails.
	FailingSince time.Time `json:"failing_since,omitzero"`

	order     int    // position among the configured names
	failRound uint64 // the round that first found it failing
}

type probeResultJSON struct {
	probeResultPlain
	LatencyMS float64 `json:"latency_ms"`
}

type probeResultPlain ProbeResult

// MarshalJSON writes Latency as latency_ms, in milliseconds.
func (r ProbeResult) MarshalJSON() ([]byte, error) {
	return json.Marshal(probeResultJSON{probeResultPlain(r), float64(r.Latency) / float64(time.Millisecond)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *ProbeResult) UnmarshalJSON(b []byte) error {
	var x probeResultJSON
	if err := json.Unmarshal(b, &x); err != nil {
		return err
	}
	*r = ProbeResult(x.probeResultPlain)
	r.Latency = time.Duration(x.LatencyMS * float64(time.Millisecond))
	return nil
}

type probeKey struct{ listener, name string }

// probeGroup is one probe alert: the failing names of a listener that
// fail for one cause.
type probeGroup struct{ listener, cause string }

// probeRound probes the next share of the configured names and publishes
// the results.
//
// A round runs at most ProbeBudget handshakes, ProbeConcurrency at a
// time: first the names that failed last time (at most half the budget,
// so that a recovery is seen at once), then the next names in rotation.
// The rotation moves on by at least half the budget each round, so every
// name is checked at least once every ceil(names / ceil(budget/2)) rounds,
// and every ceil(names / budget) rounds while nothing fails.
func (m *Monitor) probeRound(ctx context.Context) {
	targets := m.o.ProbeTargets()
	roots, rootsErr := m.o.ProbeRoots()
	type job struct {
		t     ProbeTarget
		name  string
		order int
	}
	var all []job
	var totals []listenerNames
	configured := map[probeKey]bool{}
	for _, t := range targets {
		before := len(all)
		for _, n := range t.Names {
			k := probeKey{t.Listener, n}
			if !configured[k] {
				configured[k] = true
				all = append(all, job{t, n, len(all)})
			}
		}
		totals = append(totals, listenerNames{t.Listener, len(all) - before})
	}
	budget := m.o.ProbeBudget

	m.mu.Lock()
	var jobs []job
	picked := map[probeKey]bool{}
	for _, j := range all {
		if len(jobs) >= budget/2 {
			break
		}
		k := probeKey{j.t.Listener, j.name}
		if r, ok := m.probes[k]; ok && !r.OK {
			jobs = append(jobs, j)
			picked[k] = true
		}
	}
	if n := len(all); n > 0 {
		start := m.probeCursor % n
		scanned := 0
		for ; scanned < n && len(jobs) < budget; scanned++ {
			j := all[(start+scanned)%n]
			if k := (probeKey{j.t.Listener, j.name}); !picked[k] {
				jobs = append(jobs, j)
			}
		}
		m.probeCursor = (start + scanned) % n
	}
	m.mu.Unlock()

	results := make([]ProbeResult, len(jobs))
	sem := make(chan struct{}, m.o.ProbeConcurrency)
	var wg sync.WaitGroup
	for i, j := range jobs {
		if rootsErr != nil {
			results[i] = ProbeResult{Listener: j.t.Listener, Name: j.name, Address: j.t.Address, At: m.now(), Cause: "trust_store",
				Error: fmt.Sprintf("load the trust store clients use: %v", rootsErr), order: j.order}
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			results[i] = m.probe(ctx, j.t, j.name, roots)
			results[i].order = j.order
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // shutting down: these failures are ours, not the clients'
	}

	for _, r := range results {
		ok := 0.0
		if r.OK {
			ok = 1
			m.met.probeSeconds.WithLabelValues(r.Listener, r.Name).Set(r.Latency.Seconds())
		} else {
			m.met.probeFailures.WithLabelValues(r.Listener, r.Name).Inc()
		}
		m.met.probeSuccess.WithLabelValues(r.Listener, r.Name).Set(ok)
	}
	m.mu.Lock()
	m.rounds++
	for _, r := range results {
		k := probeKey{r.Listener, r.Name}
		if !r.OK {
			r.FailingSince, r.failRound = r.At, m.rounds
			if prev, ok := m.probes[k]; ok && !prev.OK {
				r.FailingSince, r.failRound = prev.FailingSince, prev.failRound
			}
		}
		m.probes[k] = r
	}
	var gone []probeKey
	for k := range m.probes {
		if !configured[k] {
			gone = append(gone, k)
		}
	}
	for _, k := range gone {
		delete(m.probes, k)
	}
	m.probeNames, m.probeTotals = len(all), totals
	m.probedAt = m.now()
	groups := m.unsyncedProbeGroups()
	m.mu.Unlock()
	for _, k := range gone {
		m.met.probeSuccess.DeleteLabelValues(k.listener, k.name)
		m.met.probeSeconds.DeleteLabelValues(k.listener, k.name)
		m.met.probeFailures.DeleteLabelValues(k.listener, k.name)
	}
	m.met.probeRounds.Inc()
	m.raiseProbeAlerts(groups)
}

// unsyncedProbeGroups returns the failing results by listener and cause,
// each in the order the names are configured. The caller holds m.mu.
func (m *Monitor) unsyncedProbeGroups() map[probeGroup][]ProbeResult {
	out := map[probeGroup][]ProbeResult{}
	for _, r := range m.probes {
		if !r.OK {
			g := probeGroup{r.Listener, r.Cause}
			out[g] = append(out[g], r)
		}
	}
	for _, rs := range out {
		sort.Slice(rs, func(i, j int) bool { return rs[i].order < rs[j].order })
	}
	return out
}

// summaryNames is how many names an alert summary or readiness error
// lists before "and N more".
const summaryNames = 10

// raiseProbeAlerts raises one alert per listener and cause, listing the
// failing names, and resolves the rest.
//
// The alert's key is "probe/<listener>/<name>" with the first configured
// name found failing for that cause, and it keeps that key while the cause lasts
// even as names join and leave: a key that changed with the set of names
// would resolve and re-fire on every change.
func (m *Monitor) raiseProbeAlerts(groups map[probeGroup][]ProbeResult) {
	m.mu.Lock()
	for g := range m.probeAnchors {
		if _, ok := groups[g]; !ok {
			delete(m.probeAnchors, g)
			delete(m.probeMembers, g)
		}
	}
	used := map[string]bool{}
	for _, a := range m.probeAnchors {
		used[a] = true
	}
	order := make([]probeGroup, 0, len(groups))
	for g := range groups {
		order = append(order, g)
	}
	sort.Slice(order, func(i, j int) bool {
		if order[i].listener != order[j].listener {
			return order[i].listener < order[j].listener
		}
		return order[i].cause < order[j].cause
	})
	type raised struct {
		al   Alert
		grew bool
	}
	var out []raised
	active := map[string]Alert{}
	for _, g := range order {
		rs := groups[g]
		anchor, ok := m.probeAnchors[g]
		if !ok {
			anchor = g.listener + "/" + g.cause
			for _, r := range rs {
				if k := g.listener + "/" + r.Name; !used[k] {
					anchor = k
					break
				}
			}
			m.probeAnchors[g] = anchor
			used[anchor] = true
		}
		names := make([]string, len(rs))
		members := make(map[string]bool, len(rs))
		grew := false
		for i, r := range rs {
			names[i] = r.Name
			members[r.Name] = true
			if ok && !m.probeMembers[g][r.Name] {
				grew = true
			}
		}
		m.probeMembers[g] = members
		key := "probe/" + anchor
		what := "1 name"
		if len(names) > 1 {
			what = fmt.Sprintf("%d names", len(names))
		}
		al := Alert{Key: key, Severity: "critical",
			Summary: fmt.Sprintf("clients cannot complete a verified TLS handshake with %s (%s) via %s (listener %s); cause %s: %s",
				what, listNames(names, summaryNames), rs[0].Address, g.listener, g.cause, rs[0].Error),
			Labels: map[string]string{"listener": g.listener, "cause": g.cause, "address": rs[0].Address}}
		active[key] = al
		out = append(out, raised{al, grew})
	}
	m.mu.Unlock()
	for _, r := range out {
		if r.grew {
			m.alerts.update(r.al)
		} else {
			m.alerts.raise(r.al)
		}
	}
	m.alerts.resolveAllBut("probe/", active)
}

// probe dials t.Address and completes a handshake for name, verifying the
// served chain against roots as a client would.
func (m *Monitor) probe(ctx context.Context, t ProbeTarget, name string, roots *x509.CertPool) ProbeResult {
	r := ProbeResult{Listener: t.Listener, Name: name, Address: t.Address, At: m.now()}
	// A nil RootCAs is the system roots, which is what clients without a
	// configured bundle use too. The ALPN value marks us as the probe.
	cfg := &tls.Config{ServerName: name, RootCAs: roots, NextProtos: []string{ProbeALPN}}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: m.o.ProbeTimeout}, Config: cfg}
	ctx, cancel := context.WithTimeout(ctx, m.o.ProbeTimeout)
	defer cancel()
	start := time.Now()
	c, err := d.DialContext(ctx, "tcp", t.Address)
	r.Latency = time.Since(start)
	if err != nil {
		r.Error, r.Cause = err.Error(), probeCause(err)
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

// alertNoApplicationProtocol is TLS alert 120, what a server sends when it
// speaks none of the ALPN protocols the client offers.
const alertNoApplicationProtocol tls.AlertError = 120

// isRemoteAlert reports whether err is the alert a received from the
// server. crypto/tls reports a received alert as a *net.OpError with Op
// "remote error" around an unexported type that prints as AlertError
// does, so the text the package gives a is compared, not a copy of it.
func isRemoteAlert(err error, a tls.AlertError) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error" && oe.Err != nil && oe.Err.Error() == a.Error()
}

// probeCause classifies a failed probe, so that names failing for one
// reason share one alert.
func probeCause(err error) string {
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	var ae tls.AlertError
	var oe *net.OpError
	var ne net.Error
	switch {
	case errors.As(err, &ua):
		return "unknown_authority"
	case errors.As(err, &he):
		return "name_mismatch"
	case errors.As(err, &ci):
		if ci.Reason == x509.Expired {
			return "expired"
		}
		return "invalid_certificate"
	case errors.As(err, &ae) && ae == alertNoApplicationProtocol || isRemoteAlert(err, alertNoApplicationProtocol):
		// The listener lists ALPN protocols without ProbeALPN: the
		// proxy has to accept it for the probe to get through.
		return "alpn_refused"
	case errors.As(err, &ae) || errors.As(err, &oe) && oe.Op == "remote error":
		return "server_alert"
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.As(err, &oe) && oe.Op == "dial":
		return "connect"
	}
	return "handshake"
}

// ProbeResults returns the last result of every configured name, sorted.
// With thousands of names it is long; Status summarises it.
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
	sortProbes(out)
	return out
}

func sortProbes(out []ProbeResult) {
	sort.Slice(out, func(i, j int) bool {
		if out[i].Listener != out[j].Listener {
			return out[i].Listener < out[j].Listener
		}
		return out[i].Name < out[j].Name
	})
}

// ProbeCoverage says how much of the configured names the self-probe
// covers and how they fared.
type ProbeCoverage struct {
	// Names is how many listener and name pairs are probed.
	Names int `json:"names"`
	// PerRound is the most handshakes one round runs.
	PerRound int `json:"per_round"`
	// RoundsPerPass is the rounds a full pass takes while nothing fails;
	// WorstRoundsPerPass the most it takes while many names fail (each
	// name is checked at least this often).
	RoundsPerPass      int `json:"rounds_per_pass"`
	WorstRoundsPerPass int `json:"worst_rounds_per_pass"`
	// Interval is the time between rounds, e.g. "1m0s".
	Interval string `json:"interval"`
	// Rounds is how many rounds have completed.
	Rounds    uint64 `json:"rounds"`
	Checked   int    `json:"checked"`
	Passing   int    `json:"passing"`
	Failing   int    `json:"failing"`
	Unchecked int    `json:"unchecked"`
	// OldestCheck is when the least recently checked name was checked.
	OldestCheck time.Time `json:"oldest_check,omitzero"`
	// Listeners break the counts down by listener.
	Listeners []ListenerCoverage `json:"listeners"`
	// FailingNames lists failing names in full up to a cap; more are
	// counted in FailingOmitted.
	FailingNames   []ProbeResult `json:"failing_names"`
	FailingOmitted int           `json:"failing_omitted,omitempty"`
	// Latency of the passing probes, in milliseconds.
	LatencyMS LatencySummary `json:"latency_ms"`
}

// ListenerCoverage is ProbeCoverage for one listener.
type ListenerCoverage struct {
	Listener string `json:"listener"`
	Passing  int    `json:"passing"`
	Failing  int    `json:"failing"`
}

// LatencySummary summarises probe latencies.
type LatencySummary struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
}

// maxFailingShown bounds the failing probes /status lists in full.
const maxFailingShown = 100

func (m *Monitor) unsyncedCoverage() ProbeCoverage {
	per := m.o.ProbeBudget
	c := ProbeCoverage{Names: m.probeNames, PerRound: per, Interval: m.o.ProbeInterval.String(), Rounds: m.rounds,
		RoundsPerPass: ceilDiv(m.probeNames, per), WorstRoundsPerPass: ceilDiv(m.probeNames, per-per/2)}
	byListener := map[string]*ListenerCoverage{}
	var lat []time.Duration
	for _, r := range m.probes {
		c.Checked++
		lc := byListener[r.Listener]
		if lc == nil {
			lc = &ListenerCoverage{Listener: r.Listener}
			byListener[r.Listener] = lc
		}
		if c.OldestCheck.IsZero() || r.At.Before(c.OldestCheck) {
			c.OldestCheck = r.At
		}
		if r.OK {
			c.Passing++
			lc.Passing++
			lat = append(lat, r.Latency)
		} else {
			c.Failing++
			lc.Failing++
			c.FailingNames = append(c.FailingNames, r)
		}
	}
	c.Unchecked = max(0, c.Names-c.Checked)
	for _, lc := range byListener {
		c.Listeners = append(c.Listeners, *lc)
	}
	sort.Slice(c.Listeners, func(i, j int) bool { return c.Listeners[i].Listener < c.Listeners[j].Listener })
	sortProbes(c.FailingNames)
	if len(c.FailingNames) > maxFailingShown {
		c.FailingOmitted = len(c.FailingNames) - maxFailingShown
		c.FailingNames = c.FailingNames[:maxFailingShown]
	}
	if len(lat) > 0 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		c.LatencyMS = LatencySummary{Min: ms(lat[0]), Median: ms(lat[len(lat)/2]), Max: ms(lat[len(lat)-1])}
	}
	return c
}

func ceilDiv(a, b int) int {
	if b <= 0 {
		return 0
	}
	return (a + b - 1) / b
}
