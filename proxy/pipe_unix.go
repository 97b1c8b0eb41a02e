//go:build unix

package proxy

import (
	"crypto/tls"
	"net"
	"syscall"

	proxyproto "github.com/pires/go-proxyproto"
)

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
