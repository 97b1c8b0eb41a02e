// Package pebbletest runs a real Pebble ACME test server on loopback for
// tests. Start finds the pebble binary (on PATH or in
// $(go env GOPATH)/bin), writes its configuration and an HTTPS endpoint
// certificate under t.TempDir, puts a small DNS server in front of its
// validation authority so that every name resolves to 127.0.0.1, and
// waits until its ACME directory answers. The process and the DNS server
// are stopped and waited for when the test ends.
//
// A missing pebble skips the test, except in CI (environment variable CI
// set), where it fails it. Install it with
//
//	go install github.com/letsencrypt/pebble/v2/cmd/pebble@latest
//
// It is for tests only; nothing outside _test.go files imports it.
package pebbletest
