package memtrim

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Config is the memory_trim section of tlsfront's configuration.
type Config struct {
	// Enabled returns free heap to the operating system after bursts.
	// Default on.
	Enabled bool `yaml:"enabled"`
}

// DefaultConfig is trimming on.
func DefaultConfig() Config { return Config{Enabled: true} }

// Defaults for Options' zero values.
const (
	DefaultEvery   = 2 * time.Second
	DefaultMinGap  = 10 * time.Second
	DefaultMinFree = 8 << 20
)

// Options tune a Trimmer. The zero value uses the defaults.
type Options struct {
	// Every is how often runtime/metrics are read (0: DefaultEvery).
	// Reading them does not stop the world and costs microseconds.
	Every time.Duration
	// MinGap is the least time between two trims (0: DefaultMinGap), so
	// that a workload that keeps freeing and regrowing its heap cannot
	// make the Trimmer force a collection every few seconds.
	MinGap time.Duration
	// MinFree is how many bytes must be free to trim (0:
	// DefaultMinFree). They must also be at least a quarter of the live
	// heap: below that, the scavenger's own margin is of the same size.
	MinFree uint64
	// Log, when set, gets one debug line per trim.
	Log *slog.Logger
}

// Trimmer returns free heap memory to the operating system after bursts.
// Run is its only goroutine; a Trimmer is not safe for concurrent Runs.
type Trimmer struct {
	every, minGap time.Duration
	minFree       uint64
	log           *slog.Logger

	// readStats and freeOSMemory are seams for tests.
	readStats    func() Stats
	freeOSMemory func()

	last      time.Time // of the last trim; zero before the first
	lastAlloc uint64    // cumulative heap allocations at the last check
	quiet     int       // checks in a row that saw few allocations
}

// New returns a Trimmer; it starts nothing.
func New(o Options) (*Trimmer, error) {
	if o.Every < 0 || o.MinGap < 0 {
		return nil, errors.New("memtrim: negative interval")
	}
	return &Trimmer{
		every:        cmp.Or(o.Every, DefaultEvery),
		minGap:       cmp.Or(o.MinGap, DefaultMinGap),
		minFree:      cmp.Or(o.MinFree, DefaultMinFree),
		log:          o.Log,
		readStats:    ReadStats,
		freeOSMemory: debug.FreeOSMemory,
	}, nil
}

// Run checks every Options.Every until ctx ends, trimming when check
// says so. It returns nil when ctx ends.
func (t *Trimmer) Run(ctx context.Context) error {
	tk := time.NewTicker(t.every)
	defer tk.Stop()
	t.lastAlloc = t.readStats().Allocated
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tk.C:
			t.check(now)
		}
	}
}

// check trims once if the heap holds at least minFree reclaimable bytes
// (and a quarter of the live heap), the process allocated less than an
// eighth of that since each of the last two checks, and the last trim was
// at least minGap ago. It reports whether it trimmed.
//
// Two quiet checks, not one: memory about to be reused is not worth giving
// back, and what a burst leaves behind is not all freed when the
// allocations stop. Connections give back their goroutines a moment later
// (proxy's ParkAfter, 1 s by default), and their stacks are only returned
// to the heap by a collection. A trim taken before that would leave them
// resident until the next one, MinGap later at the earliest.
func (t *Trimmer) check(now time.Time) bool {
	s := t.readStats()
	allocated := s.Allocated - t.lastAlloc
	t.lastAlloc = s.Allocated
	free := s.Reclaimable()
	if allocated > free/8 {
		t.quiet = 0
		return false
	}
	t.quiet++
	if t.quiet < 2 || free < t.minFree || free < s.Live/4 {
		return false
	}
	if !t.last.IsZero() && now.Sub(t.last) < t.minGap {
		return false
	}
	t.last = now
	t.freeOSMemory()
	// The next check must not count what ran before the trim as new.
	after := t.readStats()
	t.lastAlloc = after.Allocated
	if t.log != nil && t.log.Enabled(context.Background(), slog.LevelDebug) {
		t.log.Debug("memory trimmed", "reclaimable", free, "live", s.Live, "heap_resident_after", after.Resident())
	}
	return true
}

// Stats are the runtime/metrics a Trimmer decides on, in bytes.
type Stats struct {
	// Objects is the heap's objects, live and not yet collected.
	Objects uint64
	// Unused is the unused room inside spans in use (fragmentation; not
	// returnable).
	Unused uint64
	// Free is free spans still resident: what the scavenger could return.
	Free uint64
	// Live is the live heap as of the last collection.
	Live uint64
	// Allocated counts every heap allocation since the process started.
	Allocated uint64
}

// Resident is the heap's resident memory.
func (s Stats) Resident() uint64 { return s.Objects + s.Unused + s.Free }

// Reclaimable estimates what a collection and a full scavenge would give
// back: free spans plus objects beyond the last collection's live heap.
// Objects allocated since that collection count as garbage too, so it
// overestimates while the heap grows; the quiet rule in check keeps that
// from causing trims.
func (s Stats) Reclaimable() uint64 {
	r := s.Free
	if s.Objects > s.Live {
		r += s.Objects - s.Live
	}
	return r
}

var statNames = [...]string{
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
	"/gc/heap/live:bytes",
	"/gc/heap/allocs:bytes",
}

// ReadStats reads Stats from runtime/metrics.
func ReadStats() Stats {
	var samples [len(statNames)]metrics.Sample
	for i, n := range statNames {
		samples[i].Name = n
	}
	metrics.Read(samples[:])
	var v [len(statNames)]uint64
	for i, s := range samples {
		if s.Value.Kind() != metrics.KindUint64 {
			// A metric this Go release does not have reads as zero,
			// which only makes trims rarer.
			continue
		}
		v[i] = s.Value.Uint64()
	}
	return Stats{Objects: v[0], Unused: v[1], Free: v[2], Live: v[3], Allocated: v[4]}
}

// String is for test failures and logs.
func (s Stats) String() string {
	return fmt.Sprintf("objects %d, unused %d, free %d, live %d, allocated %d", s.Objects, s.Unused, s.Free, s.Live, s.Allocated)
}
