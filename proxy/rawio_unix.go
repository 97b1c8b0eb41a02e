//go:build unix && (!linux || race || 386)

package proxy

import "syscall"

// sysRead is read(2) through the runtime. The calls are made without
// telling the runtime only on Linux (rawio_linux.go), where tlsfront is
// run and measured, and not on 386, whose socket calls go through
// socketcall(2). Nor under the race detector: it learns from the
// runtime's system calls that a write to a socket happens before the
// read that gets its bytes, and without that it reports races between a
// test's setup and the server reading what the test then sent.
func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), p)
	return n, errnoOf(err)
}

// sysWrite is write(2).
func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), p)
	return n, errnoOf(err)
}

// sysPeek reports whether the socket has a byte to read, has reached the
// end of its stream or failed, without reading.
func sysPeek(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err != syscall.EAGAIN
}

func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	if errno, ok := err.(syscall.Errno); ok {
		return errno
	}
	return syscall.EIO
}
