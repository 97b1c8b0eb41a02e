// Package freeport picks loopback ports for programs that must be told
// their port (Mosquitto, RabbitMQ, pebble, tlsfront itself in the
// benchmarks) rather than listen on port 0 and say which one they got.
//
// A port is only known to be free while it is held, and Take frees its
// ports when it returns: another process may bind one before the program
// does, so callers retry on a collision. Anything of the caller's own that
// listens on port 0 must listen before Take: once freed, a port may be
// handed out again.
package freeport

import "net"

// Take returns n distinct loopback ports that were free a moment ago.
// Each is held until all are chosen, so no two are the same.
func Take(n int) ([]int, error) {
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// One is Take(1).
func One() (int, error) {
	ports, err := Take(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}
