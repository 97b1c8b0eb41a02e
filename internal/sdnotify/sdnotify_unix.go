//go:build unix

package sdnotify

import (
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ReusePort lets several processes bind the same address, so a new
// tlsfront can take over a port while the old one drains.
func ReusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, as systemd wants it.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return time.Now().UnixMicro()
	}
	return ts.Sec*1e6 + ts.Nsec/1e3
}
