package monitor

import "time"

// The failure window: handshake outcomes and refusals over the last
// windowSpan, in buckets of bucketWidth, so that ratios and spikes are
// judged on recent traffic only.
const (
	bucketWidth  = 10 * time.Second
	bucketCount  = 30
	windowSpan   = bucketWidth * bucketCount
	bucketTopFPs = 16 // fingerprints kept per reason per bucket
	maxReasons   = 32 // distinct reasons tracked; more become "other"
	maxLimits    = 32 // distinct limit names tracked; more become "other"
)

type bucket struct {
	epoch      int64 // unix time / bucketWidth; 0 means unused
	handshakes uint64
	failures   map[string]*reasonCount
	refusals   map[string]uint64
}

type reasonCount struct {
	count uint64
	fps   *topK
}

// window is a ring of buckets. It is not safe for concurrent use; the
// Monitor locks.
type window struct {
	b [bucketCount]bucket
}

func epochOf(t time.Time) int64 { return t.UnixNano() / int64(bucketWidth) }

// at returns the bucket for t, clearing it first if it last held an older
// slot of the ring.
func (w *window) at(t time.Time) *bucket {
	e := epochOf(t)
	b := &w.b[e%bucketCount]
	if b.epoch != e {
		b.epoch = e
		b.handshakes = 0
		if b.failures == nil {
			b.failures = map[string]*reasonCount{}
			b.refusals = map[string]uint64{}
		}
		// Keep the reasonCount values (and their heaps) for reuse: a
		// storm refills the same reasons every bucket.
		for _, rc := range b.failures {
			rc.count = 0
			rc.fps.reset()
		}
		clear(b.refusals)
	}
	return b
}

func (b *bucket) fail(reason, ja4 string) {
	rc, ok := b.failures[reason]
	if !ok {
		if len(b.failures) >= maxReasons {
			reason = "other"
			rc = b.failures[reason]
		}
		if rc == nil {
			rc = &reasonCount{fps: newTopK(bucketTopFPs)}
			b.failures[reason] = rc
		}
	}
	rc.count++
	rc.fps.add(ja4, 1)
}

func (b *bucket) refuse(limit string) {
	if _, ok := b.refusals[limit]; !ok && len(b.refusals) >= maxLimits {
		limit = "other"
	}
	b.refusals[limit]++
}

// WindowSummary is what happened over the recent window.
type WindowSummary struct {
	// Seconds is the span covered.
	Seconds    int             `json:"window_seconds"`
	Handshakes uint64          `json:"handshakes"`
	Failures   []ReasonSummary `json:"failures"`
	Refusals   []LimitSummary  `json:"refusals"`
}

// ReasonSummary is the failures of one reason over the window.
type ReasonSummary struct {
	Reason string  `json:"reason"`
	Count  uint64  `json:"count"`
	Ratio  float64 `json:"ratio"` // of all handshakes in the window
	// TopFingerprints are the JA4 fingerprints failing most for this
	// reason (estimates).
	TopFingerprints []topEntry `json:"top_fingerprints"`
}

// LimitSummary is the refusals by one limit over the window.
type LimitSummary struct {
	Limit string `json:"limit"`
	Count uint64 `json:"count"`
}

func (w *window) summary(now time.Time, topN int) WindowSummary {
	cur := epochOf(now)
	s := WindowSummary{Seconds: int(windowSpan / time.Second)}
	fails := map[string]*ReasonSummary{}
	fps := map[string]map[string]uint64{}
	refusals := map[string]uint64{}
	for i := range w.b {
		b := &w.b[i]
		if b.epoch == 0 || b.epoch <= cur-bucketCount || b.epoch > cur {
			continue
		}
		s.Handshakes += b.handshakes
		for r, rc := range b.failures {
			if rc.count == 0 {
				continue
			}
			rs := fails[r]
			if rs == nil {
				rs = &ReasonSummary{Reason: r}
				fails[r] = rs
				fps[r] = map[string]uint64{}
			}
			rs.Count += rc.count
			for _, e := range rc.fps.h {
				fps[r][e.Key] += e.Count
			}
		}
		for l, n := range b.refusals {
			refusals[l] += n
		}
	}
	for r, rs := range fails {
		if s.Handshakes > 0 {
			rs.Ratio = float64(rs.Count) / float64(s.Handshakes)
		}
		for k, n := range fps[r] {
			rs.TopFingerprints = append(rs.TopFingerprints, topEntry{Key: k, Count: n})
		}
		sortEntries(rs.TopFingerprints)
		if len(rs.TopFingerprints) > topN {
			rs.TopFingerprints = rs.TopFingerprints[:topN]
		}
		s.Failures = append(s.Failures, *rs)
	}
	sortReasons(s.Failures)
	for l, n := range refusals {
		s.Refusals = append(s.Refusals, LimitSummary{Limit: l, Count: n})
	}
	sortLimits(s.Refusals)
	return s
}
