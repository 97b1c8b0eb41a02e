// Command tlsfront is a TLS-terminating reverse proxy sidecar for MQTT
// brokers and WebSocket services.
//
// This package only assembles and triggers: newApp (app.go) builds the
// limiter, the monitor, the certificate manager and the listeners in
// dependency order, serve binds their sockets and runs them as components,
// and stops them in reverse order. The packages own their configuration
// sections (the listener kinds table is proxy's); reload.go holds the
// reload triggers; the subcommands (check, check-config, reload,
// healthcheck, version) have a file each.
package main
