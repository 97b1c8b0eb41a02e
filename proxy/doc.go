// Package proxy accepts connections, terminates TLS and forwards the
// plaintext to a backend.
//
// Every connection goes through the same steps: take a global slot, accept,
// admit (limits), handshake (certificates come from a tls.Config callback),
// report the handshake's outcome to one Observer, route, forward. A tcp
// listener routes by SNI and copies bytes both ways (MQTT over TLS to plain
// MQTT). An http listener serves HTTP/1.1 and HTTP/2, routes by SNI, Host
// and path prefix (HTTPRoute), and passes requests and the backend's
// answers through as they are, with forwarding headers (X-Forwarded-*,
// optionally Forwarded, and X-Forwarded-Client-Cert under mTLS). A
// WebSocket upgrade the backend accepts is relayed frame by frame: frame
// headers are parsed, payloads are not, so extensions such as
// permessage-deflate work end to end while the proxy pings idle clients,
// caps message size and closes both sides with a proper close code.
//
// Only transport failures count toward a backend's circuit breaker: a
// failed dial and, on http listeners, a connection closed before a byte
// of answer. Any HTTP answer, of any status, is the backend working.
package proxy
