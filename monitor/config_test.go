package monitor

import "testing"

func TestProbeDialAddress(t *testing.T) {
	for _, tc := range []struct {
		name, probe, bound, want string
	}{
		{"loopback bound", "", "127.0.0.1:8883", "127.0.0.1:8883"},
		{"all interfaces", "", "[::]:8883", "127.0.0.1:8883"},
		{"public host, own port", "mqtt.example.com", "[::]:8883", "mqtt.example.com:8883"},
		{"public host and port", "lb.example.com:443", "0.0.0.0:8883", "lb.example.com:443"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := probeDialAddress(tc.probe, tc.bound)
			if err != nil || got != tc.want {
				t.Fatalf("got %s, %v; want %s", got, err, tc.want)
			}
		})
	}
}

// TestCheckProbeAddress: a port in probe_address is fine for one TLS
// listener, refused for several; a host alone is always fine.
func TestCheckProbeAddress(t *testing.T) {
	tests := []struct {
		name string
		addr string
		tls  int
		bad  bool
	}{
		{name: "none", tls: 3},
		{name: "host", addr: "mqtt.example.com", tls: 3},
		{name: "host:port, one listener", addr: "mqtt.example.com:8883", tls: 1},
		{name: "host:port, two listeners", addr: "mqtt.example.com:8883", tls: 2, bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Options{ProbeAddress: tc.addr}.CheckProbeAddress(tc.tls)
			if (err != nil) != tc.bad {
				t.Fatalf("err = %v", err)
			}
		})
	}
}
