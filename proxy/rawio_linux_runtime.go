//go:build linux && (race || 386)

package proxy

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// The watcher's system calls through the runtime, as the data path's are
// under the race detector and on 386 (rawio_unix.go says why).

func sysEpollWait(epfd uintptr, events []unix.EpollEvent) (int, syscall.Errno) {
	n, err := unix.EpollWait(int(epfd), events, 0)
	return n, errnoOf(err)
}

func sysEpollCtl(epfd uintptr, op int, fd uintptr, ev *unix.EpollEvent) syscall.Errno {
	return errnoOf(unix.EpollCtl(int(epfd), op, int(fd), ev))
}

func sysPending(fd uintptr) int {
	n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	if err != nil {
		return 0
	}
	return n
}
