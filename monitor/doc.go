// Package monitor makes tlsfront tell when TLS breaks: it counts
// handshakes and their failures, watches the certificates it serves,
// probes its own listeners as an outside client would, and raises alerts
// through paths that do not depend on what failed (a log line and a
// webhook).
//
// The rest of tlsfront reports to it through the report.Sink that
// Monitor.Sink returns: handshakes, refusals, connections, backend dials,
// reloads and ACME events. cmd/tlsfront hands it the certificates and
// listeners through functions read lazily at scrape, status and probe
// time. It never imports proxy, certs or cmd. Its probe offers
// report.ProbeALPN, so the listeners end probe connections after the
// handshake and do not count them as clients.
//
// A Monitor is safe for concurrent use. Its hot path, Handshake, takes one
// short mutex and does not allocate for a handshake it does not log. Run
// owns every goroutine the Monitor starts (prober, evaluator, alert
// delivery) and returns only after they have stopped.
//
// Metrics are registered on a registry the Monitor creates; nothing is put
// on the global default registry.
package monitor
