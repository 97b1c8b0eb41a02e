// Command resume measures a reconnect storm against a fleet of three
// tlsfront instances sharing a session ticket key: the share of
// reconnections that resume their TLS session on whichever instance they
// land, and the proxies' CPU per reconnection, resumed against full
// handshakes. It is `make bench-resume`.
package main
