//go:build !unix

package proxy

import (
	"net"
	"syscall"
)

// rawReadLazy is never called here: plainSocketOf finds no socket.
func rawReadLazy(syscall.RawConn, net.Conn, **[]byte) (int, error) {
	panic("proxy: raw reads need unix")
}

// plainSocketOf returns nil: every direction reads through net.Conn.
func plainSocketOf(net.Conn) syscall.RawConn { return nil }

// socketOf returns nil: there is no watcher to park in.
func socketOf(net.Conn) syscall.RawConn { return nil }

// waitReadable is never called here: without a socket no direction waits
// for readability.
func waitReadable(syscall.RawConn) error { panic("proxy: waiting for readability needs unix") }

// rawRead is never called here: plainSocketOf finds no socket.
func rawRead(_ syscall.RawConn, c net.Conn, b []byte) (int, error) { return c.Read(b) }

// rawWrite is never called here: plainSocketOf finds no socket.
func rawWrite(_ syscall.RawConn, c net.Conn, b []byte) (int, error) { return c.Write(b) }
