package main

// In-process benchmarks of the proxy package, for profiles the
// out-of-process harness cannot take (tlsfront has no pprof endpoint):
//
//	go test ./bench -run '^$' -bench Handshake -benchtime 3000x -cpuprofile cpu.out
//	go tool pprof -top -focus 'tlsfront/proxy' bench.test cpu.out
//	go test ./bench -run '^$' -bench IdleConnMemory -benchtime 1x -v
//	GOMAXPROCS=1 taskset -c 0 go test ./bench -run '^$' -bench RoundTrip -benchtime 20000x -trace rtt.trace -v
//	go tool trace -pprof=sched rtt.trace > sched.pprof
//
// The echo backend runs as its own process (built from ./echo) so that
// the only goroutines in this process belong to the proxy.

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/proxy"
)

// inprocProxy is a proxy.Server on loopback in front of an echo process.
type inprocProxy struct {
	addr   string
	client *client
}

func startInprocProxy(tb testing.TB) *inprocProxy {
	tb.Helper()
	dir := tb.TempDir()
	echoBin := filepath.Join(dir, "echo")
	if out, err := exec.Command("go", "build", "-o", echoBin, "./echo").CombinedOutput(); err != nil {
		tb.Fatalf("build echo: %v\n%s", err, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, echoBin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cancel(); cmd.Wait() })
	line := make([]byte, 64)
	n, err := stdout.Read(line)
	if err != nil {
		tb.Fatalf("echo did not start: %v %s", err, stderr.String())
	}
	echoAddr := strings.TrimSpace(strings.TrimPrefix(string(line[:n]), "listening "))

	root, err := pki.NewRoot("bench root")
	if err != nil {
		tb.Fatal(err)
	}
	inter, err := root.Issue(pki.Options{CommonName: "bench intermediate", IsCA: true})
	if err != nil {
		tb.Fatal(err)
	}
	leaf, err := inter.Issue(pki.Options{CommonName: "localhost", DNSNames: []string{"localhost"}})
	if err != nil {
		tb.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{leaf.DER, inter.DER}, PrivateKey: leaf.Key, Leaf: leaf.Cert}
	srv, err := proxy.New(proxy.Options{
		Name:    "bench",
		Kind:    proxy.KindTCP,
		TLS:     &tls.Config{Certificates: []tls.Certificate{cert}},
		Backend: proxy.Backend{Network: "tcp", Address: echoAddr},
	})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(ln) }()
	tb.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
		<-served
	})
	return &inprocProxy{addr: ln.Addr().String(), client: &client{addr: ln.Addr().String(), tls: newClientTLS(pki.Pool(root))}}
}

// BenchmarkHandshake measures one full TLS 1.3 handshake, one echo round
// trip and close through the proxy, client and proxy in this process.
func BenchmarkHandshake(b *testing.B) {
	p := startInprocProxy(b)
	src := netip.MustParseAddr("127.0.0.1")
	msg := []byte("ping")
	buf := make([]byte, len(msg))
	b.ResetTimer()
	for b.Loop() {
		c, err := p.client.dial(context.Background(), src)
		if err != nil {
			b.Fatal(err)
		}
		if err := echoOnce(c, msg, buf); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// BenchmarkResumedConn is BenchmarkHandshake with a session cache: after
// the first, every connection resumes (TLS 1.2: no key exchange, no
// signature), so what is left is the proxy's own per-connection work.
func BenchmarkResumedConn(b *testing.B) {
	p := startInprocProxy(b)
	p.client.tls.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	p.client.tls.MinVersion, p.client.tls.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	src := netip.MustParseAddr("127.0.0.1")
	msg := []byte("ping")
	buf := make([]byte, len(msg))
	resumed := 0
	b.ResetTimer()
	for b.Loop() {
		c, err := p.client.dial(context.Background(), src)
		if err != nil {
			b.Fatal(err)
		}
		if err := echoOnce(c, msg, buf); err != nil {
			b.Fatal(err)
		}
		if c.(*tls.Conn).ConnectionState().DidResume {
			resumed++
		}
		c.Close()
	}
	b.ReportMetric(float64(resumed)/float64(b.N), "resumed/op")
}

// BenchmarkIdleConnMemory opens idle TLS connections through the proxy and
// reports what each costs the proxy: goroutine stacks, and heap allocated
// under the proxy's frames (from an exact memory profile), before and
// after the garbage collector has run.
func BenchmarkIdleConnMemory(b *testing.B) {
	const n = 1000
	runtime.MemProfileRate = 1
	defer func() { runtime.MemProfileRate = 512 * 1024 }()
	p := startInprocProxy(b)
	src := netip.MustParseAddr("127.0.0.1")

	for b.Loop() {
		var base, grown, settled runtime.MemStats
		runtime.GC()
		runtime.GC()
		g0 := runtime.NumGoroutine()
		runtime.ReadMemStats(&base)
		heap0 := proxyHeap()

		var conns []net.Conn
		msg := []byte("ping")
		buf := make([]byte, len(msg))
		for range n {
			c, err := p.client.dial(context.Background(), src)
			if err != nil {
				b.Fatal(err)
			}
			if err := echoOnce(c, msg, buf); err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		runtime.ReadMemStats(&grown)
		goroutines := runtime.NumGoroutine() - g0
		// Quiet connections park after a second: wait until their copy
		// goroutines have returned (bounded).
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && runtime.NumGoroutine()-g0 > n/10; {
			time.Sleep(50 * time.Millisecond)
		}
		parkedGoroutines := runtime.NumGoroutine() - g0
		// Two cycles: the first shrinks stacks used below a quarter, and
		// publishes the profile of the one before.
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&settled)
		heap1 := proxyHeap()
		// Each cycle halves a stack that uses under a quarter of it; after
		// a few, stacks are as small as the parked goroutines allow.
		var floor runtime.MemStats
		for range 6 {
			runtime.GC()
		}
		runtime.ReadMemStats(&floor)

		per := func(a, b uint64) float64 { return (float64(b) - float64(a)) / n }
		b.ReportMetric(float64(goroutines)/n, "goroutines/conn")
		b.ReportMetric(float64(parkedGoroutines)/n, "goroutines-parked/conn")
		b.ReportMetric(per(base.StackInuse, grown.StackInuse), "stack-B/conn")
		b.ReportMetric(per(base.StackInuse, settled.StackInuse), "stack-after-gc-B/conn")
		b.ReportMetric(per(base.StackInuse, floor.StackInuse), "stack-after-8gc-B/conn")
		b.ReportMetric(per(base.HeapInuse, grown.HeapInuse), "heap-all-B/conn")
		b.ReportMetric(per(base.HeapInuse, settled.HeapInuse), "heap-all-after-gc-B/conn")
		b.ReportMetric((float64(heap1.total)-float64(heap0.total))/n, "heap-proxy-B/conn")

		var sites []string
		for site, v := range heap1.bySite {
			if d := v - heap0.bySite[site]; d > 64*n {
				sites = append(sites, fmt.Sprintf("%8.0f B/conn  %s", float64(d)/n, site))
			}
		}
		sort.Sort(sort.Reverse(sort.StringSlice(sites)))
		b.Logf("live heap under proxy frames by allocation site (after GC), %d connections:\n%s", n, strings.Join(sites, "\n"))

		for _, c := range conns {
			c.Close()
		}
	}
}

type heapShare struct {
	total  int64
	bySite map[string]int64
}

// proxyHeap sums live heap whose allocating stack passes through the proxy
// package, grouped by the first frame outside the runtime.
func proxyHeap() heapShare {
	hs := heapShare{bySite: map[string]int64{}}
	var recs []runtime.MemProfileRecord
	n, _ := runtime.MemProfile(nil, true)
	for {
		recs = make([]runtime.MemProfileRecord, n+64)
		var ok bool
		if n, ok = runtime.MemProfile(recs, true); ok {
			recs = recs[:n]
			break
		}
	}
	for _, r := range recs {
		inuse := r.InUseBytes()
		if inuse == 0 {
			continue
		}
		frames := runtime.CallersFrames(r.Stack())
		site, inProxy := "", false
		for {
			f, more := frames.Next()
			if site == "" && !strings.HasPrefix(f.Function, "runtime.") && !strings.HasPrefix(f.Function, "internal/") {
				site = fmt.Sprintf("%s (%s:%d)", f.Function, filepath.Base(f.File), f.Line)
			}
			if strings.HasPrefix(f.Function, "github.com/tlsfront/tlsfront/proxy.") {
				inProxy = true
			}
			if !more {
				break
			}
		}
		if inProxy {
			hs.total += inuse
			hs.bySite[site] += inuse
		}
	}
	return hs
}

// BenchmarkRoundTrip sends 1 KiB through the proxy and waits for its echo,
// b.N times on one connection, and logs the latency percentiles. With
// -trace, the scheduler-latency profile says how long the proxy's
// goroutines waited to run after the network woke them.
func BenchmarkRoundTrip(b *testing.B) {
	p := startInprocProxy(b)
	c, err := tls.Dial("tcp", p.addr, p.client.tls)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	out, in := make([]byte, 1024), make([]byte, 1024)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if _, err := c.Write(out); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, in); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	at := func(q int) time.Duration { return lat[(len(lat)-1)*q/1000] }
	b.Logf("round trip p50 %v, p99 %v, p99.9 %v", at(500), at(990), at(999))
}
