//go:build unix

package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// Raw socket I/O.
//
// The data path reads and writes its sockets through their RawConn with
// system calls the Go runtime is not told about (sysRead, sysWrite),
// instead of through net.Conn. Why: the runtime's monitor thread (sysmon)
// sleeps deeply whenever every P is idle, and the next system call made
// through the runtime (entersyscall) wakes it; see golang/go#18236. A
// proxy at light load is idle between almost any two messages, so every
// message paid a futex wake and sysmon's own switches, and sysmon, having
// used little CPU, preempted the goroutine carrying the message when both
// ran on one core. Measured in the benchmark's latency test (1 KiB round
// trips, proxy pinned to one core): 5.6 thread switches and 112 µs of
// proxy CPU per round trip against HAProxy's 2.0 and 80.
//
// The calls made here never block: the sockets are non-blocking and a
// call that would block returns EAGAIN, after which the RawConn waits in
// the netpoller as net.Conn does, honouring deadlines and Close. Errors
// are what net.Conn returns: *net.OpError around the system call's error,
// os.ErrDeadlineExceeded or net.ErrClosed; io.EOF at the end of the
// stream.

// rawOp is one read or write through a RawConn. The callback the RawConn
// calls is built once per pooled op: a closure per call would allocate.
type rawOp struct {
	fn func(fd uintptr) bool
	p  []byte
	// lazy reads go into buf, a pooled buffer taken once the socket is
	// readable and given back while it is not (see rawReadLazy).
	lazy  bool
	buf   *[]byte
	n     int
	errno syscall.Errno
	write bool
}

var rawOps = sync.Pool{New: func() any {
	op := new(rawOp)
	op.fn = op.do
	return op
}}

func getRawOp() *rawOp { return rawOps.Get().(*rawOp) }

// free clears op and returns it to the pool.
func (op *rawOp) free() {
	fn := op.fn
	*op = rawOp{fn: fn}
	rawOps.Put(op)
}

func (op *rawOp) do(fd uintptr) bool {
	if op.lazy && op.buf == nil {
		op.buf = getBuf(false)
		op.p = *op.buf
	}
	for {
		var n int
		var errno syscall.Errno
		if op.write {
			if len(op.p) == 0 {
				return true
			}
			n, errno = sysWrite(fd, op.p)
		} else {
			n, errno = sysRead(fd, op.p)
		}
		switch errno {
		case 0:
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if op.lazy {
				// Not readable yet: give the buffer back while we wait.
				putBuf(op.buf)
				op.buf, op.p = nil, nil
			}
			return false
		default:
			op.errno = errno
			return true
		}
		op.n += n
		if !op.write {
			return true
		}
		op.p = op.p[n:]
	}
}

// rawRead reads into b from the socket behind rc, whose net.Conn is c, as
// c.Read would.
func rawRead(rc syscall.RawConn, c net.Conn, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	op := getRawOp()
	defer op.free()
	op.p = b
	return rawDo(rc, c, op)
}

// rawReadLazy is rawRead into *buf, a big pooled buffer taken only once
// the socket is readable, so that a quiet socket holds none: *buf is nil
// when nothing was read.
func rawReadLazy(rc syscall.RawConn, c net.Conn, buf **[]byte) (int, error) {
	op := getRawOp()
	defer op.free()
	op.lazy, op.buf = true, *buf
	if op.buf != nil {
		op.p = *op.buf
	}
	n, err := rawDo(rc, c, op)
	*buf = op.buf
	if n == 0 && *buf != nil {
		putBuf(*buf)
		*buf = nil
	}
	return n, err
}

// rawWrite writes all of b to the socket behind rc, whose net.Conn is c,
// as c.Write would.
func rawWrite(rc syscall.RawConn, c net.Conn, b []byte) (int, error) {
	op := getRawOp()
	defer op.free()
	op.p, op.write = b, true
	return rawDo(rc, c, op)
}

// rawDo runs op through rc and returns what c would have.
func rawDo(rc syscall.RawConn, c net.Conn, op *rawOp) (int, error) {
	var err error
	name := "read"
	if op.write {
		name = "write"
		err = rc.Write(op.fn)
	} else {
		err = rc.Read(op.fn)
	}
	switch {
	case err != nil:
		// The RawConn says "raw-read": say what net.Conn says.
		var oe *net.OpError
		if errors.As(err, &oe) {
			err = oe.Err
		}
		return op.n, opError(c, name, err)
	case op.errno != 0:
		return op.n, opError(c, name, os.NewSyscallError(name, op.errno))
	case op.n == 0 && !op.write:
		return 0, io.EOF
	}
	return op.n, nil
}

func opError(c net.Conn, op string, err error) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
