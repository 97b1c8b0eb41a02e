//go:build !unix

package proxy

import (
	"net"
	"sync/atomic"
	"time"
)

// copyFromPlain copies from a plain socket. Without unix raw reads it
// blocks on a small buffer, as copyFromTLS does.
func copyFromPlain(dst net.Conn, src net.Conn, idle time.Duration, lastActive *atomic.Int64) (int64, error) {
	return copyFromTLS(dst, src, idle, lastActive)
}
