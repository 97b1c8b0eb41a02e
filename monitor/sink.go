package monitor

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tlsfront/tlsfront/report"
)

// Sink returns the report.Sink through which the rest of tlsfront tells
// the monitor what happened. It is safe for concurrent use.
func (m *Monitor) Sink() report.Sink {
	m.sinkOnce.Do(func() {
		m.probeHandshakes = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tlsfront_probe_handshakes_total",
			Help: "Handshakes of tlsfront's own self-probe as the listeners saw them, by result; they are not counted as client handshakes.",
		}, []string{"listener", "result"})
		m.resumed = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tlsfront_handshakes_resumed_total",
			Help: "Client handshakes that resumed a session (a ticket) instead of a full handshake; divide by tlsfront_handshakes_total for the share.",
		}, []string{"listener"})
		m.dependencyUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tlsfront_dependency_up",
			Help: "1 while a dependency other than the backends (e.g. the fleet's Redis) works, 0 while it fails; tlsfront keeps serving what it has.",
		}, []string{"dependency"})
		m.acmeFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tlsfront_acme_failures_total",
			Help: "Failed certificate orders and renewals by cause: rate_limited (429, the CA's limits), unauthorized (403, the name does not point here or validation failed), dns, connection, other.",
		}, []string{"reason"})
		m.acmeDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tlsfront_acme_issuance_seconds",
			Help:    "Time from placing an order (or renewal) to the certificate, or to the failure.",
			Buckets: []float64{1, 2, 5, 10, 30, 60, 120, 300, 600},
		}, []string{"result"})
		m.reg.MustRegister(m.probeHandshakes, m.resumed, m.dependencyUp, m.acmeFailures, m.acmeDuration)
	})
	return eventSink{m}
}

// probeSink holds what Sink registers once.
type probeSink struct {
	sinkOnce        sync.Once
	probeHandshakes *prometheus.CounterVec
	resumed         *prometheus.CounterVec
	dependencyUp    *prometheus.GaugeVec
	acmeFailures    *prometheus.CounterVec
	acmeDuration    *prometheus.HistogramVec
}

type eventSink struct{ m *Monitor }

func (s eventSink) Handshake(h *report.Handshake) {
	if h.Probe {
		// The probe reports its own results; the front's view of it must
		// not move client failure ratios.
		result := "ok"
		if h.Err != nil {
			result = "failed"
		}
		s.m.probeHandshakes.WithLabelValues(h.Listener, result).Inc()
		return
	}
	if h.Resumed {
		s.m.resumed.WithLabelValues(h.Listener).Inc()
	}
	s.m.Handshake(h)
}

func (s eventSink) Refused(r report.Refusal) { s.m.Refused(r.Listener, r.Limit) }

func (s eventSink) ConnOpened(listener string) { s.m.ConnOpened(listener) }

func (s eventSink) ConnClosed(c report.ConnClosed) {
	s.m.ConnClosed(c.Listener, c.FromClient, c.ToClient)
	if s.m.o.AccessLog {
		s.m.log.Info("access", "listener", c.Listener, "conn", c.ConnID, "client", c.Client.String(), "sni", c.SNI, "ja4", c.JA4,
			"backend", c.Backend, "from_client", c.FromClient, "to_client", c.ToClient, "duration", c.Duration.Round(time.Millisecond).String(), "end", c.End)
	}
}

func (s eventSink) BackendDial(d report.BackendDial) {
	s.m.BackendDial(d.Listener, d.Backend, d.Took, d.Err)
}

func (s eventSink) BackendReset(r report.BackendReset) {
	s.m.BackendReset(r.Listener, r.Backend, r.Err)
}

func (s eventSink) Reloaded(r report.Reload) { s.m.Reloaded(r.ID, r.Err) }

func (s eventSink) ACME(e report.ACME) {
	switch e.Event {
	case report.ACMEFailed:
		s.m.acmeFailures.WithLabelValues(acmeFailureReason(e.Err)).Inc()
		if e.Took > 0 {
			s.m.acmeDuration.WithLabelValues("failed").Observe(e.Took.Seconds())
		}
	case report.ACMEObtained, report.ACMERenewed:
		if e.Took > 0 {
			s.m.acmeDuration.WithLabelValues("ok").Observe(e.Took.Seconds())
		}
	}
	event := e.Event
	switch e.Event {
	case report.ACMEObtaining, report.ACMEObtained, report.ACMERenewed, report.ACMEFailed:
	default:
		event = "other"
		if e.Event == report.ACMERefused {
			event = "refused"
		}
	}
	s.m.ACMEEvent(event, e.Names, e.Err)
}

// Dependency raises an alert while a dependency fails and resolves it when
// it works again; serving goes on meanwhile from what is in memory.
func (s eventSink) Dependency(d report.Dependency) {
	key := "dependency/" + d.Name
	if d.Err == nil {
		s.m.dependencyUp.WithLabelValues(d.Name).Set(1)
		s.m.alerts.resolve(key)
		return
	}
	s.m.dependencyUp.WithLabelValues(d.Name).Set(0)
	s.m.alerts.raise(Alert{Key: key, Severity: "critical",
		Summary: fmt.Sprintf("%s is unreachable: %v; tlsfront keeps serving the certificates it has, but cannot obtain, renew or share new ones until it returns", d.Name, d.Err),
		Labels:  map[string]string{"dependency": d.Name}})
}

// acmeFailureReason sorts a failed order into a few causes an operator
// acts on differently. ACME problem types (RFC 8555 section 6.7) appear
// in the error text certmagic and acmez give.
func acmeFailureReason(err error) string {
	if err == nil {
		return "other"
	}
	msg := strings.ToLower(err.Error())
	switch {
	case strings.Contains(msg, "ratelimited") || strings.Contains(msg, "429") || strings.Contains(msg, "too many"):
		return "rate_limited"
	case strings.Contains(msg, "unauthorized") || strings.Contains(msg, "403") || strings.Contains(msg, "rejectedidentifier") || strings.Contains(msg, "caa"):
		return "unauthorized"
	case strings.Contains(msg, "dns") || strings.Contains(msg, "no such host"):
		return "dns"
	case strings.Contains(msg, "connection") || strings.Contains(msg, "timeout") || strings.Contains(msg, "deadline"):
		return "connection"
	}
	return "other"
}
