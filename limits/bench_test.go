package limits

import (
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// benchClients are distinct client addresses to cycle through.
func benchClients(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	return out
}

// BenchmarkAdmit measures one admission decision with the default limits:
// admitted (Admit, StartHandshake, Handshake, Close over 4096 clients, each well within
// its rate), refused (one client over its rate, the storm path), and both
// in parallel.
func BenchmarkAdmit(b *testing.B) {
	cfg := DefaultConfig()
	cfg.ClientRate, cfg.ClientBurst = 1e9, 1e6 // never refuse in "admitted"
	cfg.RefusalDelay = 0

	b.Run("admitted", func(b *testing.B) {
		l, _ := New(cfg)
		clients := benchClients(4096)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			tk, r := l.Admit(clients[i%len(clients)])
			if r != nil {
				b.Fatal(r)
			}
			tk.StartHandshake()
			tk.Handshake(true)
			tk.Close()
		}
	})
	b.Run("refused", func(b *testing.B) {
		c := DefaultConfig()
		c.RefusalDelay = 0
		l, _ := New(c)
		storm := netip.MustParseAddr("192.0.2.1")
		b.ReportAllocs()
		for b.Loop() {
			if _, r := l.Admit(storm); r == nil {
				// The burst at the start is admitted and left open.
				continue
			}
		}
	})
	b.Run("admitted-parallel", func(b *testing.B) {
		l, _ := New(cfg)
		clients := benchClients(4096)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := int(time.Now().UnixNano())
			for pb.Next() {
				i++
				tk, r := l.Admit(clients[i&4095])
				if r != nil {
					b.Error(r)
					return
				}
				tk.StartHandshake()
				tk.Handshake(true)
				tk.Close()
			}
		})
	})
	b.Run("refused-parallel", func(b *testing.B) {
		c := DefaultConfig()
		c.RefusalDelay = 0
		l, _ := New(c)
		clients := benchClients(64)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := int(time.Now().UnixNano())
			for pb.Next() {
				i++
				l.Admit(clients[i&63])
			}
		})
	})
}

// BenchmarkMemory reports the heap held per tracked client, for 100000
// distinct clients under the default limits.
func BenchmarkMemory(b *testing.B) {
	const n = 100_000
	clients := benchClients(n)
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		// The clock stands still so that no entry expires meanwhile.
		l, _ := newTest(b, DefaultConfig())
		for _, c := range clients {
			tk, _ := l.Admit(c)
			tk.Handshake(true)
			tk.Close()
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if got := l.Stats().TrackedClients; got != n {
			b.Fatalf("tracked %d clients, want %d", got, n)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/client")
		runtime.KeepAlive(l)
	}
}
