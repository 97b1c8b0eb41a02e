package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"unsafe"
)

// pinProcess restricts every thread of this process to cpu, like
// `taskset -c cpu -p` on each of them, gives each the niceness nice, and
// sets GOMAXPROCS to 1. Threads
// created later inherit the mask from the thread that creates them, and
// every existing thread has it, so the whole load generator stays on cpu.
// Children started afterwards inherit both: the niceness stays, the CPU is
// overridden by taskset for the proxy under test.
func pinProcess(cpu, nice int) error {
	var mask [16]uint64 // 1024 CPUs
	mask[cpu/64] = 1 << (cpu % 64)
	// Twice: a thread created while the first pass ran may have copied the
	// old mask.
	for range 2 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("list threads: %w", err)
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			_, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, uintptr(tid), unsafe.Sizeof(mask), uintptr(unsafe.Pointer(&mask)))
			if errno != 0 && errno != syscall.ESRCH {
				return fmt.Errorf("pin thread %d to cpu %d: %w", tid, cpu, errno)
			}
			// On Linux niceness is per thread, as is the mask.
			if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice); err != nil && err != syscall.ESRCH {
				return fmt.Errorf("set niceness %d on thread %d (needs root below 0; pass -nice 0): %w", nice, tid, err)
			}
		}
	}
	runtime.GOMAXPROCS(1)
	return nil
}
