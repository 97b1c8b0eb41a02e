// Command echo is the benchmark's TCP echo backend: every byte a client
// sends is written back to it. It runs as its own process so that its
// descriptors and memory are not counted against the load generator or the
// proxy under test.
//
// It prints "listening ADDR" on stdout once it accepts connections.
package main
