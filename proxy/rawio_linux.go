//go:build linux && !race && !386

package proxy

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sysRead is read(2) without telling the runtime (see rawio.go).
func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	r, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(r), 0
}

// sysWrite is send(2) without telling the runtime (see rawio.go), with
// MSG_NOSIGNAL: a peer that went away is an EPIPE, not a signal.
func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	r, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), syscall.MSG_NOSIGNAL, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), 0
}

// sysPeek reports whether the socket has a byte to read, has reached the
// end of its stream or failed, without reading (see rawio.go).
func sysPeek(fd uintptr) bool {
	var b [1]byte
	_, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1, syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	return errno != syscall.EAGAIN
}

// sysEpollWait is epoll_wait(2) with a zero timeout, which never blocks,
// without telling the runtime (see rawio.go): the watcher makes it for
// every parked connection that wakes.
func sysEpollWait(epfd uintptr, events []unix.EpollEvent) (int, syscall.Errno) {
	r, _, errno := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, epfd, uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), 0
}

// sysEpollCtl is epoll_ctl(2) without telling the runtime (see rawio.go).
func sysEpollCtl(epfd uintptr, op int, fd uintptr, ev *unix.EpollEvent) syscall.Errno {
	_, _, errno := syscall.RawSyscall6(unix.SYS_EPOLL_CTL, epfd, uintptr(op), fd, uintptr(unsafe.Pointer(ev)), 0, 0)
	return errno
}

// sysPending is how many bytes the socket holds unread (SIOCINQ), or 0
// if that cannot be told, without telling the runtime (see rawio.go).
func sysPending(fd uintptr) int {
	var n int32
	if _, _, errno := syscall.RawSyscall(unix.SYS_IOCTL, fd, unix.SIOCINQ, uintptr(unsafe.Pointer(&n))); errno != 0 {
		return 0
	}
	return int(n)
}
