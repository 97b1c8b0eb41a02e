// Package redistest runs a real redis-server for tests, on a unix socket
// under t.TempDir with no TCP port, no persistence and no other clients.
// Stop and Restart let a test take Redis away and bring it back on the
// same socket; the process is killed and waited for when the test ends.
// StartSentinel runs a server and a Redis Sentinel watching it, on
// loopback TCP ports, for clients that find the master through it;
// StartTLS a server that speaks only TLS and wants client certificates.
//
// A missing redis-server skips the test, except in CI (environment
// variable CI set), where it fails it. Install it with
//
//	apt-get install redis-server
//
// valkey-server is used when redis-server is not found.
//
// It is for tests only; nothing outside _test.go files imports it.
package redistest
