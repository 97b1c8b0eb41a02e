// Command storm measures what tlsfront's limits do in a reconnect storm.
//
// It starts mosquitto, a counting TCP shim in front of it (to count new
// backend connections), and tlsfront in front of the shim, twice: with
// limits off and with limits on. In each run well-behaved clients connect,
// publish and disconnect about once a second from their own loopback
// addresses, while storm clients reconnect in a tight loop at 30 times the
// well-behaved rate from other addresses; a third of the storm trusts the
// wrong CA, so its handshakes fail after the server has done the crypto
// (old clients with a stale trust store). It prints the two runs side by
// side; then the same twice more with silent sockets added (the stall
// attack).
//
//	go run ./bench/storm
//
// Everything runs on 127.0.0.0/8; every loop is bounded in time.
package main
