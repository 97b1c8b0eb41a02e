package monitor

import (
	"crypto/x509"
	"fmt"
	"runtime"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const ns = "tlsfront"

// metrics are the Monitor's instruments. Label values are bounded: by
// configuration (listener, cert, backend, limit), by fixed sets (reason,
// version, event, direction) or by top-N (fingerprint).
type metrics struct {
	m *Monitor

	handshakes     *prometheus.CounterVec
	failures       *prometheus.CounterVec
	reloads        *prometheus.CounterVec
	reloadFailures *prometheus.CounterVec
	refusals       *prometheus.CounterVec
	acme           *prometheus.CounterVec
	open           *prometheus.GaugeVec
	conns          *prometheus.CounterVec
	bytes          *prometheus.CounterVec
	dialErrors     *prometheus.CounterVec
	dialSeconds    *prometheus.HistogramVec
	probeSuccess   *prometheus.GaugeVec
	probeSeconds   *prometheus.GaugeVec
	probeFailures  *prometheus.CounterVec
	probeRounds    prometheus.Counter
	alerts         *prometheus.CounterVec
	deliveries     *prometheus.CounterVec
	untracked      prometheus.Counter
	resets         *prometheus.CounterVec
	buildInfo      *prometheus.GaugeVec
	logSuppressed  prometheus.Counter

	fpDesc, notAfterDesc, leftDesc, firingDesc           *prometheus.Desc
	probeNamesDesc, backendUpDesc, breakerDesc, waitDesc *prometheus.Desc
}

func newMetrics(m *Monitor) *metrics {
	cv := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help}, labels)
	}
	gv := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: name, Help: help}, labels)
	}
	certLabels := []string{"cert", "cn", "position", "names"}
	return &metrics{
		m:              m,
		handshakes:     cv("handshakes_total", "TLS handshakes, failed or not, by listener and TLS version (negotiated, or the highest offered when failed).", "listener", "version"),
		failures:       cv("handshake_failures_total", "Failed TLS handshakes by listener, reason and highest TLS version offered.", "listener", "reason", "version"),
		reloads:        cv("certificate_reloads_total", "Certificate reload attempts by certificate.", "cert"),
		reloadFailures: cv("certificate_reload_failures_total", "Certificate reloads that failed (the previous certificate stays served).", "cert"),
		refusals:       cv("limit_refusals_total", "Connections refused by a limit.", "listener", "limit"),
		acme:           cv("acme_events_total", "ACME certificate management events: obtaining, obtained, failed, renewed, refused (on-demand requests turned away before any CA contact), other.", "event"),
		open:           gv("connections_open", "Proxied connections open now.", "listener"),
		conns:          cv("connections_total", "Proxied connections opened.", "listener"),
		bytes:          cv("bytes_total", "Bytes proxied, by direction: from_client or to_client.", "listener", "direction"),
		dialErrors:     cv("backend_dial_errors_total", "Backend connection attempts that failed.", "listener", "backend"),
		dialSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "backend_dial_duration_seconds",
			Help: "Time to connect to the backend, failed attempts included.", Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}},
			[]string{"listener", "backend"}),
		probeSuccess:  gv("probe_success", "1 if the last self-probe completed a verified handshake for this listener and name, else 0.", "listener", "name"),
		probeSeconds:  gv("probe_duration_seconds", "Dial and handshake time of the last successful self-probe.", "listener", "name"),
		probeFailures: cv("probe_failures_total", "Self-probes that failed.", "listener", "name"),
		probeRounds:   prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "probe_rounds_total", Help: "Self-probe rounds completed."}),
		alerts:        cv("alerts_total", "Alert episodes by status: firing (an alert started) or resolved.", "status"),
		deliveries: cv("alert_deliveries_total", "Alert notifications by receiver (webhook, slack, alertmanager) and outcome: ok; retried (an attempt failed and was repeated at once); failed (all attempts failed: kept and sent again later); rejected (a 4xx answer: kept and sent again later).",
			"sink", "outcome"),
		untracked: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "alerts_untracked_total",
			Help: "Alerts raised while the tracked alerts were at their cap; each is summed up in the alerts/overflow alert."}),
		resets: cv("backend_resets_total", "Backend connections the backend closed or reset before sending its first byte.", "listener", "backend"),
		buildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "build_info", Help: "Always 1; the labels tell the version and the Go version it was built with."},
			[]string{"version", "goversion"}),
		logSuppressed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "handshake_log_suppressed_total", Help: "Failed-handshake log lines held back by the per-kind rate limit."}),
		fpDesc: prometheus.NewDesc(ns+"_handshake_failure_fingerprints",
			fmt.Sprintf("Estimated failed handshakes since start by JA4 fingerprint of the ClientHello: the top %d, the rest summed as ja4=\"other\"; \"none\" had no ClientHello.", fpExported),
			[]string{"ja4"}, nil),
		notAfterDesc: prometheus.NewDesc(ns+"_certificate_not_after_timestamp_seconds", "Expiry (Unix time) of each served certificate's chain elements; position 0 is the leaf.", certLabels, nil),
		leftDesc:     prometheus.NewDesc(ns+"_certificate_expiry_seconds", "Seconds until each served chain element expires (negative once expired).", certLabels, nil),
		firingDesc:   prometheus.NewDesc(ns+"_alerts_firing", "Alerts firing now, by severity.", []string{"severity"}, nil),
		probeNamesDesc: prometheus.NewDesc(ns+"_probe_names",
			"Names the self-probe covers, by listener and the result of their last check: ok, failed, or unchecked (not reached yet by the rotation).", []string{"listener", "result"}, nil),
		backendUpDesc: prometheus.NewDesc(ns+"_backend_up", "1 when the backend's circuit breaker is closed and the last connection attempt to it succeeded, else 0.", []string{"backend"}, nil),
		breakerDesc:   prometheus.NewDesc(ns+"_backend_breaker_open", "1 when the backend's circuit breaker is open or half open: its new clients are refused.", []string{"backend"}, nil),
		waitDesc:      prometheus.NewDesc(ns+"_backend_waiting", "Connections waiting for the backend's pace.", []string{"backend"}, nil),
	}
}

func (x *metrics) register(r *prometheus.Registry) error {
	for _, c := range []prometheus.Collector{x.handshakes, x.failures, x.reloads, x.reloadFailures, x.refusals, x.acme,
		x.open, x.conns, x.bytes, x.dialErrors, x.dialSeconds, x.probeSuccess, x.probeSeconds, x.probeFailures,
		x.probeRounds, x.alerts, x.deliveries, x.untracked, x.resets, x.buildInfo, x.logSuppressed, x,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	v := x.m.o.Version
	if v == "" {
		v = "unknown"
	}
	x.buildInfo.WithLabelValues(v, runtime.Version()).Set(1)
	return nil
}

// Describe implements prometheus.Collector for the metrics computed at
// scrape time.
// listenerInfoDesc labels each listener with its kind and TLS profile;
// join it on listener to label handshakes by profile.
var listenerInfoDesc = prometheus.NewDesc("tlsfront_listener_info", "1 for each listener, with its kind and TLS profile (modern, intermediate, legacy).", []string{"listener", "kind", "tls_profile"}, nil)

func (x *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- listenerInfoDesc
	ch <- x.fpDesc
	ch <- x.notAfterDesc
	ch <- x.leftDesc
	ch <- x.firingDesc
	ch <- x.probeNamesDesc
	ch <- x.backendUpDesc
	ch <- x.breakerDesc
	ch <- x.waitDesc
}

// Collect implements prometheus.Collector: certificates are read now, so
// a reload shows on the next scrape.
func (x *metrics) Collect(ch chan<- prometheus.Metric) {
	m := x.m
	now := m.now()
	for _, l := range m.o.Listeners() {
		ch <- prometheus.MustNewConstMetric(listenerInfoDesc, prometheus.GaugeValue, 1, l.Name, l.Kind, l.TLSProfile)
	}
	for _, c := range m.o.Certificates() {
		for i, e := range c.Chain {
			lv := []string{c.ID, e.Subject.CommonName, fmt.Sprint(i), strings.Join(certNames(e), ",")}
			ch <- prometheus.MustNewConstMetric(x.notAfterDesc, prometheus.GaugeValue, float64(e.NotAfter.Unix()), lv...)
			ch <- prometheus.MustNewConstMetric(x.leftDesc, prometheus.GaugeValue, e.NotAfter.Sub(now).Seconds(), lv...)
		}
	}

	m.mu.Lock()
	top := m.topFP.top(-1)
	m.mu.Unlock()
	var other uint64
	for i, e := range top {
		if i < fpExported && e.Key != "other" {
			ch <- prometheus.MustNewConstMetric(x.fpDesc, prometheus.GaugeValue, float64(e.Count), e.Key)
		} else {
			other += e.Count
		}
	}
	// Counts displaced from the kept set live on in the survivors'
	// overestimates, so "other" is what the kept-but-unexported hold.
	ch <- prometheus.MustNewConstMetric(x.fpDesc, prometheus.GaugeValue, float64(other), "other")

	bySev := map[string]int{"warning": 0, "critical": 0}
	for _, a := range m.alerts.firing() {
		bySev[a.Severity]++
	}
	for s, n := range bySev {
		ch <- prometheus.MustNewConstMetric(x.firingDesc, prometheus.GaugeValue, float64(n), s)
	}

	type counts struct{ ok, failed, total int }
	byListener := map[string]*counts{}
	m.mu.Lock()
	for _, t := range m.probeTotals {
		byListener[t.listener] = &counts{total: t.names}
	}
	for _, r := range m.probes {
		c := byListener[r.Listener]
		if c == nil {
			continue
		}
		if r.OK {
			c.ok++
		} else {
			c.failed++
		}
	}
	m.mu.Unlock()
	for l, c := range byListener {
		ch <- prometheus.MustNewConstMetric(x.probeNamesDesc, prometheus.GaugeValue, float64(c.ok), l, "ok")
		ch <- prometheus.MustNewConstMetric(x.probeNamesDesc, prometheus.GaugeValue, float64(c.failed), l, "failed")
		ch <- prometheus.MustNewConstMetric(x.probeNamesDesc, prometheus.GaugeValue, float64(max(0, c.total-c.ok-c.failed)), l, "unchecked")
	}

	for _, b := range m.backends() {
		name := backendName(b.Backend)
		ch <- prometheus.MustNewConstMetric(x.backendUpDesc, prometheus.GaugeValue, boolFloat(b.Up), name)
		ch <- prometheus.MustNewConstMetric(x.breakerDesc, prometheus.GaugeValue, boolFloat(b.Breaker != "closed"), name)
		ch <- prometheus.MustNewConstMetric(x.waitDesc, prometheus.GaugeValue, float64(b.Waiting), name)
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// certNames are a certificate's DNS and IP SANs.
func certNames(c *x509.Certificate) []string {
	out := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}
