package monitor

import (
	"sync"

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
		m.reg.MustRegister(m.probeHandshakes)
	})
	return eventSink{m}
}

// probeSink holds what Sink registers once.
type probeSink struct {
	sinkOnce        sync.Once
	probeHandshakes *prometheus.CounterVec
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
	mh := Handshake{Listener: h.Listener, Client: h.Client, SNI: h.SNI, Version: h.Version, Offered: h.Offered,
		Err: h.Err, Reason: h.Reason, JA4: h.JA4, Duration: h.Duration}
	s.m.Handshake(&mh)
}

func (s eventSink) Refused(r report.Refusal) { s.m.Refused(r.Listener, r.Limit) }

func (s eventSink) ConnOpened(listener string) { s.m.ConnOpened(listener) }

func (s eventSink) ConnClosed(c report.ConnClosed) {
	s.m.ConnClosed(c.Listener, c.FromClient, c.ToClient)
}

func (s eventSink) BackendDial(d report.BackendDial) {
	s.m.BackendDial(d.Listener, d.Backend, d.Took, d.Err)
}

func (s eventSink) Reloaded(r report.Reload) { s.m.Reloaded(r.ID, r.Err) }

func (s eventSink) ACME(e report.ACME) {
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
