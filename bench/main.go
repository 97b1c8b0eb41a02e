package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tlsfront/tlsfront/internal/pki"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// settings are the command-line knobs. The defaults are what `make bench`
// runs and take about four minutes.
type settings struct {
	out          string
	tlsfrontBin  string
	targets      string
	hsDuration   time.Duration
	hsWorkers    int
	bulkDuration time.Duration
	bulkBytes    int64
	rttCount     int
	wakeConns    int
	idleSteps    []int
	idleSettle   time.Duration
	perfOut      string
	perfTest     string
	quick        bool
	label        string
	nice         int
	tlsfrontEnv  string
	tests        map[string]bool
	rounds       int
}

// runs reports whether the named test (conn, bulk, rtt, wake, idle) is on.
func (s *settings) runs(test string) bool { return s.tests[test] }

func parseSettings(args []string, stderr io.Writer) (*settings, error) {
	s := &settings{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&s.out, "out", "", "write the Markdown report to this `file` (default bench/RESULTS.md in the module; \"-\" for none)")
	fs.StringVar(&s.tlsfrontBin, "tlsfront", "", "use this tlsfront `binary` instead of building ./cmd/tlsfront (e.g. to compare a patched build)")
	fs.StringVar(&s.targets, "targets", "direct,tlsfront,nginx,haproxy", "comma-separated `list` of targets to run")
	fs.DurationVar(&s.hsDuration, "hs-duration", 8*time.Second, "how long the connection-rate test runs per target")
	fs.IntVar(&s.hsWorkers, "hs-workers", 16, "concurrent connectors in the connection-rate test")
	fs.DurationVar(&s.bulkDuration, "bulk-duration", 5*time.Second, "time bound of each throughput test")
	bulkMiB := fs.Int("bulk-mib", 2048, "byte bound of each throughput test, in MiB written")
	fs.IntVar(&s.rounds, "rounds", 2, "run every target this many times, interleaved, and report the best value of each metric")
	fs.IntVar(&s.rttCount, "rtt-count", 5000, "round trips in the latency test")
	fs.IntVar(&s.wakeConns, "wake-conns", 200, "connections in the wake-up test")
	tests := fs.String("tests", "conn,bulk,rtt,wake,idle", "comma-separated `list` of tests to run: conn, bulk, rtt, wake, idle")
	idle := fs.String("idle", "3000,9000", "idle connection counts at which RSS is read (at most 9000: the open-files limit is 20000)")
	fs.DurationVar(&s.idleSettle, "idle-settle", 10*time.Second, "after each idle step, wait this long and read RSS again (0: once, right after opening)")
	fs.StringVar(&s.perfOut, "perf", "", "record tlsfront with perf during one test (-perf-test) and write the report to this `file`")
	fs.StringVar(&s.perfTest, "perf-test", "conn", "the test -perf records: conn, bulk (the 1-connection throughput test) or rtt")
	fs.BoolVar(&s.quick, "quick", false, "short smoke run (about 1 minute); numbers are not for the record")
	fs.IntVar(&s.nice, "nice", -20, "`niceness` of the load generator, echo backend and proxies, so that other work on the machine disturbs the numbers less (0 to leave it)")
	fs.StringVar(&s.tlsfrontEnv, "tlsfront-env", "", "extra `VAR=value,...` environment for tlsfront, for experiments such as GOGC=50")
	fs.StringVar(&s.label, "label", "", "note printed in the report, e.g. which tlsfront build this is")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	s.bulkBytes = int64(*bulkMiB) << 20
	if s.perfTest != "conn" && s.perfTest != "bulk" && s.perfTest != "rtt" {
		return nil, fmt.Errorf("-perf-test: %q is not conn, bulk or rtt", s.perfTest)
	}
	s.tests = map[string]bool{}
	for _, t := range strings.Split(*tests, ",") {
		t = strings.TrimSpace(t)
		switch t {
		case "conn", "bulk", "rtt", "wake", "idle":
			s.tests[t] = true
		default:
			return nil, fmt.Errorf("-tests: unknown test %q (want conn, bulk, rtt, wake, idle)", t)
		}
	}
	for _, f := range strings.Split(*idle, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(f), &n); err != nil || n <= 0 || n > 9000 {
			return nil, fmt.Errorf("-idle: %q is not a count between 1 and 9000", f)
		}
		s.idleSteps = append(s.idleSteps, n)
	}
	if s.rounds < 1 || s.rounds > 5 {
		return nil, fmt.Errorf("-rounds: %d is not between 1 and 5", s.rounds)
	}
	if s.quick {
		s.rounds = 1
		s.hsDuration = 2 * time.Second
		s.bulkDuration = time.Second
		s.bulkBytes = 256 << 20
		s.rttCount = 1000
		s.wakeConns = 20
		s.idleSteps = []int{300, 900}
		s.idleSettle = 3 * time.Second
	}
	return s, nil
}

// harness is one benchmark run: the temp dir, the binaries and the
// children it started.
type harness struct {
	set         *settings
	tmp         string
	procs       *procs
	chain       *chain
	tlsfrontBin string
	echoBin     string
	clientTLS   *tls.Config
	log         io.Writer
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	set, err := parseSettings(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	nginxModule, err := checkTools()
	if err != nil {
		return err
	}
	modRoot, err := moduleRoot()
	if err != nil {
		return err
	}
	if set.out == "" {
		set.out = filepath.Join(modRoot, "bench", "RESULTS.md")
	}
	tmp, err := os.MkdirTemp("", "tlsfront-bench-")
	if err != nil {
		return err
	}
	h := &harness{set: set, tmp: tmp, procs: &procs{}, log: stderr}
	// Children die with us on every way out: a normal return, an error,
	// ctrl-c (ctx), or a panic in this goroutine. Pdeathsig covers a crash
	// elsewhere.
	defer func() {
		h.procs.killAll()
		os.RemoveAll(tmp)
	}()

	fmt.Fprintln(stderr, "bench: building binaries")
	h.echoBin = filepath.Join(tmp, "echo")
	if err := goBuild(ctx, modRoot, h.echoBin, "./bench/echo"); err != nil {
		return err
	}
	h.tlsfrontBin = set.tlsfrontBin
	if h.tlsfrontBin == "" {
		h.tlsfrontBin = filepath.Join(tmp, "tlsfront")
		if err := goBuild(ctx, modRoot, h.tlsfrontBin, "./cmd/tlsfront"); err != nil {
			return fmt.Errorf("%w\n(to benchmark another build, pass -tlsfront /path/to/tlsfront)", err)
		}
	}
	if h.chain, err = writeChain(tmp); err != nil {
		return err
	}
	limitArgs, limitNote := tlsfrontLimitsOff(h.tlsfrontBin)

	all := map[string]*target{
		"direct":   directTarget(),
		"tlsfront": tlsfrontTarget(limitArgs, set.tlsfrontEnv),
		"nginx":    nginxTarget(nginxModule),
		"haproxy":  haproxyTarget(),
	}
	var targets []*target
	for _, name := range strings.Split(set.targets, ",") {
		t, ok := all[strings.TrimSpace(name)]
		if !ok {
			return fmt.Errorf("-targets: unknown target %q (want direct, tlsfront, nginx, haproxy)", name)
		}
		targets = append(targets, t)
	}

	// Before pinning: nproc counts only the CPUs this process may use.
	machine := machineInfo()

	// From here on this process is the load generator: one core, the
	// other one belongs to the proxy under test.
	if err := pinProcess(loadCPU, set.nice); err != nil {
		return err
	}
	h.clientTLS = newClientTLS(pki.Pool(h.chain.root))

	started := time.Now()
	var results []*result
	for round := range set.rounds {
		for i, t := range targets {
			fmt.Fprintf(stderr, "bench: round %d/%d: %s\n", round+1, set.rounds, t.name)
			// Source addresses differ per round too, so that one round's
			// TIME_WAIT never meets the next.
			r, err := h.measure(ctx, t, i+len(targets)*round, round)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			results = append(results, r)
		}
	}
	rep := &report{
		command:  commandLine(args),
		date:     started.UTC(),
		took:     time.Since(started),
		set:      set,
		machine:  machine,
		versions: versions(),
		results:  results,
		notes:    []string{limitNote},
	}
	table := rep.table()
	fmt.Fprintln(stdout, table)
	if set.out != "-" {
		if err := os.WriteFile(set.out, []byte(rep.markdown()), 0o644); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
		fmt.Fprintf(stderr, "bench: wrote %s\n", set.out)
	}
	return nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find the module (go env GOMOD): %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run the benchmark from inside the tlsfront module: go run ./bench")
	}
	return filepath.Dir(mod), nil
}

func goBuild(ctx context.Context, dir, out, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// tlsfrontLimitsOff returns the flags that turn off tlsfront's admission
// limits, found by reading its --help, and a note for the report. The
// benchmark opens thousands of connections per second from loopback, which
// per-client limits (rate, concurrency) and global ones (backend pacing,
// handshakes in flight) would refuse or slow; nginx and HAProxy run with
// no such limits either.
func tlsfrontLimitsOff(bin string) ([]string, string) {
	out, _ := exec.Command(bin, "--help").CombinedOutput()
	help := string(out)
	// Older builds print Go's flag list ("  -limits"); newer ones group
	// the flags and spell them "  --limits".
	has := func(name string) bool {
		for _, dash := range []string{"  -", "  --"} {
			if strings.Contains(help, dash+name+" ") || strings.Contains(help, dash+name+"\n") {
				return true
			}
		}
		return false
	}
	if has("limits") {
		return []string{"--limits=false"}, "tlsfront ran with `--limits=false`: every admission limit off (per-client rate and concurrency, penalty box, global caps, backend pacing), as nginx and HAProxy have none configured."
	}
	var args []string
	for _, f := range limitFlags {
		if has(f) {
			args = append(args, "--"+f+"=0")
		}
	}
	if len(args) == 0 {
		return nil, "tlsfront had no admission-limit flags in this build; it ran with its defaults."
	}
	return args, "tlsfront ran with its admission limits off: `" + strings.Join(args, " ") + "`."
}

// limitFlags are tlsfront limits that 0 turns off, for builds without
// --limits.
var limitFlags = []string{"client-rate", "client-max-conns", "penalty-failures", "max-conns", "max-handshakes", "backend-rate", "refusal-delay"}

// srcAddr is the load generator's source address for one phase against
// one target, so TIME_WAIT from one phase never exhausts ports for the next.
func srcAddr(phase, targetIdx int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, byte(10 + phase), byte(targetIdx + 1), 1})
}

func commandLine(args []string) string {
	s := "go run ./bench"
	if len(args) > 0 {
		s += " " + strings.Join(args, " ")
	}
	return s
}

func machineInfo() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	nproc, _ := exec.Command("nproc").Output()
	var mem string
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		mem = strings.Join(strings.Fields(line)[1:], " ")
	}
	return fmt.Sprintf("nproc %s, %s, MemTotal %s", strings.TrimSpace(string(nproc)), model, mem)
}
