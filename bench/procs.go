package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tlsfront/tlsfront/internal/procstat"
)

// procs owns every child process the harness starts. Each child leads its
// own process group (so nginx's worker goes with its master) and gets
// SIGKILL from the kernel if the harness dies first. killAll is called on
// every way out of run.
type procs struct {
	mu   sync.Mutex
	live []*proc
}

// proc is one started child and its process group.
type proc struct {
	name string
	cmd  *exec.Cmd
	pid  int
	out  *tailBuffer
	done chan struct{}
	err  error // set before done is closed
}

// start runs argv with its own process group, pinned to cpu with taskset
// when cpu >= 0. stdout lines are passed to onLine (if not nil) until it
// returns false.
func (p *procs) start(ctx context.Context, name string, cpu int, onLine func(string) bool, argv ...string) (*proc, error) {
	if cpu >= 0 {
		argv = append([]string{"taskset", "-c", strconv.Itoa(cpu)}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 3 * time.Second
	pr := &proc{name: name, cmd: cmd, out: &tailBuffer{max: 8 << 10}, done: make(chan struct{})}
	cmd.Stderr = pr.out
	var stdout io.ReadCloser
	if onLine != nil {
		var err error
		if stdout, err = cmd.StdoutPipe(); err != nil {
			return nil, err
		}
	} else {
		cmd.Stdout = pr.out
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, strings.Join(argv, " "), err)
	}
	pr.pid = cmd.Process.Pid
	p.mu.Lock()
	p.live = append(p.live, pr)
	p.mu.Unlock()
	lines := make(chan struct{})
	go func() {
		defer close(lines)
		if stdout == nil {
			return
		}
		sc := bufio.NewScanner(stdout)
		wanted := true
		for sc.Scan() {
			if wanted {
				wanted = onLine(sc.Text())
			} else {
				pr.out.Write(append(sc.Bytes(), '\n'))
			}
		}
	}()
	go func() {
		<-lines
		pr.err = cmd.Wait()
		close(pr.done)
	}()
	return pr, nil
}

// stop kills pr's whole process group and waits for it.
func (p *procs) stop(pr *proc) {
	syscall.Kill(-pr.pid, syscall.SIGTERM)
	select {
	case <-pr.done:
	case <-time.After(2 * time.Second):
	}
	// Whatever is left of the group (an nginx worker) goes too.
	syscall.Kill(-pr.pid, syscall.SIGKILL)
	select {
	case <-pr.done:
	case <-time.After(5 * time.Second):
	}
	p.mu.Lock()
	for i, q := range p.live {
		if q == pr {
			p.live = append(p.live[:i], p.live[i+1:]...)
			break
		}
	}
	p.mu.Unlock()
}

// killAll stops every child still running.
func (p *procs) killAll() {
	p.mu.Lock()
	live := append([]*proc(nil), p.live...)
	p.mu.Unlock()
	for _, pr := range live {
		p.stop(pr)
	}
}

// exited reports whether pr has ended.
func (pr *proc) exited() bool {
	select {
	case <-pr.done:
		return true
	default:
		return false
	}
}

// waitListening polls addr until a TCP connect succeeds, pr exits, or the
// deadline passes.
func waitListening(ctx context.Context, pr *proc, addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if pr.exited() {
			return fmt.Errorf("%s exited before listening on %s: %v\n%s", pr.name, addr, pr.err, pr.out.String())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening on %s after %s:\n%s", pr.name, addr, within, pr.out.String())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// tailBuffer keeps the last max bytes written to it, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.b))
}

// groupStats are the CPU time and resident memory of every process in one
// process group, read from /proc.
type groupStats struct {
	cpu   time.Duration // utime+stime, all threads, all processes
	rssKB int64         // sum of VmRSS
	// switches counts the times the threads were switched out, waiting
	// or preempted.
	switches int64
	procs    int
}

// readGroup sums /proc stats over the processes whose process group is
// pgid.
func readGroup(pgid int) (groupStats, error) {
	var gs groupStats
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return gs, err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := procstat.Read(pid)
		if err != nil || st.Pgrp != pgid {
			continue
		}
		gs.cpu += st.CPU
		rss, _ := procstat.Mem(pid)
		gs.rssKB += rss
		gs.switches += procstat.Switches(pid)
		gs.procs++
	}
	if gs.procs == 0 {
		return gs, fmt.Errorf("no process in group %d", pgid)
	}
	return gs, nil
}

// machineCPU is a snapshot of what every CPU did since boot, from
// /proc/stat, next to this process's own CPU time.
type machineCPU struct {
	busy  time.Duration // user+nice+system+irq+softirq+steal, all CPUs
	steal time.Duration
	self  time.Duration // this process, all threads
	at    time.Time
}

func readMachineCPU() machineCPU {
	m := machineCPU{at: time.Now()}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		// cpu user nice system idle iowait irq softirq steal ...
		if len(f) >= 9 && f[0] == "cpu" {
			for _, i := range []int{1, 2, 3, 6, 7, 8} {
				v, _ := strconv.ParseInt(f[i], 10, 64)
				m.busy += time.Duration(v) * procstat.ClockTick()
			}
			st, _ := strconv.ParseInt(f[8], 10, 64)
			m.steal = time.Duration(st) * procstat.ClockTick()
		}
	}
	if cpu, err := procstat.CPU(os.Getpid()); err == nil {
		m.self = cpu
	}
	return m
}

// foreignShare is the share of all CPUs (0-100%) used between a and b by
// anything other than this process and the given CPU time of its
// children (ours), including time the hypervisor stole.
func foreignShare(a, b machineCPU, ours time.Duration) float64 {
	wall := b.at.Sub(a.at).Seconds() * float64(runtime.NumCPU())
	if wall <= 0 {
		return 0
	}
	other := (b.busy - a.busy) - (b.self - a.self) - ours
	return max(0, 100*other.Seconds()/wall)
}

// stealShare is the share of all CPUs (0-100%) the hypervisor stole
// between a and b.
func stealShare(a, b machineCPU) float64 {
	wall := b.at.Sub(a.at).Seconds() * float64(runtime.NumCPU())
	if wall <= 0 {
		return 0
	}
	return max(0, 100*(b.steal-a.steal).Seconds()/wall)
}
