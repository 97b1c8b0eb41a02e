// Package proxy accepts connections, terminates TLS and forwards the
// plaintext to a backend.
//
// A Server is the front of one TLS listener: it takes a global slot,
// accepts, admits (limits), runs the handshake (certificates come from a
// tls.Config callback), classifies and reports its outcome through a
// report.Sink, and hands the handshaken session to the listener kind's
// forwarder. The tcp forwarder routes by SNI and copies bytes both ways
// (MQTT over TLS to plain MQTT, answering refused MQTT clients with a
// CONNACK). The http forwarder serves HTTP/1.1 and HTTP/2, routes by SNI,
// Host and path prefix, and passes requests and the backend's answers
// through as they are, with forwarding headers (X-Forwarded-*, optionally
// Forwarded, and X-Forwarded-Client-Cert under mTLS). A WebSocket upgrade
// the backend accepts is relayed frame by frame: frame headers are parsed,
// payloads are not, so extensions such as permessage-deflate work end to
// end while the proxy pings idle clients, caps message size and closes
// both sides with a proper close code. Both dial backends through one dialer that takes the
// backend shield (pacing, circuit breaker) as a small interface. A
// Redirect is the plain HTTP listener that sends clients to https; it and
// Server share the Listener interface.
//
// ListenerConfig is a listener's section of the configuration file: it
// owns the YAML keys, their validation (errors name the keys) and the one
// table of listener kinds, and Build turns it into a Server or Redirect.
//
// tlsfront's own self-probe offers report.ProbeALPN; the front completes
// its handshake and ends the connection there, so a probe never reaches a
// backend and is reported as a probe.
//
// The tcp forwarder's copying (pipe.go) holds a buffer only while data
// flows and parks a direction quiet for a second in one epoll watcher per
// Server, with no goroutine (park_linux.go). On Linux its socket reads and
// writes are raw system calls (rawio.go): the runtime's monitor thread is
// then not woken by every message of a lightly loaded connection.
//
// Constructors start nothing; Serve starts the goroutines, and Shutdown
// drains and then closes what the Server owns. A tcp listener with
// protocol mqtt drains its connections at a pace: each ends at its own
// moment, spread over the time left until Shutdown's deadline, at an MQTT
// packet boundary of the broker's stream, MQTT 5 clients with a
// DISCONNECT 0x8B (server shutting down), so that clients reconnect to
// the next instance as a trickle, not all at once (drain.go).
//
// Only transport failures count toward a backend's circuit breaker: a
// failed dial and, on http listeners, a connection closed before a byte
// of answer. Any HTTP answer, of any status, is the backend working.
//
// Client identity reaches the broker in two ways: a listener can let in
// only listed client certificates (ClientAllow, checked after the chain in
// VerifyConnection), and a tcp listener can describe the TLS session and
// the verified client CN to its backend in the PROXY protocol v2 SSL TLV.
package proxy
