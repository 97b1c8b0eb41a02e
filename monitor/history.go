package monitor

import (
	"fmt"
	"html/template"
	"strings"
	"time"
)

// historyMinutes is how many one-minute buckets the history keeps.
const historyMinutes = 60

// history counts handshakes and failures per minute over the last hour,
// in a fixed ring. It is not safe for concurrent use; the Monitor locks.
type history struct {
	b [historyMinutes]minuteBucket
}

type minuteBucket struct {
	minute     int64 // unix minutes; 0 means unused
	handshakes uint64
	failures   uint64
}

func (h *history) add(now time.Time, failed bool) {
	mi := now.Unix() / 60
	b := &h.b[mi%historyMinutes]
	if b.minute != mi {
		*b = minuteBucket{minute: mi}
	}
	b.handshakes++
	if failed {
		b.failures++
	}
}

// MinutePoint is one minute of handshakes.
type MinutePoint struct {
	Start      time.Time `json:"start"`
	Handshakes uint64    `json:"handshakes"`
	Failures   uint64    `json:"failures"`
}

// points returns the last historyMinutes minutes, oldest first, with
// empty minutes as zeros.
func (h *history) points(now time.Time) []MinutePoint {
	cur := now.Unix() / 60
	out := make([]MinutePoint, historyMinutes)
	for i := range out {
		mi := cur - historyMinutes + 1 + int64(i)
		out[i].Start = time.Unix(mi*60, 0).UTC()
		if b := h.b[((mi%historyMinutes)+historyMinutes)%historyMinutes]; b.minute == mi {
			out[i].Handshakes, out[i].Failures = b.handshakes, b.failures
		}
	}
	return out
}

// sparkline draws handshakes (grey) and failures (red) per minute as a
// small inline SVG. It is built from numbers only, so it is safe HTML.
func sparkline(ps []MinutePoint) template.HTML {
	const w, h, bar = 360, 60, 6
	var peak uint64 = 1
	for _, p := range ps {
		peak = max(peak, p.Handshakes)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="handshakes and failures per minute, last hour">`, w, h+12, w, h+12)
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%d" height="%d" fill="#fafafa" stroke="#ddd"/>`, w, h)
	for i, p := range ps {
		if p.Handshakes == 0 {
			continue
		}
		x := i * bar
		hh := int(float64(p.Handshakes) / float64(peak) * float64(h))
		fh := int(float64(p.Failures) / float64(peak) * float64(h))
		if hh == 0 {
			hh = 1
		}
		if p.Failures > 0 && fh == 0 {
			fh = 1
		}
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="#9aa"><title>%s: %d handshakes, %d failed</title></rect>`,
			x, h-hh, bar-1, hh, p.Start.Format("15:04Z"), p.Handshakes, p.Failures)
		if fh > 0 {
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="#b3261e"/>`, x, h-fh, bar-1, fh)
		}
	}
	fmt.Fprintf(&b, `<text x="0" y="%d" font-size="10" fill="#666">-60 min</text><text x="%d" y="%d" font-size="10" fill="#666" text-anchor="end">now &#183; peak %d/min</text></svg>`, h+11, w, h+11, peak)
	return template.HTML(b.String()) //nolint:gosec // numbers and fixed text only
}
