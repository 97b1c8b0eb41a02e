// Package proxy accepts connections, terminates TLS and forwards the
// plaintext to a backend.
//
// Every connection goes through the same steps: take a global slot, accept,
// admit (limits), handshake (certificates come from a tls.Config callback),
// report the handshake's outcome to one Observer, route by SNI, forward. A
// tcp listener copies bytes both ways (MQTT over TLS to plain MQTT); an http
// listener serves HTTP/1.1 and HTTP/2 and proxies WebSocket upgrades frame
// by frame.
//
// Client identity reaches the broker in two ways: a listener can let in
// only listed client certificates (ClientAllow, checked after the chain in
// VerifyConnection), and a tcp listener can describe the TLS session and
// the verified client CN to its backend in the PROXY protocol v2 SSL TLV.
package proxy
