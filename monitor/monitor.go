package monitor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tlsfront/tlsfront/report"
)

// Options configure a Monitor. Zero values take the documented defaults.
// The fields with YAML keys are the monitor section of tlsfront's
// configuration; Validate checks them.
type Options struct {
	// Log receives alert lines, failed-handshake lines and summaries.
	Log *slog.Logger `yaml:"-"`

	// Certificates returns the certificates being served. It is called
	// at scrape, status, probe and evaluation time, never on the
	// handshake path.
	Certificates func() []Certificate `yaml:"-"`
	// Listeners returns the TLS and redirect listeners, with their bound
	// addresses once serving.
	Listeners func() []Listener `yaml:"-"`
	// LimitStats, when set, returns the limiter's state for /status. It
	// must be JSON-encodable; /status shows its fields in snake_case.
	LimitStats func() any `yaml:"-"`
	// Backends, when set, returns each backend's breaker state (the
	// limiter's limits.Stats().Backends, converted). It is called at
	// scrape, status and evaluation time, from several goroutines at
	// once; breaker changes are logged and alerted on within one
	// evaluation (10 s).
	Backends func() []BackendState `yaml:"-"`
	// LimitCounts and Issuance, when set, give the limiter's and ACME's
	// state for the metrics at scrape time.
	LimitCounts func() LimitCounts `yaml:"-"`
	Issuance    func() Issuance    `yaml:"-"`
	// Version is the build's version, for tlsfront_build_info and
	// /status.
	Version string `yaml:"-"`

	// ProbeTargets returns what to probe: for each TLS listener, the
	// address an outside client dials and the server names to ask for.
	// Nil probes every TLS listener (Listener.TLS) for ProbeNames, or the
	// names the certificates cover, through ProbeAddress.
	ProbeTargets func() []ProbeTarget `yaml:"-"`
	// ProbeNames are the server names probed; default every name the
	// certificates cover (a wildcard as "tlsfront-probe.<domain>").
	ProbeNames []string `yaml:"probe_names"`
	// ProbeAddress is where outside clients connect, when not the bound
	// address: a host (each listener's own port is used) or host:port
	// (only with a single TLS listener).
	ProbeAddress string `yaml:"probe_address"`
	// ProbeDisabled turns the self-probe off.
	ProbeDisabled bool `yaml:"probe_disabled"`
	// ProbeCAFile is the PEM bundle of the roots clients trust, when it
	// differs from the trust store (e.g. old devices); whoever builds
	// ProbeRoots reads it, each round.
	ProbeCAFile string `yaml:"probe_ca_file"`
	// ProbeRoots returns the trust store probes verify against, as the
	// clients' own. A nil pool means the system roots. It is called once
	// per probe round, so an updated bundle is picked up.
	ProbeRoots func() (*x509.CertPool, error) `yaml:"-"`
	// ProbeInterval is the time between probe rounds; default 60 s.
	ProbeInterval time.Duration `yaml:"probe_interval"`
	// ProbeTimeout bounds one probe (dial and handshake); default 10 s.
	ProbeTimeout time.Duration `yaml:"probe_timeout"`
	// ProbeBudget is the most handshakes one probe round runs (default
	// 256): with more names, rounds rotate through them, so that each
	// name is checked at least once every ceil(names / ceil(budget/2))
	// rounds (ceil(names / budget) while none fail).
	ProbeBudget int `yaml:"probe_budget"`
	// ProbeConcurrency is how many probe handshakes run at once
	// (default 8).
	ProbeConcurrency int `yaml:"probe_concurrency"`

	// Alerts says where alerts go besides the log.
	Alerts AlertOptions `yaml:",inline"`
	// ExpiryWarn are the thresholds of time left before a served
	// certificate (any element of its chain) expires at which an alert
	// is raised; default 21 and 7 days.
	ExpiryWarn Durations `yaml:"expiry_warn"`
	// FailureRatio is the share of all handshakes over the last five
	// minutes that failures of one reason must reach to alert; default
	// 0.1.
	FailureRatio float64 `yaml:"failure_ratio"`
	// FailureMin is the number of failures of one reason over the window
	// below which no ratio alert is raised; default 50.
	FailureMin int `yaml:"failure_min"`
	// RefusalSpike is the number of refusals by one limit over the window
	// that raises an alert; default 100.
	RefusalSpike int `yaml:"refusal_spike"`

	// HandshakeLogBurst is how many failed handshakes per (reason,
	// fingerprint) are logged each HandshakeLogPeriod before the rest are
	// only counted and summarised; default 5 per minute.
	HandshakeLogBurst int `yaml:"handshake_log_burst"`
	// AccessLog logs one line per proxied connection when it ends
	// (listener, connection ID, client, SNI, JA4, backend, bytes each
	// way, duration, how it ended). Off by default: a busy broker has
	// more connections than anyone reads.
	AccessLog          bool          `yaml:"access_log"`
	HandshakeLogPeriod time.Duration `yaml:"handshake_log_period"`

	// Now is the clock; nil means time.Now. A test seam.
	Now func() time.Time `yaml:"-"`
}

// Certificate is one served certificate, as the monitor sees it.
type Certificate struct {
	ID string
	// Chain is the verified path, leaf first, up to and including the
	// root; Chain[0] is the leaf.
	Chain    []*x509.Certificate
	CertFile string
	KeyFile  string
	// LoadedAt is when the files were last read successfully.
	LoadedAt time.Time
	// OCSP is the stapling state when known; empty shows as "n/a".
	OCSP string
}

// Listener is one listener, as the status page shows it.
type Listener struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Address is the bound address once serving, else the configured one.
	Address string `json:"address"`
	// TLS is set for a listener that terminates TLS: one the probe
	// checks.
	TLS bool `json:"tls"`
	// TLSProfile is the listener's TLS policy (modern, intermediate,
	// legacy); empty for plain listeners. BelowDefault marks one that lets
	// in clients the default refuses.
	TLSProfile   string `json:"tls_profile,omitempty"`
	BelowDefault bool   `json:"tls_below_default,omitempty"`
}

// Handshake is the outcome of one TLS handshake, as the rest of tlsfront
// reports it.
type Handshake = report.Handshake

// Monitor is tlsfront's self-reporting. Create it with New, feed it events,
// serve its handlers, and run it with Run.
type Monitor struct {
	o       Options
	log     *slog.Logger
	now     func() time.Time
	reg     *prometheus.Registry
	met     *metrics
	alerts  *alerter
	trigger chan struct{}

	// mu guards the fields below; the handshake path holds it briefly.
	mu       sync.Mutex
	win      window
	topFP    *topK
	hlog     handshakeLog
	hsCount  map[hsKey]prometheus.Counter
	failCnt  map[failKey]prometheus.Counter
	reasons  map[string]bool
	reloads  map[string]ReloadStatus
	hist     history
	probes   map[probeKey]ProbeResult
	probedAt time.Time
	rounds   uint64

	probeSink

	// probeCursor is where the next round's rotation starts;
	// probeNames how many names the last round was given.
	probeCursor, probeNames int
	probeTotals             []listenerNames
	// probeAnchors name each probe alert (see raiseProbeAlerts);
	// probeMembers are the names it listed last.
	probeAnchors map[probeGroup]string
	probeMembers map[probeGroup]map[string]bool
	// acmeFails are the names whose last certificate event failed.
	acmeFails        map[string]acmeFailure
	acmeFailsDropped uint64
	acmeRefused      sampler
	dials            map[string]*backendDials
	breakers         map[string]string
	breakerSince     map[string]time.Time
}

// listenerNames is how many names a listener has to probe.
type listenerNames struct {
	listener string
	names    int
}

// acmeFailure is the last failure for one name.
type acmeFailure struct {
	err string
	at  time.Time
}

type hsKey struct {
	listener string
	version  uint16
}

type failKey struct {
	listener, reason string
	version          uint16
}

// ReloadStatus is the last reload result of one certificate.
type ReloadStatus struct {
	At    time.Time `json:"at"`
	OK    bool      `json:"ok"`
	Error string    `json:"error,omitempty"`
}

const (
	fpCapacity  = 256 // fingerprints tracked since start
	fpExported  = 20  // fingerprints exported as labels; the rest are "other"
	maxCounters = 4096
)

// Defaults returns the tunable settings New uses for zero fields: probes
// every 60 s with a 10 s timeout, expiry alerts at 21 and 7 days, a
// failure-ratio alert at 10 % of handshakes with at least 50 failures, a
// refusal-spike alert at 100 per window, 5 failed-handshake lines per
// minute per kind, alerts repeated at most hourly with 5 delivery retries.
func Defaults() Options {
	return Options{
		ProbeInterval:      60 * time.Second,
		ProbeTimeout:       10 * time.Second,
		ExpiryWarn:         []time.Duration{21 * 24 * time.Hour, 7 * 24 * time.Hour},
		FailureRatio:       0.1,
		FailureMin:         50,
		RefusalSpike:       100,
		HandshakeLogBurst:  5,
		HandshakeLogPeriod: time.Minute,
		Alerts:             AlertOptions{Cooldown: time.Hour, Retries: 5},
		ProbeBudget:        256,
		ProbeConcurrency:   8,
	}
}

// fillDefaults sets every zero tunable to its value in Defaults.
func (o *Options) fillDefaults() {
	d := Defaults()
	setZero(&o.ProbeInterval, d.ProbeInterval)
	setZero(&o.ProbeTimeout, d.ProbeTimeout)
	setZero(&o.ProbeBudget, d.ProbeBudget)
	setZero(&o.ProbeConcurrency, d.ProbeConcurrency)
	setZero(&o.FailureRatio, d.FailureRatio)
	setZero(&o.FailureMin, d.FailureMin)
	setZero(&o.RefusalSpike, d.RefusalSpike)
	setZero(&o.HandshakeLogBurst, d.HandshakeLogBurst)
	setZero(&o.HandshakeLogPeriod, d.HandshakeLogPeriod)
	setZero(&o.Alerts.Cooldown, d.Alerts.Cooldown)
	setZero(&o.Alerts.Retries, d.Alerts.Retries)
	if o.ExpiryWarn == nil {
		o.ExpiryWarn = d.ExpiryWarn
	}
}

// setZero sets *p to v when *p is the zero value.
func setZero[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

// New checks o and returns a Monitor. It starts nothing: Run does.
func New(o Options) (*Monitor, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Certificates == nil {
		o.Certificates = func() []Certificate { return nil }
	}
	listenersGiven := o.Listeners != nil
	if o.Listeners == nil {
		o.Listeners = func() []Listener { return nil }
	}
	if o.ProbeRoots == nil {
		o.ProbeRoots = func() (*x509.CertPool, error) { return nil, nil }
	}
	o.fillDefaults()
	var errs []error
	if o.ProbeInterval < 0 || o.ProbeTimeout < 0 || o.HandshakeLogPeriod < 0 {
		errs = append(errs, errors.New("probe interval, probe timeout and log period must not be negative"))
	}
	if o.ProbeBudget < 2 || o.ProbeConcurrency < 1 {
		errs = append(errs, errors.New("probe budget must be at least 2 and probe concurrency at least 1"))
	}
	if o.FailureRatio < 0 || o.FailureRatio > 1 {
		errs = append(errs, fmt.Errorf("failure ratio %v is not between 0 and 1", o.FailureRatio))
	}
	for _, d := range o.ExpiryWarn {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("expiry threshold %v must be positive", d))
		}
	}
	o.ExpiryWarn = append([]time.Duration(nil), o.ExpiryWarn...)
	sort.Slice(o.ExpiryWarn, func(i, j int) bool { return o.ExpiryWarn[i] > o.ExpiryWarn[j] })
	al, err := newAlerter(o.Alerts, o.Log, o.Now)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m := &Monitor{
		o:       o,
		log:     o.Log,
		now:     o.Now,
		reg:     prometheus.NewRegistry(),
		alerts:  al,
		trigger: make(chan struct{}, 1),
		topFP:   newTopK(fpCapacity),
		hsCount: map[hsKey]prometheus.Counter{},
		failCnt: map[failKey]prometheus.Counter{},
		reasons: map[string]bool{},
		reloads: map[string]ReloadStatus{},
		probes:  map[probeKey]ProbeResult{},

		probeAnchors: map[probeGroup]string{},
		probeMembers: map[probeGroup]map[string]bool{},
		acmeFails:    map[string]acmeFailure{},
		dials:        map[string]*backendDials{},
		breakers:     map[string]string{},
		breakerSince: map[string]time.Time{},
	}
	m.hlog.init(o.HandshakeLogBurst, o.HandshakeLogPeriod)
	m.met = newMetrics(m)
	if err := m.reg.Register(stateCollector{&m.o}); err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	if err := m.met.register(m.reg); err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	al.met = m.met
	switch {
	case m.o.ProbeDisabled:
		m.o.ProbeTargets = nil
	case m.o.ProbeTargets == nil && listenersGiven:
		m.o.ProbeTargets = m.defaultProbeTargets
	}
	return m, nil
}

// Registry returns the registry the Monitor's metrics are on, so that
// other parts can add theirs to the same /metrics.
func (m *Monitor) Registry() *prometheus.Registry { return m.reg }

// Handshake records one handshake. It is called from connection goroutines
// for every handshake and must stay cheap: one short lock, counters, and a
// log line only for failures under the per-kind budget.
func (m *Monitor) Handshake(h *Handshake) {
	now := m.now()
	failed := h.Err != nil
	reason := h.Reason
	if failed && reason == "" {
		reason = "other"
	}
	version := h.Version
	if failed {
		version = maxVersion(h.Offered)
	}
	ja4 := h.JA4
	if ja4 == "" {
		ja4 = "none"
	}

	var logIt bool
	var summary *suppressed
	m.mu.Lock()
	b := m.win.at(now)
	b.handshakes++
	m.hist.add(now, failed)
	hc := m.unsyncedHandshakeCounter(h.Listener, version)
	var fc prometheus.Counter
	if failed {
		if !m.reasons[reason] {
			if len(m.reasons) >= maxReasons {
				reason = "other"
			}
			m.reasons[reason] = true
		}
		b.fail(reason, ja4)
		m.topFP.add(ja4, 1)
		fc = m.unsyncedFailureCounter(h.Listener, reason, version)
		logIt, summary = m.hlog.note(reason, ja4, now)
	}
	m.mu.Unlock()

	hc.Inc()
	if fc != nil {
		fc.Inc()
	}
	if summary != nil {
		m.logSuppressed(summary)
	}
	if logIt {
		m.log.Info("handshake failed",
			"listener", h.Listener, "reason", reason, "client", h.Client.String(), "sni", h.SNI,
			"versions", versionList(h.Offered), "ja4", ja4, "took", humanDuration(h.Duration), "err", h.Err)
	}
}

// unsyncedHandshakeCounter caches the labelled counter; the caller holds
// m.mu. Caching skips the label hashing the vector would do per call.
func (m *Monitor) unsyncedHandshakeCounter(listener string, v uint16) prometheus.Counter {
	k := hsKey{listener, v}
	c, ok := m.hsCount[k]
	if !ok {
		c = m.met.handshakes.WithLabelValues(listener, versionLabel(v))
		if len(m.hsCount) < maxCounters {
			m.hsCount[k] = c
		}
	}
	return c
}

// unsyncedFailureCounter is unsyncedHandshakeCounter for failures; the
// caller holds m.mu.
func (m *Monitor) unsyncedFailureCounter(listener, reason string, v uint16) prometheus.Counter {
	k := failKey{listener, reason, v}
	c, ok := m.failCnt[k]
	if !ok {
		c = m.met.failures.WithLabelValues(listener, reason, versionLabel(v))
		if len(m.failCnt) < maxCounters {
			m.failCnt[k] = c
		}
	}
	return c
}

// Refused records a connection turned away by the limit named limit.
func (m *Monitor) Refused(listener, limit string) {
	now := m.now()
	m.mu.Lock()
	m.win.at(now).refuse(limit)
	m.mu.Unlock()
	m.met.refusals.WithLabelValues(listener, limit).Inc()
}

// Reloaded records a reload attempt of certificate id; err is nil when the
// new files are served. A failure raises an alert at once, a success
// resolves it, and either triggers a probe round.
func (m *Monitor) Reloaded(id string, err error) {
	now := m.now()
	st := ReloadStatus{At: now, OK: err == nil}
	m.met.reloads.WithLabelValues(id).Inc()
	if err != nil {
		st.Error = err.Error()
		m.met.reloadFailures.WithLabelValues(id).Inc()
		m.alerts.raise(Alert{Key: "reload/" + id, Severity: "critical",
			Summary: fmt.Sprintf("certificate %s failed to reload; the previous certificate is still served: %v", id, err),
			Labels:  map[string]string{"certificate": id}})
	} else {
		m.alerts.resolve("reload/" + id)
	}
	m.mu.Lock()
	m.reloads[id] = st
	m.mu.Unlock()
	m.TriggerProbe()
}

// ACME event names, as counted by tlsfront_acme_events_total. Others are
// counted as "other".
const (
	ACMEObtaining = "obtaining"
	ACMEObtained  = "obtained"
	ACMEFailed    = "failed"
	ACMERenewed   = "renewed"
	// ACMERefused is an on-demand request refused before any CA contact
	// (a name not allowed, a rate limit): counted and logged (sampled),
	// never alerted on, since anyone can cause it by asking for random
	// names. "on_demand_refused", the certs package's name, is taken as
	// the same.
	ACMERefused = "refused"
)

// maxACMEFailures bounds the names tracked as failing; more are only
// counted, in the alert's summary.
const maxACMEFailures = 1024

// ACMEEvent records a certificate management event for names.
//
// Failures of all names share one alert, "acme/failed", that lists them;
// a name joining it notifies again (at most once a minute), and it
// resolves when every listed name has succeeded since. Refusals are a
// metric and a sampled log line only.
func (m *Monitor) ACMEEvent(event string, names []string, err error) {
	if event == "on_demand_refused" {
		event = ACMERefused
	}
	label := event
	switch event {
	case ACMEObtaining, ACMEObtained, ACMEFailed, ACMERenewed, ACMERefused:
	default:
		label = "other"
	}
	m.met.acme.WithLabelValues(label).Inc()
	switch {
	case event == ACMERefused:
		m.acmeRefusedLog(names, err)
	case event == ACMEFailed || err != nil:
		m.acmeFailed(names, err)
	case event == ACMEObtained || event == ACMERenewed:
		m.acmeSucceeded(names)
		m.TriggerProbe()
	}
}

func (m *Monitor) acmeRefusedLog(names []string, err error) {
	now := m.now()
	m.mu.Lock()
	logIt, before := m.acmeRefused.note(now, m.o.HandshakeLogPeriod)
	m.mu.Unlock()
	if logIt {
		m.log.Info("acme on-demand refused", "names", strings.Join(names, ","), "err", err,
			"refused_before", before, "detail", "one line per period; all are counted in tlsfront_acme_events_total{event=\"refused\"}")
	}
}

func (m *Monitor) acmeFailed(names []string, err error) {
	now := m.now()
	msg := "failed"
	if err != nil {
		msg = err.Error()
	}
	m.mu.Lock()
	wasFiring, grew := len(m.acmeFails) > 0, false
	for _, n := range names {
		if _, ok := m.acmeFails[n]; !ok {
			if len(m.acmeFails) >= maxACMEFailures {
				m.acmeFailsDropped++
				continue
			}
			grew = true
		}
		m.acmeFails[n] = acmeFailure{err: msg, at: now}
	}
	al := m.unsyncedACMEAlert()
	m.mu.Unlock()
	if al.Key == "" {
		return
	}
	if grew && wasFiring {
		m.alerts.update(al)
	} else {
		m.alerts.raise(al)
	}
}

func (m *Monitor) acmeSucceeded(names []string) {
	m.mu.Lock()
	changed := false
	for _, n := range names {
		if _, ok := m.acmeFails[n]; ok {
			delete(m.acmeFails, n)
			changed = true
		}
	}
	if len(m.acmeFails) == 0 {
		m.acmeFailsDropped = 0
	}
	al := m.unsyncedACMEAlert()
	m.mu.Unlock()
	switch {
	case al.Key == "":
		m.alerts.resolve(acmeKey)
	case changed:
		m.alerts.raise(al)
	}
}

const acmeKey = "acme/failed"

// unsyncedACMEAlert is the alert for the failing names, or a zero Alert
// when none fail. The caller holds m.mu.
func (m *Monitor) unsyncedACMEAlert() Alert {
	n := len(m.acmeFails)
	if n == 0 {
		return Alert{}
	}
	names := make([]string, 0, n)
	var last string
	var lastAt time.Time
	for name, f := range m.acmeFails {
		names = append(names, name)
		if f.at.After(lastAt) || f.at.Equal(lastAt) && name < last {
			last, lastAt = name, f.at
		}
	}
	more := ""
	if m.acmeFailsDropped > 0 {
		more = fmt.Sprintf(" (and %d failures of names beyond the %d tracked)", m.acmeFailsDropped, maxACMEFailures)
	}
	return Alert{Key: acmeKey, Severity: "critical",
		Summary: fmt.Sprintf("obtaining or renewing a certificate failed for %d name(s)%s: %s; last error (%s): %s",
			n, more, listNames(names, summaryNames), last, m.acmeFails[last].err)}
}

// ConnOpened counts a proxied connection opening. Its signature matches
// proxy.Hooks.ConnOpened.
func (m *Monitor) ConnOpened(listener string) {
	m.met.open.WithLabelValues(listener).Inc()
	m.met.conns.WithLabelValues(listener).Inc()
}

// ConnClosed counts a proxied connection closing with the bytes it carried.
// Its signature matches proxy.Hooks.ConnClosed.
func (m *Monitor) ConnClosed(listener string, fromClient, toClient int64) {
	m.met.open.WithLabelValues(listener).Dec()
	m.met.bytes.WithLabelValues(listener, "from_client").Add(float64(fromClient))
	m.met.bytes.WithLabelValues(listener, "to_client").Add(float64(toClient))
}

// BackendDial records one backend connection attempt. Its signature
// matches proxy.Hooks.BackendDial.
func (m *Monitor) BackendDial(listener, backend string, took time.Duration, err error) {
	m.met.dialSeconds.WithLabelValues(listener, backend).Observe(took.Seconds())
	if err != nil {
		m.met.dialErrors.WithLabelValues(listener, backend).Inc()
	}
	now := m.now()
	m.mu.Lock()
	if d := m.unsyncedBackend(backend); d != nil {
		d.dials++
		d.lastOK, d.lastAt = err == nil, now
		if err != nil {
			d.errors++
			d.lastErr, d.lastErrAt = err.Error(), now
		}
	}
	m.mu.Unlock()
}

// TriggerProbe asks for a probe round soon, e.g. after a reload. It never
// blocks; requests made while one is pending are merged.
func (m *Monitor) TriggerProbe() {
	select {
	case m.trigger <- struct{}{}:
	default:
	}
}

// Ready is nil unless a served certificate is expired (or not yet
// valid), or the last probe of some name failed: clients cannot complete
// a verified handshake. The error says which, with at most a few names
// per cause. It is a readiness check.
func (m *Monitor) Ready() error {
	now := m.now()
	var errs []error
	for _, c := range m.o.Certificates() {
		for i, x := range c.Chain {
			if now.After(x.NotAfter) || now.Before(x.NotBefore) {
				what := "expired on " + x.NotAfter.UTC().Format(time.RFC3339)
				if now.Before(x.NotBefore) {
					what = "not valid before " + x.NotBefore.UTC().Format(time.RFC3339)
				}
				errs = append(errs, fmt.Errorf("certificate %s (chain position %d, %s) %s: %s have no usable certificate",
					c.ID, i, x.Subject.CommonName, what, listNames(certNames(c.Chain[0]), summaryNames)))
				break
			}
		}
	}
	m.mu.Lock()
	groups := m.unsyncedProbeGroups()
	m.mu.Unlock()
	order := make([]probeGroup, 0, len(groups))
	for g := range groups {
		order = append(order, g)
	}
	sort.Slice(order, func(i, j int) bool { return order[i].listener+order[i].cause < order[j].listener+order[j].cause })
	for _, g := range order {
		rs := groups[g]
		names := make([]string, len(rs))
		for i, r := range rs {
			names[i] = r.Name
		}
		errs = append(errs, fmt.Errorf("probe %s via %s: %d name(s) fail (%s): %s: %s",
			g.listener, rs[0].Address, len(rs), listNames(names, 5), g.cause, rs[0].Error))
	}
	return errors.Join(errs...)
}

// Run probes, evaluates alert conditions, delivers alerts and flushes log
// summaries until ctx ends, then waits for what it started and returns.
func (m *Monitor) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { m.alerts.run(ctx) })
	defer wg.Wait()

	evalEvery := min(bucketWidth, m.o.ProbeInterval)
	eval := time.NewTicker(evalEvery)
	defer eval.Stop()
	flush := time.NewTicker(m.o.HandshakeLogPeriod)
	defer flush.Stop()
	var probeC <-chan time.Time
	if m.o.ProbeTargets != nil {
		probe := time.NewTicker(m.o.ProbeInterval)
		defer probe.Stop()
		probeC = probe.C
		m.probeRound(ctx)
	}
	m.evaluate()
	for {
		select {
		case <-ctx.Done():
			m.flushLogs(true)
			return
		case <-probeC:
			m.probeRound(ctx)
			m.evaluate()
		case <-m.trigger:
			if m.o.ProbeTargets != nil {
				m.probeRound(ctx)
			}
			m.evaluate()
		case <-eval.C:
			m.evaluate()
		case <-flush.C:
			m.flushLogs(false)
		}
	}
}

// evaluate raises and resolves the alerts that depend on state rather than
// on one event: expiry, handshake failure ratios, refusal spikes.
func (m *Monitor) evaluate() {
	now := m.now()
	m.evaluateExpiry(now)
	m.evaluateBackends(now)
	m.alerts.housekeep(now)
	m.mu.Lock()
	s := m.win.summary(now, 5)
	m.mu.Unlock()

	active := map[string]Alert{}
	for _, r := range s.Failures {
		if r.Count < uint64(m.o.FailureMin) || r.Ratio < m.o.FailureRatio {
			continue
		}
		var fps []string
		for _, e := range r.TopFingerprints {
			fps = append(fps, fmt.Sprintf("%s (%d)", e.Key, e.Count))
		}
		key := "handshake_failures/" + r.Reason
		active[key] = Alert{Key: key, Severity: "warning",
			Summary: fmt.Sprintf("%d of %d handshakes (%.0f%%) failed with reason %s in the last %s; top fingerprints: %s",
				r.Count, s.Handshakes, 100*r.Ratio, r.Reason, windowSpan, joinOr(fps, "none")),
			Labels: map[string]string{"reason": r.Reason}}
	}
	for _, l := range s.Refusals {
		if l.Count < uint64(m.o.RefusalSpike) {
			continue
		}
		key := "refusals/" + l.Limit
		active[key] = Alert{Key: key, Severity: "warning",
			Summary: fmt.Sprintf("limit %s refused %d connections in the last %s", l.Limit, l.Count, windowSpan),
			Labels:  map[string]string{"limit": l.Limit}}
	}
	m.alerts.sync("handshake_failures/", active)
	m.alerts.sync("refusals/", active)
}

func (m *Monitor) evaluateExpiry(now time.Time) {
	active := map[string]Alert{}
	for _, c := range m.o.Certificates() {
		if len(c.Chain) == 0 {
			continue
		}
		// The chain expires with its earliest element: an intermediate
		// ending before the leaf breaks clients just the same.
		first, pos := c.Chain[0], 0
		for i, x := range c.Chain {
			if x.NotAfter.Before(first.NotAfter) {
				first, pos = x, i
			}
		}
		left := first.NotAfter.Sub(now)
		for i, thr := range m.o.ExpiryWarn {
			if left >= thr {
				continue
			}
			sev := "warning"
			if i == len(m.o.ExpiryWarn)-1 {
				sev = "critical"
			}
			what := "certificate"
			if pos > 0 {
				what = fmt.Sprintf("chain element %d (%s) of certificate", pos, first.Subject.CommonName)
			}
			key := fmt.Sprintf("expiry/%s/%s", c.ID, fmtDays(thr))
			active[key] = Alert{Key: key, Severity: sev,
				Summary: fmt.Sprintf("%s %s expires on %s, in %s (threshold %s); renew it",
					what, c.ID, first.NotAfter.UTC().Format(time.RFC3339), fmtDays(left), fmtDays(thr)),
				Labels: map[string]string{"certificate": c.ID}}
		}
	}
	m.alerts.sync("expiry/", active)
}

func joinOr(s []string, empty string) string {
	if len(s) == 0 {
		return empty
	}
	out := s[0]
	for _, x := range s[1:] {
		out += ", " + x
	}
	return out
}

// fmtDays prints a duration in days when it is at least one.
func fmtDays(d time.Duration) string {
	if d >= 24*time.Hour || d <= -24*time.Hour {
		return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	}
	return d.Round(time.Second).String()
}

// versionSSL30 is SSL 3.0's wire value. crypto/tls's constant is
// deprecated, rightly; it is named here only to label clients that offer it.
const versionSSL30 = 0x0300

// maxVersion is the highest known TLS version among offered, ignoring
// GREASE values; zero when none.
func maxVersion(offered []uint16) uint16 {
	var v uint16
	for _, o := range offered {
		if o >= versionSSL30 && o <= tls.VersionTLS13 && o > v {
			v = o
		}
	}
	return v
}

func versionLabel(v uint16) string {
	switch v {
	case 0:
		return "none"
	case tls.VersionTLS13:
		return "tls1.3"
	case tls.VersionTLS12:
		return "tls1.2"
	case tls.VersionTLS11:
		return "tls1.1"
	case tls.VersionTLS10:
		return "tls1.0"
	case versionSSL30:
		return "ssl3.0"
	}
	return "unknown"
}

func versionList(offered []uint16) string {
	out := ""
	for _, v := range offered {
		if v < versionSSL30 || v > tls.VersionTLS13 { // GREASE and unknown values are noise
			continue
		}
		if out != "" {
			out += ","
		}
		out += versionLabel(v)
	}
	return out
}

func sortReasons(rs []ReasonSummary) {
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].Count != rs[j].Count {
			return rs[i].Count > rs[j].Count
		}
		return rs[i].Reason < rs[j].Reason
	})
}

func sortLimits(ls []LimitSummary) {
	sort.Slice(ls, func(i, j int) bool {
		if ls[i].Count != ls[j].Count {
			return ls[i].Count > ls[j].Count
		}
		return ls[i].Limit < ls[j].Limit
	})
}

// humanDuration is d for a person: milliseconds, or microseconds when
// under one; slog's JSON handler would print a Duration in nanoseconds.
func humanDuration(d time.Duration) string {
	if d < time.Millisecond {
		return d.Round(time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// sampler lets one log line through per period and counts the rest. It is
// not safe for concurrent use; the Monitor locks.
type sampler struct {
	start  time.Time
	held   int
	logged bool
}

// note says whether to log this event, and how many were held back since
// the last logged one.
func (s *sampler) note(now time.Time, period time.Duration) (logIt bool, heldBefore int) {
	if !s.logged || now.Sub(s.start) >= period {
		held := s.held
		s.start, s.held, s.logged = now, 0, true
		return true, held
	}
	s.held++
	return false, 0
}
