// Command bench measures tlsfront against a direct connection, nginx
// (stream ssl) and HAProxy, all in front of the same TCP echo backend with
// the same ECDSA P-256 chain, in one run:
//
//	go run ./bench            # about 5 minutes (2 rounds), writes bench/RESULTS.md
//	go run ./bench -quick     # about 1 minute smoke run
//
// It measures new TLS connections per second and the proxy's CPU per
// connection, bulk throughput on 1 and 8 connections, added round-trip
// latency, what the first message after a quiet spell costs (tlsfront
// parks quiet connections), and resident memory per idle connection.
// Each cell is the best of the rounds, with their median; CPU steal is
// reported per target. Only ratios within one run mean anything on a
// shared machine. The proxy under test
// is pinned to CPU 0 and the load generator (this process) with the echo
// backend to CPU 1. Every child process is in its own process group and is
// killed on exit.
package main
