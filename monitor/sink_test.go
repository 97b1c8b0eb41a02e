package monitor

import (
	"errors"
	"testing"

	"github.com/tlsfront/tlsfront/report"
)

// BenchmarkSinkHandshake is the per-handshake cost of reporting to the
// monitor, on every connection's path.
func BenchmarkSinkHandshake(b *testing.B) {
	m, err := New(Options{HandshakeLogBurst: 1})
	if err != nil {
		b.Fatal(err)
	}
	s := m.Sink()
	offered := []uint16{0x0304, 0x0303}
	for _, tc := range []struct {
		name string
		h    report.Handshake
	}{
		{"success", report.Handshake{Listener: "main", SNI: "broker.example", Version: 0x0304, Offered: offered, JA4: "t13d1516h2_8daaf6152771_b0da82dd1658"}},
		{"failure", report.Handshake{Listener: "main", SNI: "broker.example", Offered: offered, Err: errors.New("remote error: tls: bad certificate"), Reason: "other", JA4: "t13d1516h2_8daaf6152771_b0da82dd1658"}},
		{"probe", report.Handshake{Listener: "main", SNI: "broker.example", Version: 0x0304, Probe: true}},
	} {
		s.Handshake(&tc.h) // the one logged line
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Handshake(&tc.h)
			}
		})
	}
}
