package memtrim

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// TestTrimReturnsFreedHeap makes a burst's garbage (64 MiB in small
// objects, as handshakes leave it), collects it, and waits until the
// Trimmer has given the free heap back to the operating system.
func TestTrimReturnsFreedHeap(t *testing.T) {
	const burst = 64 << 20
	makeGarbage(burst)
	runtime.GC()
	if s := ReadStats(); s.Free < burst/2 {
		t.Fatalf("after the burst only %d bytes are free and resident (%v); the test proves nothing", s.Free, s)
	}

	tr, err := New(Options{Every: 5 * time.Millisecond, MinGap: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	trims := make(chan struct{}, 10)
	free := tr.freeOSMemory
	tr.freeOSMemory = func() { free(); trims <- struct{}{} }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	select {
	case <-trims:
	case <-time.After(10 * time.Second):
		t.Fatalf("no trim within 10s; heap: %v", ReadStats())
	}
	if s := ReadStats(); s.Free >= burst/4 {
		t.Errorf("after the trim %d bytes are still free and resident (%v)", s.Free, s)
	}
	select {
	case <-trims:
		t.Errorf("trimmed again within MinGap")
	default:
	}
}

// TestCheck runs check on made-up statistics: when it trims, and that it
// never trims more often than MinGap however long the heap stays free.
func TestCheck(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name  string
		stats Stats
		// alloc is added to Allocated before each check.
		alloc uint64
		want  int // trims in 100 checks one second apart
	}{
		{name: "large free heap, quiet: once per MinGap", stats: Stats{Objects: 40 * mib, Free: 60 * mib, Live: 40 * mib}, want: 10},
		{name: "garbage not yet collected counts", stats: Stats{Objects: 80 * mib, Live: 40 * mib}, want: 10},
		{name: "below MinFree", stats: Stats{Objects: 4 * mib, Free: 6 * mib, Live: 4 * mib}},
		{name: "small beside the live heap", stats: Stats{Objects: 400 * mib, Free: 60 * mib, Live: 400 * mib}},
		{name: "still allocating", stats: Stats{Objects: 40 * mib, Free: 60 * mib, Live: 40 * mib}, alloc: 20 * mib},
	}
	// The first trim needs two quiet checks, so it comes at the second
	// second; then every MinGap: 1, 11, ..., 91.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := New(Options{MinGap: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			s := tt.stats
			tr.readStats = func() Stats { return s }
			trims := 0
			tr.freeOSMemory = func() { trims++ }
			start := time.Unix(1e9, 0)
			for i := range 100 {
				s.Allocated += tt.alloc
				tr.check(start.Add(time.Duration(i) * time.Second))
			}
			if trims != tt.want {
				t.Errorf("%d trims in 100 s, want %d", trims, tt.want)
			}
		})
	}
}

func TestNewRejectsNegative(t *testing.T) {
	if _, err := New(Options{Every: -time.Second}); err == nil {
		t.Error("New accepted a negative Every")
	}
}

// makeGarbage allocates n bytes in 4 KiB objects, all live at once, and
// drops them.
func makeGarbage(n int) {
	held := make([][]byte, 0, n/4096)
	for range n / 4096 {
		held = append(held, make([]byte, 4096))
	}
	runtime.KeepAlive(held)
}
