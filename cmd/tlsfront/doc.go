// Command tlsfront is a TLS-terminating reverse proxy sidecar for MQTT
// brokers and WebSocket services.
package main
