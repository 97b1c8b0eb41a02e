package monitor

import "github.com/prometheus/client_golang/prometheus"

// LimitCounts is the limiter's state, as metrics show it.
type LimitCounts struct {
	Tracked        int
	Evicted        uint64
	InFlight, Open int64
	Delayed        int
	TableFull      bool
	TableFullTimes uint64
}

// Issuance is what ACME is doing. Names are never labels, so a host with
// thousands of them has a handful of series.
type Issuance struct {
	// OnDemand is nil unless on-demand issuance is on.
	OnDemand *OnDemandCounts
	// Overdue counts certificates past their renewal point by more than
	// a day and not renewed yet.
	Overdue int
}

// OnDemandCounts are the names waiting, being obtained or failing (allowed
// names without a certificate), the attempts and the refusals by cap.
type OnDemandCounts struct {
	Queued, Running, Failing  int
	Started, Obtained, Failed uint64
	Refused                   map[string]uint64
}

var (
	limitTrackedDesc  = prometheus.NewDesc("tlsfront_limits_tracked_clients", "Clients with per-client limit state held.", nil, nil)
	limitEvictedDesc  = prometheus.NewDesc("tlsfront_limits_evicted_clients_total", "Clients forgotten at the tracking cap before their state expired.", nil, nil)
	limitInFlightDesc = prometheus.NewDesc("tlsfront_limits_handshakes_in_flight", "TLS handshakes under way.", nil, nil)
	limitOpenDesc     = prometheus.NewDesc("tlsfront_limits_open_connections", "Connections admitted and open.", nil, nil)
	limitDelayedDesc  = prometheus.NewDesc("tlsfront_limits_delayed_sockets", "Refused sockets held open to slow retry loops.", nil, nil)
	limitFullDesc     = prometheus.NewDesc("tlsfront_limits_client_table_full", "1 while the per-client table is full: newcomers are admitted untracked (raise limits.max_clients).", nil, nil)
	limitFullTimes    = prometheus.NewDesc("tlsfront_limits_client_table_full_total", "Times a newcomer found the per-client table full and was admitted untracked.", nil, nil)
	odNamesDesc       = prometheus.NewDesc("tlsfront_acme_on_demand_names", "Allowed on-demand names without a certificate, by state: queued (waiting for a worker), running (order placed at the CA), failing (backing off after a failure).", []string{"state"}, nil)
	odAttemptsDesc    = prometheus.NewDesc("tlsfront_acme_on_demand_attempts_total", "On-demand issuance attempts by outcome (started, obtained, failed).", []string{"outcome"}, nil)
	odRefusedDesc     = prometheus.NewDesc("tlsfront_acme_on_demand_refused_total", "Handshakes whose on-demand name could not start an order, by cap (pending, rate, domain, name_table).", []string{"cap"}, nil)
	overdueDesc       = prometheus.NewDesc("tlsfront_acme_renewals_overdue", "ACME certificates past their renewal point by more than a day and not renewed yet.", nil, nil)
)

// stateCollector exports the limiter's and ACME's state at scrape time.
type stateCollector struct{ o *Options }

func (stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{limitTrackedDesc, limitEvictedDesc, limitInFlightDesc, limitOpenDesc, limitDelayedDesc,
		limitFullDesc, limitFullTimes, odNamesDesc, odAttemptsDesc, odRefusedDesc, overdueDesc} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	if c.o.LimitCounts != nil {
		s := c.o.LimitCounts()
		gauge(limitTrackedDesc, float64(s.Tracked))
		counter(limitEvictedDesc, float64(s.Evicted))
		gauge(limitInFlightDesc, float64(s.InFlight))
		gauge(limitOpenDesc, float64(s.Open))
		gauge(limitDelayedDesc, float64(s.Delayed))
		full := 0.0
		if s.TableFull {
			full = 1
		}
		gauge(limitFullDesc, full)
		counter(limitFullTimes, float64(s.TableFullTimes))
	}
	if c.o.Issuance != nil {
		s := c.o.Issuance()
		gauge(overdueDesc, float64(s.Overdue))
		if od := s.OnDemand; od != nil {
			for state, n := range map[string]int{"queued": od.Queued, "running": od.Running, "failing": od.Failing} {
				gauge(odNamesDesc, float64(n), state)
			}
			for outcome, n := range map[string]uint64{"started": od.Started, "obtained": od.Obtained, "failed": od.Failed} {
				counter(odAttemptsDesc, float64(n), outcome)
			}
			for cap, n := range od.Refused {
				counter(odRefusedDesc, float64(n), cap)
			}
		}
	}
}
