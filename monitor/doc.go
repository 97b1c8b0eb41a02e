// Package monitor makes tlsfront tell when TLS breaks: it counts
// handshakes and their failures, watches the certificates it serves and
// the backends behind it, probes its own listeners as an outside client
// would, and raises alerts through paths that do not depend on what
// failed (a log line, a webhook, Slack, Alertmanager).
//
// The rest of tlsfront reports to it through the report.Sink that
// Monitor.Sink returns: handshakes, refusals, connections, backend dials,
// reloads and ACME events. cmd/tlsfront hands it the certificates,
// listeners and backends through functions read lazily at scrape, status,
// probe and evaluation time. It never imports proxy, certs, limits or cmd.
// Its probe offers report.ProbeALPN, so the listeners end probe
// connections after the handshake and do not count them as clients.
//
// A Monitor is safe for concurrent use. Its hot path, Handshake, takes one
// short mutex and does not allocate for a handshake it does not log. Run
// owns every goroutine the Monitor starts (prober, evaluator, one
// delivery goroutine per alert receiver) and returns only after they have
// stopped.
//
// Everything it keeps is bounded whatever clients do: alerts (a cap and
// one overflow alert), names shown on /status (failing ones in full up
// to a cap, passing ones counted), failing ACME names, backends,
// fingerprints, and the one-hour per-minute history.
//
// Metrics are registered on a registry the Monitor creates (with the Go
// and process collectors); nothing is put on the global default
// registry.
package monitor
