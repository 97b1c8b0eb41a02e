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
