//go:build !unix

package sdnotify

import (
	"errors"
	"syscall"
	"time"
)

// ReusePort needs a unix system.
func ReusePort(_, _ string, _ syscall.RawConn) error {
	return errors.New("reuse_port needs a unix system")
}

func monotonicUsec() int64 { return time.Now().UnixMicro() }
