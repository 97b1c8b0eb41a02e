package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tlsfront/tlsfront/internal/freeport"
	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/procstat"
)

// The scenario. Well-behaved: wellClients × 1 connection/s. Storm: 30×
// that, from stormAddrs addresses.
const (
	wellClients    = 20
	wellInterval   = time.Second
	stormFactor    = 30
	stormAddrs     = 20
	stormWorkers   = 30 // per storm address, so that held sockets do not starve the loop
	warmup         = 2 * time.Second
	measure        = 15 * time.Second
	attemptTimeout = 5 * time.Second
	// The stall scenario adds stallAddrs addresses each holding
	// stallPerAddr sockets that send nothing (or half a ClientHello) and
	// reopen as soon as the server closes them: the silent-socket attack
	// that used to take every handshake slot.
	stallAddrs   = 300
	stallPerAddr = 2
)

// limitsOn are the limits of the second run: sized for devices that
// connect about once a second, a backend that takes 200 new connections
// a second, and broken clients that should be boxed quickly.
var limitsOn = []string{
	"--limits-exempt=", // the bench's clients are all on loopback
	"--client-rate", "2", "--client-burst", "5",
	"--penalty-failures", "5", "--penalty-window", "10s", "--penalty-base", "2s", "--penalty-max", "30s",
	"--max-handshakes", "256",
	"--refusal-delay", "500ms", "--max-delayed", "256",
	"--backend-rate", "200", "--backend-wait", "500ms", "--backend-queue", "200",
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "storm:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	if _, err := exec.LookPath("mosquitto"); err != nil {
		return fmt.Errorf("mosquitto not on PATH: %w", err)
	}
	dir, err := os.MkdirTemp("", "tlsfront-storm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	fmt.Fprintln(os.Stderr, "building tlsfront")
	bin := filepath.Join(dir, "tlsfront")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/tlsfront").CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/tlsfront (run from the repository root): %w\n%s", err, out)
	}
	pk, err := makePKI(dir)
	if err != nil {
		return err
	}
	broker, err := startMosquitto(ctx, dir)
	if err != nil {
		return err
	}
	defer broker.stop()

	var results []*result
	for _, rc := range []struct {
		name  string
		flags []string
		stall bool
	}{
		{"limits off", []string{"--limits=false"}, false},
		{"limits on", limitsOn, false},
		{"stall, off", []string{"--limits=false"}, true},
		{"stall, on", limitsOn, true},
	} {
		fmt.Fprintf(os.Stderr, "run: %s\n", rc.name)
		r, err := runOnce(ctx, bin, dir, pk, broker.addr, rc.name, rc.flags, rc.stall)
		if err != nil {
			return fmt.Errorf("%s: %w", rc.name, err)
		}
		results = append(results, r)
	}
	printTable(os.Stdout, results)
	fmt.Printf("\nlimits on: tlsfront %s\n", strings.Join(limitsOn, " "))
	return nil
}

type pkiFiles struct {
	cert, key  string
	root       string         // the CA tlsfront checks its chain against
	good, evil *x509.CertPool // the CA that issued the cert, and another
}

func makePKI(dir string) (*pkiFiles, error) {
	root, err := pki.NewRoot("storm root")
	if err != nil {
		return nil, err
	}
	leaf, err := root.Issue(pki.Options{CommonName: "localhost", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		return nil, err
	}
	other, err := pki.NewRoot("stale root")
	if err != nil {
		return nil, err
	}
	cert, err := pki.WriteFile(dir, "cert.pem", leaf.CertPEM(), 0o644)
	if err != nil {
		return nil, err
	}
	key, err := pki.WriteFile(dir, "key.pem", leaf.KeyPEM(), 0o600)
	if err != nil {
		return nil, err
	}
	rootFile, err := pki.WriteFile(dir, "root.pem", root.CertPEM(), 0o644)
	if err != nil {
		return nil, err
	}
	return &pkiFiles{cert: cert, key: key, root: rootFile, good: pki.Pool(root), evil: pki.Pool(other)}, nil
}

// waitListening polls addr until it accepts or the deadline passes.
func waitListening(ctx context.Context, addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("exited before listening")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not listening after 15s", addr)
}

// proc is a child process we started and must stop.
type proc struct {
	cmd    *exec.Cmd
	addr   string
	exited chan struct{}
}

func start(ctx context.Context, name string, args []string, logFile string) (*proc, error) {
	lf, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); lf.Close(); close(p.exited) }()
	return p, nil
}

// stop asks the process to end, then kills it if it will not.
func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

func startMosquitto(ctx context.Context, dir string) (*proc, error) {
	var lastErr error
	for range 5 {
		port, err := freeport.One()
		if err != nil {
			return nil, err
		}
		conf := filepath.Join(dir, "mosquitto.conf")
		body := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nlog_type error\nmax_queued_messages 10\n", port)
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			return nil, err
		}
		p, err := start(ctx, "mosquitto", []string{"-c", conf}, filepath.Join(dir, "mosquitto.log"))
		if err != nil {
			return nil, err
		}
		p.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if lastErr = waitListening(ctx, p.addr, p.exited); lastErr == nil {
			return p, nil
		}
		p.stop() // most likely the port was taken meanwhile: try another
	}
	return nil, fmt.Errorf("mosquitto did not start: %w", lastErr)
}

func startTLSFront(ctx context.Context, bin, dir string, pk *pkiFiles, backend string, flags []string) (p *proc, admin string, err error) {
	for range 5 {
		ports, err := freeport.Take(2)
		if err != nil {
			return nil, "", err
		}
		lp, ap := ports[0], ports[1]
		listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(lp))
		admin = net.JoinHostPort("127.0.0.1", strconv.Itoa(ap))
		args := append([]string{
			"--listen", listen, "--backend", backend, "--cert", pk.cert, "--key", pk.key, "--trust-ca", pk.root,
			"--admin", admin, "--state-dir", filepath.Join(dir, "state"), "--log-level", "error",
			"--probe-disabled",
		}, flags...)
		p, err = start(ctx, bin, args, filepath.Join(dir, "tlsfront.log"))
		if err != nil {
			return nil, "", err
		}
		p.addr = listen
		if err = waitListening(ctx, listen, p.exited); err == nil {
			return p, admin, nil
		}
		p.stop()
		log, _ := os.ReadFile(filepath.Join(dir, "tlsfront.log"))
		if !strings.Contains(string(log), "address already in use") {
			return nil, "", fmt.Errorf("tlsfront did not start: %w\n%s", err, log)
		}
	}
	return nil, "", errors.New("tlsfront did not start: no free port after 5 tries")
}

// shim passes TCP through to the broker and notes when each connection
// arrived, which is what the backend sees of tlsfront.
type shim struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	at     []time.Time
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func startShim(target string) (*shim, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &shim{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func (s *shim) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.at = append(s.at, time.Now())
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.pipe(c)
	}
}

func (s *shim) pipe(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	b, err := net.DialTimeout("tcp", s.target, 5*time.Second)
	if err != nil {
		return
	}
	defer b.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(b, c); b.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(c, b); c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	<-done
	// One side is done: give the other a moment, then cut both.
	c.SetDeadline(time.Now().Add(time.Second))
	b.SetDeadline(time.Now().Add(time.Second))
	<-done
}

func (s *shim) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// rates returns the new connections in [from, to): the total and the
// largest count in any sliding one-second window.
func (s *shim) rates(from, to time.Time) (total, maxPerSec int) {
	s.mu.Lock()
	var ts []time.Time
	for _, t := range s.at {
		if !t.Before(from) && t.Before(to) {
			ts = append(ts, t)
		}
	}
	s.mu.Unlock()
	j := 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= time.Second {
			j++
		}
		maxPerSec = max(maxPerSec, i-j+1)
	}
	return len(ts), maxPerSec
}

type result struct {
	name                   string
	wellAttempts, wellOK   int
	wellLat                []time.Duration
	stormAttempts, stormOK int
	backendTotal           int
	backendMax             int
	cpu                    time.Duration
	rssKB, hwmKB           int64
	refusals               map[string]float64
}

// counters are what the clients record during the measured window.
type counters struct {
	mu                     sync.Mutex
	measuring              bool
	wellAttempts, wellOK   int
	wellLat                []time.Duration
	stormAttempts, stormOK int
}

func runOnce(ctx context.Context, bin, dir string, pk *pkiFiles, broker, name string, flags []string, stall bool) (*result, error) {
	sh, err := startShim(broker)
	if err != nil {
		return nil, err
	}
	defer sh.close()
	tf, admin, err := startTLSFront(ctx, bin, dir, pk, sh.ln.Addr().String(), flags)
	if err != nil {
		return nil, err
	}
	defer tf.stop()

	var cnt counters
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var wg sync.WaitGroup

	// Well-behaved: one connection a second each, from 127.0.2.x.
	for i := range wellClients {
		src := net.IPv4(127, 0, 2, byte(i+1))
		wg.Go(func() {
			// Spread the clients over the second.
			t := time.NewTimer(time.Duration(i) * wellInterval / wellClients)
			defer t.Stop()
			for n := 0; ; n++ {
				select {
				case <-loadCtx.Done():
					return
				case <-t.C:
				}
				t.Reset(wellInterval)
				start := time.Now()
				err := attempt(loadCtx, tf.addr, src, pk.good, fmt.Sprintf("well-%d-%d", i, n), true)
				lat := time.Since(start)
				if loadCtx.Err() != nil {
					return
				}
				cnt.mu.Lock()
				if cnt.measuring {
					cnt.wellAttempts++
					if err == nil {
						cnt.wellOK++
						cnt.wellLat = append(cnt.wellLat, lat)
					}
				}
				cnt.mu.Unlock()
			}
		})
	}

	// Storm: tight loops from 127.0.1.x, paced in total to stormFactor×
	// the well-behaved rate so that both runs get the same offered load.
	stormRate := stormFactor * wellClients * int(time.Second/wellInterval)
	tokens := make(chan struct{}, stormRate/10)
	wg.Go(func() {
		tick := time.NewTicker(time.Second / time.Duration(stormRate))
		defer tick.Stop()
		for {
			select {
			case <-loadCtx.Done():
				return
			case <-tick.C:
				select {
				case tokens <- struct{}{}:
				default: // the storm is behind: do not bank attempts
				}
			}
		}
	})
	for a := range stormAddrs {
		src := net.IPv4(127, 0, 1, byte(a+1))
		roots := pk.good
		if a%3 == 2 {
			roots = pk.evil // a third of the storm fails its handshakes
		}
		for w := range stormWorkers {
			wg.Go(func() {
				for n := 0; ; n++ {
					select {
					case <-loadCtx.Done():
						return
					case <-tokens:
					}
					err := attempt(loadCtx, tf.addr, src, roots, fmt.Sprintf("storm-%d-%d-%d", a, w, n), false)
					if loadCtx.Err() != nil {
						return
					}
					cnt.mu.Lock()
					if cnt.measuring {
						cnt.stormAttempts++
						if err == nil {
							cnt.stormOK++
						}
					}
					cnt.mu.Unlock()
				}
			})
		}
	}

	if stall {
		for a := range stallAddrs {
			src := net.IPv4(127, 0, byte(3+a/250), byte(1+a%250))
			for w := range stallPerAddr {
				wg.Go(func() { stallLoop(loadCtx, tf.addr, src, w%2 == 1) })
			}
		}
	}

	select {
	case <-time.After(warmup):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	cpu0, err := procstat.CPU(tf.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	cnt.mu.Lock()
	cnt.measuring = true
	cnt.mu.Unlock()
	from := time.Now()
	select {
	case <-time.After(measure):
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-tf.exited:
		return nil, errors.New("tlsfront exited during the run")
	}
	to := time.Now()
	cnt.mu.Lock()
	cnt.measuring = false
	cnt.mu.Unlock()
	cpu1, err := procstat.CPU(tf.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	rss, hwm := procstat.Mem(tf.cmd.Process.Pid)
	refusals := scrapeRefusals(admin)
	stopLoad()
	wg.Wait()

	r := &result{name: name, cpu: cpu1 - cpu0, rssKB: rss, hwmKB: hwm, refusals: refusals}
	cnt.mu.Lock()
	r.wellAttempts, r.wellOK, r.wellLat = cnt.wellAttempts, cnt.wellOK, cnt.wellLat
	r.stormAttempts, r.stormOK = cnt.stormAttempts, cnt.stormOK
	cnt.mu.Unlock()
	r.backendTotal, r.backendMax = sh.rates(from, to)
	return r, nil
}

// attempt is one client session: TLS from src, MQTT CONNECT, CONNACK,
// then for a well-behaved client a PUBLISH, and DISCONNECT.
func attempt(ctx context.Context, addr string, src net.IP, roots *x509.CertPool, id string, publish bool) error {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	d := tls.Dialer{
		NetDialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: src}},
		Config:    &tls.Config{RootCAs: roots, ServerName: "localhost"},
	}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	if _, err := c.Write(connectPacket(id)); err != nil {
		return err
	}
	var ack [4]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil {
		return err
	}
	if ack[0] != 0x20 || ack[3] != 0 {
		return fmt.Errorf("CONNACK % x", ack)
	}
	if publish {
		if _, err := c.Write(publishPacket("storm/well", "hello")); err != nil {
			return err
		}
	}
	_, err = c.Write([]byte{0xe0, 0}) // DISCONNECT
	return err
}

// stallLoop holds one socket from src that sends nothing, or with half
// the first bytes of a ClientHello, until the server closes it, then opens
// another, until ctx ends. A refused dial is retried after a pause so
// that the loop stays bounded.
func stallLoop(ctx context.Context, addr string, src net.IP, partial bool) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}}
	for ctx.Err() == nil {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if partial {
			c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}) // a record header and one byte of a ClientHello
		}
		stop := context.AfterFunc(ctx, func() { c.Close() })
		io.Copy(io.Discard, c) // until the server closes it
		stop()
		c.Close()
	}
}

// connectPacket is an MQTT 3.1.1 CONNECT with a clean session.
func connectPacket(id string) []byte {
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 30, byte(len(id) >> 8), byte(len(id))}
	body = append(body, id...)
	return append([]byte{0x10, byte(len(body))}, body...)
}

func publishPacket(topic, payload string) []byte {
	body := []byte{byte(len(topic) >> 8), byte(len(topic))}
	body = append(append(body, topic...), payload...)
	return append([]byte{0x30, byte(len(body))}, body...)
}

// scrapeRefusals reads the refusal counters by limit from /metrics.
func scrapeRefusals(admin string) map[string]float64 {
	out := map[string]float64{}
	cl := http.Client{Timeout: 3 * time.Second}
	resp, err := cl.Get("http://" + admin + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "limit_refusals_total{") {
			continue
		}
		i := strings.Index(line, `limit="`)
		if i < 0 {
			continue
		}
		name, _, _ := strings.Cut(line[i+7:], `"`)
		v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		out[name] += v
	}
	return out
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func printTable(w io.Writer, rs []*result) {
	secs := measure.Seconds()
	row := func(label string, f func(r *result) string) {
		fmt.Fprintf(w, "%-44s", label)
		for _, r := range rs {
			fmt.Fprintf(w, "%18s", f(r))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "\nstorm benchmark: %d well-behaved clients at 1 conn/s, storm %dx from %d addresses (1/3 with a stale CA), %v measured\n",
		wellClients, stormFactor, stormAddrs, measure)
	fmt.Fprintf(w, "stall columns add %d silent or half-hello sockets from %d addresses, reopened as soon as closed\n\n", stallAddrs*stallPerAddr, stallAddrs)
	row("", func(r *result) string { return r.name })
	row("well-behaved success", func(r *result) string {
		return fmt.Sprintf("%d/%d %.1f%%", r.wellOK, r.wellAttempts, 100*float64(r.wellOK)/float64(max(1, r.wellAttempts)))
	})
	row("well-behaved connect p50", func(r *result) string { return percentile(r.wellLat, 0.50).Round(100 * time.Microsecond).String() })
	row("well-behaved connect p99", func(r *result) string { return percentile(r.wellLat, 0.99).Round(100 * time.Microsecond).String() })
	row("storm attempts/s (offered "+strconv.Itoa(stormFactor*wellClients)+")", func(r *result) string {
		return fmt.Sprintf("%.0f", float64(r.stormAttempts)/secs)
	})
	row("storm sessions that reached the broker /s", func(r *result) string { return fmt.Sprintf("%.0f", float64(r.stormOK)/secs) })
	row("backend new conns/s (mean)", func(r *result) string { return fmt.Sprintf("%.0f", float64(r.backendTotal)/secs) })
	row("backend new conns/s (max, 1s window)", func(r *result) string { return strconv.Itoa(r.backendMax) })
	row("tlsfront CPU (% of one core)", func(r *result) string { return fmt.Sprintf("%.0f%%", 100*r.cpu.Seconds()/secs) })
	row("tlsfront RSS / peak (MiB)", func(r *result) string {
		return fmt.Sprintf("%.1f / %.1f", float64(r.rssKB)/1024, float64(r.hwmKB)/1024)
	})
	names := map[string]bool{}
	for _, r := range rs {
		for n := range r.refusals {
			names[n] = true
		}
	}
	for _, n := range slices.Sorted(maps.Keys(names)) {
		row("refused by "+n+" (whole run)", func(r *result) string { return fmt.Sprintf("%.0f", r.refusals[n]) })
	}
}
