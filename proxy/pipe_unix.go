//go:build unix

package proxy

import (
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// copyFromPlain copies from a plain socket. It waits for the socket to be
// readable before taking a buffer, so a quiet backend holds none.
func copyFromPlain(dst net.Conn, src net.Conn, idle time.Duration, lastActive *atomic.Int64) (written int64, err error) {
	sc, ok := src.(syscall.Conn)
	if !ok {
		return copyFromTLS(dst, src, idle, lastActive)
	}
	raw, rcErr := sc.SyscallConn()
	if rcErr != nil {
		return copyFromTLS(dst, src, idle, lastActive)
	}
	for {
		if idle > 0 {
			src.SetReadDeadline(time.Now().Add(idle))
		}
		var buf *[]byte
		var n int
		var rerr error
		err := raw.Read(func(fd uintptr) bool {
			if buf == nil {
				buf = bigPool.Get().(*[]byte)
			}
			n, rerr = syscall.Read(int(fd), *buf)
			if n < 0 {
				n = 0
			}
			if rerr == syscall.EAGAIN {
				// Not readable yet: give the buffer back while we wait.
				bigPool.Put(buf)
				buf = nil
				return false
			}
			return true
		})
		if err == nil {
			err = rerr
		}
		if n > 0 {
			lastActive.Store(time.Now().UnixNano())
			w, werr := dst.Write((*buf)[:n])
			written += int64(w)
			bigPool.Put(buf)
			if werr != nil {
				return written, werr
			}
			continue
		}
		if buf != nil {
			bigPool.Put(buf)
		}
		if err != nil {
			if stillActive(err, idle, lastActive) {
				continue
			}
			return written, err
		}
		return written, nil // n == 0 and no error: EOF
	}
}
