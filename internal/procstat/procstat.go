// Package procstat reads what the benchmarks measure of a process from
// Linux's /proc: its CPU time, process group and memory.
package procstat

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Stat is what /proc/PID/stat tells of a process.
type Stat struct {
	Pgrp int
	CPU  time.Duration // user + system
}

// clockTick is the length of one /proc/PID/stat tick (USER_HZ).
var clockTick = func() time.Duration {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if hz, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && hz > 0 {
			return time.Second / time.Duration(hz)
		}
	}
	return 10 * time.Millisecond
}()

// ClockTick is the length of one tick of /proc's CPU counters.
func ClockTick() time.Duration { return clockTick }

// Read parses /proc/PID/stat. The command name may contain spaces and
// parentheses, so fields are counted from the last ')'.
func Read(pid int) (Stat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return Stat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return Stat{}, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// After ")": state(0) ppid(1) pgrp(2) ... utime(11) stime(12).
	if len(f) < 13 {
		return Stat{}, errors.New("short stat")
	}
	var st Stat
	st.Pgrp, _ = strconv.Atoi(f[2])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	st.CPU = time.Duration(ut+stime) * clockTick
	return st, nil
}

// CPU is the user and system CPU time the process has used.
func CPU(pid int) (time.Duration, error) {
	st, err := Read(pid)
	return st.CPU, err
}

// Mem returns the process's resident set size and its peak, in KiB; 0
// when unknown.
func Mem(pid int) (rssKB, hwmKB int64) {
	st := status(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	return st["VmRSS"], st["VmHWM"]
}

// Switches returns how many times the process's threads were switched
// out, voluntarily (to wait) or not (preempted), summed over the threads
// that are alive now.
func Switches(pid int) int64 {
	tasks, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "status"))
	var n int64
	for _, path := range tasks {
		st := status(path)
		n += st["voluntary_ctxt_switches"] + st["nonvoluntary_ctxt_switches"]
	}
	return n
}

// status reads the numeric fields of a /proc status file (the first
// number of each line); empty when it cannot be read.
func status(path string) map[string]int64 {
	fields := map[string]int64{}
	b, err := os.ReadFile(path)
	if err != nil {
		return fields
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			fields[k] = n
		}
	}
	return fields
}
