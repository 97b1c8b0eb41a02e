package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// report is the outcome of one run, printed as a table and written as
// Markdown.
type report struct {
	command  string
	date     time.Time
	took     time.Duration
	set      *settings
	machine  string
	versions map[string]string
	results  []*result
	notes    []string
}

// stat is one metric per target over the rounds: the best value (the
// mean for rows without a better direction) and the median.
type stat struct{ best, med map[string]float64 }

// row is one line of the table: a value per target, then tlsfront's ratio
// to nginx and HAProxy, and the target if there is one.
type row struct {
	metric string
	better string // "higher" or "lower"
	vals   stat
	format string
	goal   func(vals map[string]float64) string
}

var columns = []string{"direct", "tlsfront", "nginx", "haproxy"}

// direct returns the direct result of round, or nil.
func (rep *report) direct(round int) *result {
	for _, r := range rep.results {
		if r.name == "direct" && r.round == round {
			return r
		}
	}
	return nil
}

// pick combines one metric over rounds: the best value when there is a
// better direction (other work on the machine only ever makes a number
// worse), the mean otherwise.
func pick(better string, vs []float64) float64 {
	out := vs[0]
	for _, v := range vs[1:] {
		switch better {
		case "higher":
			out = max(out, v)
		case "lower":
			out = min(out, v)
		default:
			out += v
		}
	}
	if better == "" {
		out /= float64(len(vs))
	}
	return out
}

func (rep *report) rows() []row {
	// per evaluates f on every round of every target; d is the direct
	// result of the same round (nil if direct was not run).
	per := func(better string, f func(r, d *result) (float64, bool)) stat {
		all := map[string][]float64{}
		for _, r := range rep.results {
			if v, ok := f(r, rep.direct(r.round)); ok {
				all[r.name] = append(all[r.name], v)
			}
		}
		st := stat{best: map[string]float64{}, med: map[string]float64{}}
		for name, vs := range all {
			st.best[name] = pick(better, vs)
			st.med[name] = medianOf(vs)
		}
		return st
	}
	proxied := func(r *result) bool { return r.tls }
	haveDirect := rep.direct(0) != nil

	var rows []row
	rows = append(rows,
		row{metric: "new connections/s (TLS 1.3 full handshake + 1 echo; direct: plain TCP)", better: "higher", format: "%.0f",
			vals: per("higher", func(r, _ *result) (float64, bool) {
				return float64(r.hs.conns) / r.hs.elapsed.Seconds(), r.hs.conns > 0
			})},
		row{metric: "proxy CPU per new connection (µs)", better: "lower", format: "%.0f",
			vals: per("lower", func(r, _ *result) (float64, bool) {
				return float64(r.hsCPU.Microseconds()) / float64(r.hs.conns), proxied(r) && r.hs.conns > 0
			}),
			goal: func(v map[string]float64) string { return goalLE("≤ 1.1× nginx", v["tlsfront"], 1.1*v["nginx"]) }},
		row{metric: "  proxy CPU busy during that test (%)", format: "%.0f",
			vals: per("", func(r, _ *result) (float64, bool) { return pct(r.hsCPU, r.hs.elapsed), proxied(r) && r.hs.conns > 0 })},
		row{metric: "throughput, 1 connection (MB/s each way)", better: "higher", format: "%.0f",
			vals: per("higher", func(r, _ *result) (float64, bool) { return mbps(r.bulk1), r.bulk1.bytes > 0 }),
			goal: func(v map[string]float64) string {
				return goalGE("≥ best peer", v["tlsfront"], max(v["nginx"], v["haproxy"]))
			}},
		row{metric: "  proxy CPU busy (%)", format: "%.0f",
			vals: per("", func(r, _ *result) (float64, bool) {
				return pct(r.bulk1CPU, r.bulk1.elapsed), proxied(r) && r.bulk1.bytes > 0
			})},
		row{metric: "throughput, 8 connections (MB/s each way, total)", better: "higher", format: "%.0f",
			vals: per("higher", func(r, _ *result) (float64, bool) { return mbps(r.bulk8), r.bulk8.bytes > 0 })},
		row{metric: "  proxy CPU busy (%)", format: "%.0f",
			vals: per("", func(r, _ *result) (float64, bool) {
				return pct(r.bulk8CPU, r.bulk8.elapsed), proxied(r) && r.bulk8.bytes > 0
			})},
	)
	cpuPerMB := func(cpu time.Duration, b *bulkResult) float64 {
		return float64(cpu.Microseconds()) / (float64(b.bytes) / 1e6)
	}
	rows = append(rows,
		row{metric: "proxy CPU per MB carried each way, 1 connection (µs)", better: "lower", format: "%.0f",
			vals: per("lower", func(r, _ *result) (float64, bool) {
				return cpuPerMB(r.bulk1CPU, r.bulk1), proxied(r) && r.bulk1.bytes > 0
			}),
			goal: func(v map[string]float64) string {
				return goalLE("≤ best peer", v["tlsfront"], bestLow(v["nginx"], v["haproxy"]))
			}},
		row{metric: "proxy CPU per MB carried each way, 8 connections (µs)", better: "lower", format: "%.0f",
			vals: per("lower", func(r, _ *result) (float64, bool) {
				return cpuPerMB(r.bulk8CPU, r.bulk8), proxied(r) && r.bulk8.bytes > 0
			})},
	)
	if haveDirect {
		rows = append(rows,
			row{metric: "throughput, 1 connection, share of direct TCP", better: "higher", format: "%.2f",
				vals: per("higher", func(r, d *result) (float64, bool) {
					return mbps(r.bulk1) / mbps(d.bulk1), proxied(r) && d != nil && mbps(d.bulk1) > 0
				})},
			row{metric: "throughput, 8 connections, share of direct TCP", better: "higher", format: "%.2f",
				vals: per("higher", func(r, d *result) (float64, bool) {
					return mbps(r.bulk8) / mbps(d.bulk8), proxied(r) && d != nil && mbps(d.bulk8) > 0
				})},
		)
	}
	rttRow := func(p float64, minus bool) stat {
		return per("lower", func(r, d *result) (float64, bool) {
			if len(r.rtt.samples) == 0 {
				return 0, false
			}
			v := float64(r.rtt.pct(p).Nanoseconds()) / 1e3
			if minus {
				if d == nil || !proxied(r) || len(d.rtt.samples) == 0 {
					return 0, false
				}
				v -= float64(d.rtt.pct(p).Nanoseconds()) / 1e3
			}
			return v, true
		})
	}
	rows = append(rows,
		row{metric: "round trip 1 KiB, p50 (µs)", better: "lower", format: "%.0f", vals: rttRow(50, false)},
		row{metric: "round trip 1 KiB, p99 (µs)", better: "lower", format: "%.0f", vals: rttRow(99, false)},
		// The proxy's own work per round trip: what a latency gap is made
		// of when it is not waiting.
		row{metric: "  proxy CPU per round trip (µs)", better: "lower", format: "%.1f",
			vals: per("lower", func(r, _ *result) (float64, bool) {
				return float64(r.rttCPU.Nanoseconds()) / 1e3 / rttCount(r), proxied(r) && len(r.rtt.samples) > 0
			})},
		row{metric: "  proxy threads switched out per round trip", better: "lower", format: "%.1f",
			vals: per("lower", func(r, _ *result) (float64, bool) {
				return float64(r.rttSwitches) / rttCount(r), proxied(r) && len(r.rtt.samples) > 0
			})},
	)
	if haveDirect {
		rows = append(rows,
			row{metric: "added latency vs direct, p50 (µs)", better: "lower", format: "%.0f", vals: rttRow(50, true)},
			row{metric: "added latency vs direct, p99 (µs)", better: "lower", format: "%.0f", vals: rttRow(99, true),
				goal: func(v map[string]float64) string { return goalLE("≤ HAProxy", v["tlsfront"], v["haproxy"]) }},
		)
	}
	wakeRow := func(f func(w *wakeResult) (time.Duration, bool)) stat {
		return per("lower", func(r, _ *result) (float64, bool) {
			v, ok := f(r.wake)
			return float64(v.Nanoseconds()) / 1e3, ok
		})
	}
	rows = append(rows,
		row{metric: fmt.Sprintf("round trip 1 KiB after %s quiet (tlsfront: parked), p50 (µs)", wakeQuiet), better: "lower", format: "%.0f",
			vals: wakeRow(func(w *wakeResult) (time.Duration, bool) { return median(w.cold), len(w.cold) > 0 })},
		row{metric: "  same connection right after, p50 (µs)", better: "lower", format: "%.0f",
			vals: wakeRow(func(w *wakeResult) (time.Duration, bool) { return median(w.warm), len(w.warm) > 0 })},
		row{metric: "  wake-up cost: median of (quiet − right after) per connection (µs)", better: "lower", format: "%.0f",
			vals: wakeRow((*wakeResult).extra),
			goal: func(v map[string]float64) string {
				// The bound is on what parking adds: compare with
				// the same figure for nginx, which does not park.
				return goalLE("≤ nginx + 100 µs", v["tlsfront"], v["nginx"]+100)
			}},
	)
	rows = append(rows, row{metric: "other processes' CPU during these tests (% of all cores)", format: "%.1f",
		vals: per("", func(r, _ *result) (float64, bool) { return r.foreign, r.foreign >= 0 })})
	rows = append(rows, row{metric: "CPU steal by the hypervisor during these tests (% of all cores)", format: "%.1f",
		vals: per("", func(r, _ *result) (float64, bool) { return r.steal, r.steal >= 0 })})
	rows = append(rows, row{metric: "RSS, fresh process after 1 connection (MB)", better: "lower", format: "%.1f",
		vals: per("lower", func(r, _ *result) (float64, bool) { return float64(r.rssBase) / 1024, proxied(r) && r.rssBase > 0 })})
	// Each step is read twice: right after the last connection opened,
	// and again after -idle-settle (what a process that had a burst
	// keeps). The target is on the settled slope.
	series := []struct {
		when  string
		rss   func(r *result) []int64
		check bool
	}{
		{"right after opening", func(r *result) []int64 { return r.idleRSS }, false},
		{fmt.Sprintf("%s later", rep.set.idleSettle), func(r *result) []int64 { return r.idleSettled }, true},
	}
	for _, sr := range series {
		if sr.check && rep.set.idleSettle <= 0 {
			continue
		}
		for i, n := range rep.set.idleSteps {
			rows = append(rows, row{metric: fmt.Sprintf("RSS with %d idle TLS connections, %s (MB)", n, sr.when), better: "lower", format: "%.1f",
				vals: per("lower", func(r, _ *result) (float64, bool) {
					rss := sr.rss(r)
					if !proxied(r) || i >= len(rss) {
						return 0, false
					}
					return float64(rss[i]) / 1024, true
				})})
		}
		k := len(rep.set.idleSteps)
		if k < 2 {
			continue
		}
		lo, hi := rep.set.idleSteps[k-2], rep.set.idleSteps[k-1]
		rw := row{metric: fmt.Sprintf("memory per idle connection, slope %d→%d, %s (KB)", lo, hi, sr.when), better: "lower", format: "%.1f",
			vals: per("lower", func(r, _ *result) (float64, bool) {
				rss := sr.rss(r)
				if !proxied(r) || len(rss) < k {
					return 0, false
				}
				dn := r.idle[k-1] - r.idle[k-2]
				if dn <= 0 {
					return 0, false
				}
				return float64(rss[k-1]-rss[k-2]) / float64(dn), true
			})}
		if sr.check || rep.set.idleSettle <= 0 {
			rw.goal = func(v map[string]float64) string { return goalLE("≤ 8 KB", v["tlsfront"], 8) }
		}
		rows = append(rows, rw)
	}
	return rows
}

func medianOf(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// rttCount is how many round trips the latency test made, warm-up
// included.
func rttCount(r *result) float64 { return float64(len(r.rtt.samples) + rttWarmup) }

func pct(cpu, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return 100 * cpu.Seconds() / wall.Seconds()
}

func goalLE(what string, got, limit float64) string {
	if got == 0 || limit == 0 {
		return what
	}
	if got <= limit {
		return what + ": met"
	}
	return what + ": MISSED"
}

// bestLow is the lower of two peers' values that were measured (0: not).
func bestLow(a, b float64) float64 {
	if a == 0 || b == 0 {
		return max(a, b)
	}
	return min(a, b)
}

func goalGE(what string, got, limit float64) string {
	if got == 0 || limit == 0 {
		return what
	}
	if got >= limit {
		return what + ": met"
	}
	return what + ": MISSED"
}

// cells renders one row's cells: a value per target, two ratios, the
// better direction and the goal.
func (rw row) cells(present map[string]bool, rounds int) []string {
	out := []string{rw.metric}
	for _, c := range columns {
		if !present[c] {
			continue
		}
		if v, ok := rw.vals.best[c]; ok {
			cell := fmt.Sprintf(rw.format, v)
			if m, ok := rw.vals.med[c]; ok && rounds > 1 && rw.better != "" {
				cell += " (" + fmt.Sprintf(rw.format, m) + ")"
			}
			out = append(out, cell)
		} else {
			out = append(out, "–")
		}
	}
	ratio := func(other string) string {
		a, okA := rw.vals.best["tlsfront"]
		b, okB := rw.vals.best[other]
		if !okA || !okB || b == 0 || rw.better == "" {
			return "–"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	out = append(out, ratio("nginx"), ratio("haproxy"), rw.better)
	goal := ""
	if rw.goal != nil {
		goal = rw.goal(rw.vals.best)
	}
	return append(out, goal)
}

func (rep *report) header() ([]string, map[string]bool) {
	present := map[string]bool{}
	for _, r := range rep.results {
		present[r.name] = true
	}
	h := []string{"metric"}
	for _, c := range columns {
		if present[c] {
			h = append(h, c)
		}
	}
	return append(h, "tlsfront/nginx", "tlsfront/haproxy", "better", "target (issue)"), present
}

// table is the plain-text table printed to stdout.
func (rep *report) table() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	h, present := rep.header()
	fmt.Fprintln(tw, strings.Join(h, "\t"))
	for _, rw := range rep.rows() {
		fmt.Fprintln(tw, strings.Join(rw.cells(present, rep.set.rounds), "\t"))
	}
	tw.Flush()
	for _, s := range rep.problems() {
		fmt.Fprintln(&b, "! "+s)
	}
	return b.String()
}

// problems lists errors seen during the run; a clean run has none.
func (rep *report) problems() []string {
	var out []string
	for _, r := range rep.results {
		add := func(what, s string) {
			if s != "" {
				out = append(out, fmt.Sprintf("%s %s: %s", r.name, what, s))
			}
		}
		add("connection test", r.hs.errs.String())
		add("bulk x1", r.bulk1.errs.String())
		add("bulk x8", r.bulk8.errs.String())
		add("rtt", r.rtt.errs.String())
		add("wake", r.wake.errs.String())
		add("idle", r.idleErrs)
		for i, n := range r.idle {
			if n < rep.set.idleSteps[i] {
				out = append(out, fmt.Sprintf("%s idle: only %d of %d connections opened", r.name, n, rep.set.idleSteps[i]))
			}
		}
	}
	return out
}

func (rep *report) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("# tlsfront benchmark results")
	p("")
	p("Generated by the benchmark itself; rerun with `make bench` to refresh. Hand-written analysis is in [ANALYSIS.md](ANALYSIS.md).")
	p("")
	p("- Command: `%s`", rep.command)
	if rep.set.label != "" {
		p("- Build: %s", rep.set.label)
	}
	p("- Date: %s (took %s)", rep.date.Format("2006-01-02 15:04 MST"), rep.took.Round(time.Second))
	p("- Machine: %s, %s", rep.machine, rep.versions["kernel"])
	p("- Versions: %s; %s; %s; %s", rep.versions["go"], rep.versions["nginx"], rep.versions["haproxy"], rep.versions["openssl"])
	p("")
	h, present := rep.header()
	p("| %s |", strings.Join(h, " | "))
	p("|%s", strings.Repeat("---|", len(h)))
	for _, rw := range rep.rows() {
		p("| %s |", strings.Join(rw.cells(present, rep.set.rounds), " | "))
	}
	p("")
	if probs := rep.problems(); len(probs) > 0 {
		p("Problems during this run:")
		p("")
		for _, s := range probs {
			p("- %s", s)
		}
		p("")
	}
	p("## How it was measured")
	p("")
	var neg []string
	for _, r := range rep.results {
		if r.tls && r.hs.suite != "" && r.round == 0 {
			neg = append(neg, fmt.Sprintf("%s %s/%s", r.name, r.hs.suite, r.hs.curve))
		}
	}
	for _, s := range []string{
		fmt.Sprintf("%d round(s): every target is measured once per round, rounds one after the other (direct, tlsfront, nginx, HAProxy, then again). Each cell is the best of the rounds (highest throughput and rate, lowest CPU, latency and memory), with the median of the rounds in brackets: other work on this shared machine can only make a number worse. Rows without a direction are the mean. Only ratios between targets of one run mean anything: the machine's load changes between runs.", rep.set.rounds),
		fmt.Sprintf("Proxy under test pinned to CPU %d (`taskset -c %d`); the load generator (this program, GOMAXPROCS=1) and the echo backend (a separate process, `bench/echo`) pinned to CPU %d. A fresh echo backend per target. All of them at niceness %d (`-nice`), so that other work on the shared machine disturbs them less; the row \"other processes' CPU\" says how much remained.", proxyCPU, proxyCPU, loadCPU, rep.set.nice),
		"Same ECDSA P-256 chain everywhere: root → intermediate → leaf (`internal/pki`); proxies serve leaf + intermediate. Client: TLS 1.3 only, groups X25519 and P-256 only (no post-quantum hybrid, which OpenSSL 3.0 cannot pick), no session resumption (every connection a full handshake), chain verified against the root for `localhost` (verified once per distinct chain, then byte-compared; the CertificateVerify signature is checked on every handshake). Negotiated: " + strings.Join(neg, ", ") + ". nginx and HAProxy were given the TLS 1.3 suite order AES-128-GCM first, matching what Go negotiates, so bulk numbers compare the same cipher.",
		"nginx: 1 worker (`worker_processes 1`), stream module, `proxy_timeout 1h`; HAProxy: `nbthread 1`, `mode tcp`, timeouts 1h, `maxconn 9500`; tlsfront: tcp listener with default settings, `--log-level warn`. Each proxy's own defaults otherwise (e.g. session tickets).",
		fmt.Sprintf("New connections: %d workers, each connecting, handshaking, echoing 64 bytes and closing, for %s after a 1 s warm-up. Proxy CPU = utime+stime from /proc/PID/stat summed over the proxy's process group (nginx: master + worker), delta over the test, divided by connections completed. The load generator shares its core with the echo backend, so when the proxy is not near 100%% busy the connection rate is bounded by the client, not the proxy; CPU per connection is the comparable number.", rep.set.hsWorkers, rep.set.hsDuration),
		fmt.Sprintf("Throughput: 32 KiB writes with the echo read back concurrently, on 1 and on 8 connections, until %d MiB written in total or %s. MB/s = 10^6 bytes echoed per second (each byte crosses the proxy twice: in and back). When the proxy is not near 100%% busy, other work on the machine limits the rate; the proxy's CPU per MB carried is then the comparable number.", rep.set.bulkBytes>>20, rep.set.bulkDuration),
		fmt.Sprintf("Latency: one connection, 1 KiB written then read back, %d warm-up + %d measured round trips; added latency = proxy percentile − direct percentile from the same round. Proxy CPU and thread switches per round trip are counted over the whole test, warm-up included, from /proc (switches: voluntary + involuntary, summed over the threads).", rttWarmup, rep.set.rttCount),
		fmt.Sprintf("Wake-up: %d connections (handshake + one echo each), all left quiet for %s (tlsfront parks a direction after 1 s without data), then on each in turn one 1 KiB round trip (the first after the quiet spell) and at once a second. The wake-up cost is the median over connections of the difference; nginx and HAProxy, which do not park, show what a quiet spell costs anyway (cold caches).", rep.set.wakeConns, wakeQuiet),
		"CPU steal: from /proc/stat, the share of both cores the hypervisor gave to other guests during each target's load tests.",
		"Idle memory: a fresh proxy process; VmRSS summed over its process group (nginx: master + worker; the master is constant so the slope is the worker's) after one connection, then after opening idle TLS connections (handshake + one echo round trip, then quiet), read once it is stable (two reads 250 ms apart within 0.5%, at most 5 s). The slope between the last two counts is the cost per connection. Kernel socket buffers are not in RSS. At most 9,000: the open-files limit is 20,000 and each proxied connection costs the proxy 2 descriptors.",
		"Direct: plain TCP to the echo backend, the ceiling for throughput and the floor for latency.",
	} {
		p("- %s", s)
	}
	for _, n := range rep.notes {
		p("- %s", n)
	}
	return b.String()
}

func writeFile(path string, data []byte) error {
	return os.WriteFile(path, data, 0o644)
}
