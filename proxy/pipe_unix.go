//go:build unix

package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"sync"
	"syscall"

	proxyproto "github.com/pires/go-proxyproto"
)

// readRaw waits for the plain socket behind raw to be readable, then takes
// a big buffer into *buf and reads into it, so that a quiet socket holds
// no buffer. It returns io.EOF at the end of the stream; a read deadline
// set on the socket's net.Conn applies to the wait.
func readRaw(raw syscall.RawConn, buf **[]byte) (int, error) {
	op := lazyReads.Get().(*lazyRead)
	op.buf, op.n, op.errno = *buf, 0, 0
	err := raw.Read(op.fn)
	n, errno := op.n, op.errno
	*buf, op.buf = op.buf, nil
	lazyReads.Put(op)
	if err == nil && errno != 0 {
		err = os.NewSyscallError("read", errno)
	}
	if n == 0 && err == nil {
		err = io.EOF
	}
	if n == 0 && *buf != nil {
		putBuf(*buf)
		*buf = nil
	}
	return n, err
}

// lazyRead is readRaw's callback and its state, pooled with the callback
// bound once (as rawOp in rawio.go): a closure per read would allocate.
type lazyRead struct {
	fn    func(fd uintptr) bool
	buf   *[]byte
	n     int
	errno syscall.Errno
}

var lazyReads = sync.Pool{New: func() any {
	op := new(lazyRead)
	op.fn = op.do
	return op
}}

func (op *lazyRead) do(fd uintptr) bool {
	if op.buf == nil {
		op.buf = getBuf(false)
	}
	for {
		n, errno := sysRead(fd, *op.buf)
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			// Not readable yet: give the buffer back while we wait.
			putBuf(op.buf)
			op.buf = nil
			return false
		}
		op.n, op.errno = n, errno
		return true
	}
}

// plainSocketOf returns c's socket if c is one with nothing buffered
// above it (a *net.TCPConn or *net.UnixConn), else nil.
func plainSocketOf(c net.Conn) syscall.RawConn {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return nil
	}
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// socketOf returns the socket under c's wrappers (TLS, our accepted conn,
// a PROXY header reader), or nil if there is none. It is used only to
// wait for readability, never to read: the wrappers may hold bytes.
func socketOf(c net.Conn) syscall.RawConn {
	for {
		switch v := c.(type) {
		case *tls.Conn:
			c = v.NetConn()
		case *conn:
			if v.rc != nil {
				return v.rc
			}
			c = v.Conn
		case *proxyproto.Conn:
			c = v.Raw()
		case syscall.Conn:
			raw, err := v.SyscallConn()
			if err != nil {
				return nil
			}
			return raw
		default:
			return nil
		}
	}
}

// waitReadable waits until the socket behind raw has bytes to read, has
// reached the end of its stream or failed, without reading. A read
// deadline set on the socket's net.Conn applies.
func waitReadable(raw syscall.RawConn) error {
	return raw.Read(func(fd uintptr) bool {
		// Peek rather than trust the poller's last word: the socket may
		// hold bytes that arrived before we started waiting.
		return sysPeek(fd)
	})
}
