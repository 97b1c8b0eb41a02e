package procstat

import (
	"os"
	"runtime"
	"syscall"
	"testing"
)

func TestReadsThisProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
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
}
