//go:build linux

package procstat

import (
	"os"
	"syscall"
	"testing"
)

func TestReadsThisProcess(t *testing.T) {
	st, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if want := syscall.Getpgrp(); st.Pgrp != want {
		t.Errorf("process group %d, want %d", st.Pgrp, want)
	}
	if st.CPU < 0 {
		t.Errorf("CPU %v", st.CPU)
	}
	if rss, hwm := Mem(os.Getpid()); rss <= 0 || hwm < rss {
		t.Errorf("VmRSS %d KiB, VmHWM %d KiB", rss, hwm)
	}
	// A thread that sleeps in the kernel is switched out.
	before := Switches(os.Getpid())
	for range 3 {
		syscall.Nanosleep(&syscall.Timespec{Nsec: 1e6}, nil)
	}
	if after := Switches(os.Getpid()); after <= before {
		t.Errorf("context switches %d after three sleeps, %d before", after, before)
	}
}
