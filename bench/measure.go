package main

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"time"
)

// Phases, for source addresses.
const (
	phaseWarmup = iota
	phaseHandshake
	phaseBulk1
	phaseBulk8
	phaseRTT
	phaseIdle
	phaseWake
)

// rttWarmup is how many round trips the latency test makes before it
// measures.
const rttWarmup = 200

// wakeQuiet is how long the wake-up test leaves its connections quiet:
// well past tlsfront's default ParkAfter (1 s), so they are parked.
const wakeQuiet = 2 * time.Second

// result is everything measured for one target.
type result struct {
	name  string
	tls   bool
	round int

	hs    *handshakeResult
	hsCPU time.Duration // proxy CPU during the connection-rate test

	bulk1, bulk8       *bulkResult
	bulk1CPU, bulk8CPU time.Duration

	rtt    *rttResult
	rttCPU time.Duration // proxy CPU during the latency test
	// rttSwitches is how often the proxy's threads were switched out
	// during the latency test.
	rttSwitches int64

	wake *wakeResult

	// foreign is the share of the machine's CPU (%) that other processes
	// used during the load tests.
	foreign float64
	// steal is the share of the machine's CPU (%) the hypervisor stole
	// during the load tests.
	steal float64

	// RSS in KB: fresh process, then with idle[i] connections open.
	rssBase int64
	idle    []int // connections actually open at each step
	idleRSS []int64
	// idleSettled is RSS again, -idle-settle after each step.
	idleSettled []int64
	idleProcs   int // processes summed
	idleErrs    string
}

// measure runs every test against t. The proxy runs twice: once for the
// load tests and once, fresh, for the idle-memory test, so its baseline is
// not the heap left over from the load.
func (h *harness) measure(ctx context.Context, t *target, idx, round int) (*result, error) {
	// Skipped tests leave empty results, which the report shows as "–".
	r := &result{name: t.name, tls: t.tls, round: round, hs: &handshakeResult{}, bulk1: &bulkResult{}, bulk8: &bulkResult{}, rtt: &rttResult{}, wake: &wakeResult{}, foreign: -1, steal: -1}
	if h.set.runs("conn") || h.set.runs("bulk") || h.set.runs("rtt") || h.set.runs("wake") {
		if err := h.loadTests(ctx, t, idx, r); err != nil {
			return nil, err
		}
	}
	if t.tls && h.set.runs("idle") {
		if err := h.idleTest(ctx, t, idx, r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// running is a started target: the proxy (nil for direct), its echo
// backend and a client for it.
type running struct {
	cl    *client
	proxy *proc
	echo  *proc
}

// cpu is the CPU time used so far by the proxy and the echo backend.
func (rn *running) cpu(h *harness) time.Duration {
	return h.cpuOf(rn.proxy) + h.cpuOf(rn.echo)
}

func (h *harness) startTarget(ctx context.Context, t *target) (*running, func(), error) {
	echoAddr, echo, err := h.startEcho(ctx)
	if err != nil {
		return nil, nil, err
	}
	addr, pr, err := t.launch(ctx, h, echoAddr)
	if err != nil {
		h.procs.stop(echo)
		return nil, nil, err
	}
	stop := func() {
		if pr != nil {
			h.procs.stop(pr)
		}
		h.procs.stop(echo)
	}
	rn := &running{cl: &client{addr: addr}, proxy: pr, echo: echo}
	if t.tls {
		rn.cl.tls = h.clientTLS
	}
	return rn, stop, nil
}

func (h *harness) loadTests(ctx context.Context, t *target, idx int, r *result) error {
	rn, stop, err := h.startTarget(ctx, t)
	if err != nil {
		return err
	}
	defer stop()
	cl, s := rn.cl, h.set
	m0, ours0 := readMachineCPU(), rn.cpu(h)
	defer func() {
		m1 := readMachineCPU()
		r.foreign = foreignShare(m0, m1, rn.cpu(h)-ours0)
		r.steal = stealShare(m0, m1)
	}()

	// Warm up: code paths, pools, the first GC cycles.
	if w := cl.handshakes(ctx, srcAddr(phaseWarmup, idx), s.hsWorkers, time.Second, 1e6); w.conns == 0 {
		return fmt.Errorf("warm-up: no connection completed: %s", w.errs.String())
	}

	if s.runs("conn") {
		if err := h.connTest(ctx, rn, t, idx, r); err != nil {
			return err
		}
	}
	if s.runs("bulk") {
		if err := h.bulkTests(ctx, rn, t, idx, r); err != nil {
			return err
		}
	}
	if s.runs("rtt") {
		var perfDone func() error
		if s.perfOut != "" && s.perfTest == "rtt" && t.name == "tlsfront" && rn.proxy != nil {
			var err error
			// Two seconds: the shortest latency test (1,000 round
			// trips in -quick) lasts at least that long.
			if perfDone, err = h.startPerf(ctx, rn.proxy, 2*time.Second); err != nil {
				return err
			}
		}
		g0 := h.group(rn.proxy)
		r.rtt = cl.rtt(ctx, srcAddr(phaseRTT, idx), 1024, rttWarmup, s.rttCount, 30*time.Second)
		g1 := h.group(rn.proxy)
		r.rttCPU, r.rttSwitches = g1.cpu-g0.cpu, g1.switches-g0.switches
		if perfDone != nil {
			if err := perfDone(); err != nil {
				h.logf("  perf: %v", err)
			}
		}
		h.logf("  rtt 1 KiB: p50 %s p99 %s (%d samples) %s", r.rtt.pct(50), r.rtt.pct(99), len(r.rtt.samples), r.rtt.errs.String())
	}
	if s.runs("wake") {
		r.wake = cl.wake(ctx, srcAddr(phaseWake, idx), s.wakeConns, wakeQuiet, 60*time.Second)
		extra, _ := r.wake.extra()
		h.logf("  wake after %s quiet: cold p50 %s, warm p50 %s, extra (median of per-connection differences) %s over %d conns %s",
			wakeQuiet, median(r.wake.cold), median(r.wake.warm), extra, len(r.wake.cold), r.wake.errs.String())
	}
	return ctx.Err()
}

func (h *harness) connTest(ctx context.Context, rn *running, t *target, idx int, r *result) error {
	cl, pr, s := rn.cl, rn.proxy, h.set
	var err error
	var perfDone func() error
	if s.perfOut != "" && s.perfTest == "conn" && t.name == "tlsfront" && pr != nil {
		if perfDone, err = h.startPerf(ctx, pr, s.hsDuration); err != nil {
			return err
		}
	}
	h.logf("  connection rate: %d workers for %s", s.hsWorkers, s.hsDuration)
	cpu0 := h.cpuOf(pr)
	r.hs = cl.handshakes(ctx, srcAddr(phaseHandshake, idx), s.hsWorkers, s.hsDuration, 1e6)
	h.settle(pr)
	r.hsCPU = h.cpuOf(pr) - cpu0
	if perfDone != nil {
		if err := perfDone(); err != nil {
			h.logf("  perf: %v", err)
		}
	}
	h.logf("    %d conns in %s (%.0f/s), proxy CPU %s %s", r.hs.conns, r.hs.elapsed.Round(time.Millisecond),
		float64(r.hs.conns)/r.hs.elapsed.Seconds(), r.hsCPU, r.hs.errs.String())
	return nil
}

func (h *harness) bulkTests(ctx context.Context, rn *running, t *target, idx int, r *result) error {
	cl, pr, s := rn.cl, rn.proxy, h.set

	for _, b := range []struct {
		conns int
		phase int
		res   **bulkResult
		cpu   *time.Duration
	}{{1, phaseBulk1, &r.bulk1, &r.bulk1CPU}, {8, phaseBulk8, &r.bulk8, &r.bulk8CPU}} {
		var perfDone func() error
		if s.perfOut != "" && s.perfTest == "bulk" && b.conns == 1 && t.name == "tlsfront" && pr != nil {
			var err error
			if perfDone, err = h.startPerf(ctx, pr, s.bulkDuration); err != nil {
				return err
			}
		}
		cpu0 := h.cpuOf(pr)
		*b.res = cl.bulk(ctx, srcAddr(b.phase, idx), b.conns, s.bulkDuration, s.bulkBytes)
		h.settle(pr)
		*b.cpu = h.cpuOf(pr) - cpu0
		if perfDone != nil {
			if err := perfDone(); err != nil {
				h.logf("  perf: %v", err)
			}
		}
		br := *b.res
		h.logf("  bulk x%d: %.0f MB/s (%d MiB in %s) %s", b.conns, mbps(br), br.bytes>>20, br.elapsed.Round(time.Millisecond), br.errs.String())
	}
	return nil
}

func (h *harness) idleTest(ctx context.Context, t *target, idx int, r *result) error {
	rn, stop, err := h.startTarget(ctx, t)
	if err != nil {
		return err
	}
	defer stop()
	cl, pr := rn.cl, rn.proxy
	var set idleSet
	defer set.closeAll()
	// One connection first, so the baseline includes what the first
	// connection initialises (TLS config, pools).
	set.open(ctx, cl, srcAddr(phaseIdle, idx), 1, 1, 10*time.Second)
	set.closeAll()
	r.rssBase = h.stableRSS(pr)
	for _, n := range h.set.idleSteps {
		set.open(ctx, cl, srcAddr(phaseIdle, idx), n, 8, 90*time.Second)
		rss := h.stableRSS(pr)
		r.idle = append(r.idle, len(set.conns))
		r.idleRSS = append(r.idleRSS, rss)
		h.logf("  idle %d conns: RSS %d KB", len(set.conns), rss)
		if d := h.set.idleSettle; d > 0 {
			// A process keeps what a burst left only if nothing gives
			// it back: read again once the connections have been quiet
			// a while.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d):
			}
			settled := h.stableRSS(pr)
			r.idleSettled = append(r.idleSettled, settled)
			h.logf("  idle %d conns, %s later: RSS %d KB", len(set.conns), d, settled)
		}
	}
	gs, _ := readGroup(pr.pid)
	r.idleProcs = gs.procs
	r.idleErrs = set.errs.String()
	return ctx.Err()
}

func (h *harness) cpuOf(pr *proc) time.Duration {
	return h.group(pr).cpu
}

// group reads pr's process group; zero for no process.
func (h *harness) group(pr *proc) groupStats {
	if pr == nil {
		return groupStats{}
	}
	gs, _ := readGroup(pr.pid)
	return gs
}

// settle waits until the proxy stops using CPU (connections still being
// torn down when the load generator finished), at most 2 s.
func (h *harness) settle(pr *proc) {
	if pr == nil {
		return
	}
	last := h.cpuOf(pr)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		now := h.cpuOf(pr)
		if now == last {
			return
		}
		last = now
	}
}

// stableRSS reads the proxy's RSS until two reads 250 ms apart differ by
// less than 0.5%, at most 5 s.
func (h *harness) stableRSS(pr *proc) int64 {
	read := func() int64 { gs, _ := readGroup(pr.pid); return gs.rssKB }
	last := read()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(250 * time.Millisecond)
		now := read()
		d := now - last
		if d < 0 {
			d = -d
		}
		if d*200 < now {
			return now
		}
		last = now
	}
	return last
}

// startPerf records pr's CPU samples with call graphs for d and returns a
// function that waits and writes the text report to h.set.perfOut.
func (h *harness) startPerf(ctx context.Context, pr *proc, d time.Duration) (func() error, error) {
	data := h.tmp + "/perf.data"
	rec := exec.CommandContext(ctx, "perf", "record", "-F", "1999", "-g", "-o", data, "-p", strconv.Itoa(pr.pid), "--", "sleep", strconv.Itoa(int(d.Seconds())))
	if err := rec.Start(); err != nil {
		return nil, fmt.Errorf("start perf: %w", err)
	}
	return func() error {
		if err := rec.Wait(); err != nil {
			return fmt.Errorf("perf record: %w", err)
		}
		out, err := exec.CommandContext(ctx, "perf", "report", "-i", data, "--stdio", "--no-children", "--percent-limit", "0.5", "-g", "none").Output()
		if err != nil {
			return fmt.Errorf("perf report: %w", err)
		}
		return writeFile(h.set.perfOut, out)
	}, nil
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.log, format+"\n", args...)
}

func mbps(b *bulkResult) float64 {
	if b == nil || b.elapsed <= 0 {
		return 0
	}
	return float64(b.bytes) / 1e6 / b.elapsed.Seconds()
}
