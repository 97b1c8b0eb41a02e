package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/tlsfront/tlsfront/certs"
	"github.com/tlsfront/tlsfront/internal/pki"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/certs:", err)
		os.Exit(1)
	}
}

// reloadProfile is where the child writes a CPU profile of one reload.
var reloadProfile, startProfile string

// sample is what one child run measured.
type sample struct {
	N            int     `json:"n"`
	Served       int     `json:"served"`
	StartWall    float64 `json:"start_wall_s"`
	StartCPU     float64 `json:"start_cpu_s"`
	HeapPerCert  float64 `json:"heap_per_cert_bytes"`
	RSSPerCert   float64 `json:"rss_per_cert_bytes"`
	ReloadSame   float64 `json:"reload_unchanged_s"`
	ChangeServed float64 `json:"change_served_s"`
	ReloadCPU    float64 `json:"reload_one_cpu_s"`
	// ChangedServed is ChangeServed through ReloadChanged, told the
	// pair's folder as a file watch would.
	ChangedServed float64 `json:"changed_served_s"`

	// The tlsfront binary on the same folder (-e2e).
	BinReady  float64 `json:"-"`
	BinRSS    float64 `json:"-"`
	BinServed float64 `json:"-"`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench/certs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 10000, "number of certificates")
	runs := fs.Int("runs", 5, "fresh processes to measure; best and median are reported")
	cacheDir := fs.String("cache", "", "where the generated certificates are kept (default: the user cache folder)")
	child := fs.Bool("child", false, "internal: measure once and print JSON")
	withBinary := fs.Bool("e2e", true, "also run the tlsfront binary on the folder each run: time to ready, its memory, and a change served through the file watch")
	bin := fs.String("tlsfront", "", "tlsfront `binary` for -e2e (default: build ./cmd/tlsfront)")
	fs.StringVar(&startProfile, "start-profile", "", "with -child: write a CPU profile of the start to this `file`")
	fs.StringVar(&reloadProfile, "reload-profile", "", "with -child: write a CPU profile of ReloadChanged after one change to this `file`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *n > 50000 || *runs < 1 || *runs > 20 {
		return errors.New("-n must be 1..50000 and -runs 1..20")
	}
	if *cacheDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		*cacheDir = filepath.Join(base, "tlsfront", "bench-certs")
	}
	dir := filepath.Join(*cacheDir, strconv.Itoa(*n))
	if *child {
		s, err := measure(ctx, dir, *n)
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(s)
	}
	if err := generate(dir, *n, stderr); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if *withBinary && *bin == "" {
		tmp, err := os.MkdirTemp("", "bench-certs")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		*bin = filepath.Join(tmp, "tlsfront")
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", *bin, "./cmd/tlsfront").CombinedOutput(); err != nil {
			return fmt.Errorf("build tlsfront: %w\n%s", err, out)
		}
	}
	var samples []sample
	for i := range *runs {
		cmd := exec.CommandContext(ctx, self, "-child", "-n", strconv.Itoa(*n), "-cache", *cacheDir)
		cmd.Stderr = stderr
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		var s sample
		if err := json.Unmarshal(out, &s); err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		fmt.Fprintf(stderr, "run %d: start %.2fs wall %.2fs CPU, %.1f KB heap/cert, %.1f KB RSS/cert, reload unchanged %.0f ms, one change served in %.0f ms\n",
			i+1, s.StartWall, s.StartCPU, s.HeapPerCert/1000, s.RSSPerCert/1000, s.ReloadSame*1000, s.ChangeServed*1000)
		if *withBinary {
			e, err := runBinary(ctx, *bin, dir, *n, i)
			if err != nil {
				return fmt.Errorf("run %d, tlsfront binary: %w", i+1, err)
			}
			s.BinReady, s.BinRSS, s.BinServed = e.Ready, float64(e.RSS), e.Served
			fmt.Fprintf(stderr, "run %d: tlsfront ready in %.2fs, RSS %.1f MB, a rewritten pair served through the watch in %.0f ms\n", i+1, e.Ready, float64(e.RSS)/1e6, e.Served*1000)
		}
		samples = append(samples, s)
	}
	report(stdout, *n, samples, *withBinary)
	return nil
}

// report prints best and median of each measure as a Markdown table.
func report(w io.Writer, n int, ss []sample, withBinary bool) {
	row := func(name, unit string, scale float64, get func(sample) float64) {
		vals := make([]float64, len(ss))
		for i, s := range ss {
			vals[i] = get(s) * scale
		}
		slices.Sort(vals)
		fmt.Fprintf(w, "| %s | %.2f %s | %.2f %s |\n", name, vals[0], unit, vals[len(vals)/2], unit)
	}
	fmt.Fprintf(w, "%d certificates (ECDSA P-256, certbot live/ layout), %d runs, GOMAXPROCS %d\n\n", n, len(ss), runtime.GOMAXPROCS(0))
	fmt.Fprintln(w, "| measure | best | median |")
	fmt.Fprintln(w, "|---|---|---|")
	row("start, wall", "s", 1, func(s sample) float64 { return s.StartWall })
	row("start, CPU", "s", 1, func(s sample) float64 { return s.StartCPU })
	row("start CPU per certificate", "ms", 1000/float64(n), func(s sample) float64 { return s.StartCPU })
	row("live heap per certificate", "KB", 1e-3, func(s sample) float64 { return s.HeapPerCert })
	row("resident memory per certificate", "KB", 1e-3, func(s sample) float64 { return s.RSSPerCert })
	row("reload, nothing changed", "ms", 1000, func(s sample) float64 { return s.ReloadSame })
	row("one pair rewritten → served (Reload + handshake)", "ms", 1000, func(s sample) float64 { return s.ChangeServed })
	row("that reload's CPU", "ms", 1000, func(s sample) float64 { return s.ReloadCPU })
	row("one pair rewritten → served (ReloadChanged, as the watch calls it, + handshake)", "ms", 1000, func(s sample) float64 { return s.ChangedServed })
	if withBinary {
		row("tlsfront binary: exec → /readyz 200", "s", 1, func(s sample) float64 { return s.BinReady })
		row("tlsfront binary: RSS once ready, per certificate", "KB", 1e-3/float64(n), func(s sample) float64 { return s.BinRSS })
		row("tlsfront binary: pair rewritten → served via the file watch (debounce 500 ms)", "ms", 1000, func(s sample) float64 { return s.BinServed })
	}
}

// generate writes n pairs under dir/live unless a complete set is there.
func generate(dir string, n int, log io.Writer) error {
	done := filepath.Join(dir, "complete")
	if _, err := os.Stat(done); err == nil {
		return nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	fmt.Fprintf(log, "generating %d certificates into %s (once)\n", n, dir)
	root, err := pki.NewRoot("bench root")
	if err != nil {
		return err
	}
	inter, err := root.Issue(pki.Options{CommonName: "bench intermediate", IsCA: true, NotAfter: time.Now().Add(5 * 365 * 24 * time.Hour)})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "live"), 0o755); err != nil {
		return err
	}
	if _, err := pki.WriteFile(dir, "root.pem", root.CertPEM(), 0o644); err != nil {
		return err
	}
	if _, err := pki.WriteFile(dir, "intermediate.pem", append(inter.CertPEM(), inter.KeyPEM()...), 0o600); err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, runtime.GOMAXPROCS(0))
	for w := range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := w; i < n; i += runtime.GOMAXPROCS(0) {
				if err := writePair(dir, inter, i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return os.WriteFile(done, nil, 0o644)
}

func name(i int) string { return fmt.Sprintf("c%05d.example.com", i) }

// writePair issues a leaf for name(i) and writes it certbot style.
func writePair(dir string, inter *pki.Cert, i int) error {
	leaf, err := inter.Issue(pki.Options{CommonName: name(i), DNSNames: []string{name(i)}, NotAfter: time.Now().Add(5 * 365 * 24 * time.Hour)})
	if err != nil {
		return err
	}
	d := filepath.Join(dir, "live", name(i))
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	// Written to temporary names and renamed, as renewals do.
	for _, f := range []struct {
		name string
		data []byte
	}{{"privkey.pem", leaf.KeyPEM()}, {"fullchain.pem", pki.ChainPEM(leaf, inter)}} {
		tmp := filepath.Join(d, "."+f.name+".tmp")
		if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(d, f.name)); err != nil {
			return err
		}
	}
	return nil
}

// measure runs once, in a child process.
func measure(ctx context.Context, dir string, n int) (sample, error) {
	s := sample{N: n}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap0, rss0 := ms.HeapAlloc, rss()
	if startProfile != "" {
		f, err := os.Create(startProfile)
		if err != nil {
			return s, err
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
	}
	cpu0 := cpuTime()
	t0 := time.Now()
	m, err := certs.NewManager(certs.ManagerOptions{
		Folders: []certs.FolderSource{{Dir: filepath.Join(dir, "live")}},
		Trust:   certs.TrustOptions{CAFile: filepath.Join(dir, "root.pem")},
		// Load and reload logs are left out: 10,000 lines say little.
		ReloadTimeout: 5 * time.Minute,
	})
	if err != nil {
		return s, err
	}
	if err := m.Load(ctx); err != nil {
		return s, err
	}
	s.StartWall, s.StartCPU = time.Since(t0).Seconds(), cpuTime()-cpu0
	if startProfile != "" {
		pprof.StopCPUProfile()
	}
	s.Served = len(m.Store().IDs())
	if s.Served != n {
		return s, fmt.Errorf("%d certificates served, want %d", s.Served, n)
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	s.HeapPerCert = float64(int64(ms.HeapAlloc)-int64(heap0)) / float64(n)
	s.RSSPerCert = float64(rss()-rss0) / float64(n)

	t0 = time.Now()
	rs, _ := m.Reload(ctx, "bench", false)
	s.ReloadSame = time.Since(t0).Seconds()
	for _, r := range rs {
		if r.Result != certs.Unchanged {
			return s, fmt.Errorf("reload with nothing changed: %s %s", r.ID, r.Result)
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return s, err
	}
	defer ln.Close()
	go serve(tls.NewListener(ln, m.TLSConfig()))
	inter, err := readIntermediate(filepath.Join(dir, "intermediate.pem"))
	if err != nil {
		return s, err
	}
	roots := x509.NewCertPool()
	rootPEM, err := os.ReadFile(filepath.Join(dir, "root.pem"))
	if err != nil {
		return s, err
	}
	roots.AppendCertsFromPEM(rootPEM)
	i := n / 2
	if err := writePair(dir, inter, i); err != nil {
		return s, err
	}
	want, err := os.ReadFile(filepath.Join(dir, "live", name(i), "fullchain.pem"))
	if err != nil {
		return s, err
	}
	t0, cpu0 = time.Now(), cpuTime()
	rs, _ = m.Reload(ctx, "bench", false)
	s.ReloadCPU = cpuTime() - cpu0
	changed := 0
	for _, r := range rs {
		if r.Result != certs.Unchanged {
			changed++
		}
	}
	if changed != 1 {
		return s, fmt.Errorf("%d results not unchanged after one pair changed, want 1", changed)
	}
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: name(i)})
	if err != nil {
		return s, err
	}
	got := c.ConnectionState().PeerCertificates[0].Raw
	c.Close()
	s.ChangeServed = time.Since(t0).Seconds()
	if blk, _ := pem.Decode(want); blk == nil || !bytes.Equal(blk.Bytes, got) {
		return s, errors.New("the rewritten pair is not what is served")
	}

	// The same through ReloadChanged, as the file watch calls it.
	i = n/2 + 1
	if err := writePair(dir, inter, i); err != nil {
		return s, err
	}
	if want, err = os.ReadFile(filepath.Join(dir, "live", name(i), "fullchain.pem")); err != nil {
		return s, err
	}
	if reloadProfile != "" {
		f, err := os.Create(reloadProfile)
		if err != nil {
			return s, err
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	t0 = time.Now()
	rs, _ = m.ReloadChanged(ctx, "bench", false, []string{filepath.Join(dir, "live", name(i), "fullchain.pem")})
	if changed := len(rs) - countUnchanged(rs); changed != 1 {
		return s, fmt.Errorf("%d results not unchanged after ReloadChanged of one pair, want 1", changed)
	}
	c, err = tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: name(i)})
	if err != nil {
		return s, err
	}
	got = c.ConnectionState().PeerCertificates[0].Raw
	c.Close()
	s.ChangedServed = time.Since(t0).Seconds()
	if blk, _ := pem.Decode(want); blk == nil || !bytes.Equal(blk.Bytes, got) {
		return s, errors.New("the rewritten pair is not what is served after ReloadChanged")
	}
	return s, nil
}

func countUnchanged(rs []certs.Result) int {
	n := 0
	for _, r := range rs {
		if r.Result == certs.Unchanged {
			n++
		}
	}
	return n
}

func serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.(*tls.Conn).Handshake()
		}()
	}
}

func readIntermediate(path string) (*pki.Cert, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cb, rest := pem.Decode(data)
	kb, _ := pem.Decode(rest)
	if cb == nil || kb == nil {
		return nil, fmt.Errorf("%s: want a certificate and a key", path)
	}
	c, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, err
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: %T is not a signing key", path, k)
	}
	return &pki.Cert{Cert: c, Key: signer, DER: cb.Bytes}, nil
}

// cpuTime is this process's user+system CPU time, in seconds.
func cpuTime() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// rss is the resident set size in bytes, from /proc (0 elsewhere).
func rss() int64 { return rssOf(os.Getpid()) }

// firstCert parses the first PEM certificate of data.
func firstCert(data []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(b.Bytes)
}
