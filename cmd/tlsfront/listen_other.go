//go:build !unix

package main

import (
	"errors"
	"syscall"
	"time"
)

func reusePort(_, _ string, _ syscall.RawConn) error {
	return errors.New("reuse_port needs a unix system")
}

func monotonicUsec() int64 { return time.Now().UnixMicro() }
