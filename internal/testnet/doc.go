// Package testnet runs loopback servers for tests and owns their
// goroutines. Every server it starts is stopped when the test ends: its
// listener and open connections are closed and its goroutines waited
// for, so no test leaks a goroutine into the next one. Buffer captures
// what a server or process under test logs while the test reads it.
//
// It is for tests only; nothing outside _test.go files imports it.
package testnet
