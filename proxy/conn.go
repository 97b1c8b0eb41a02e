package proxy

import (
	"crypto/tls"
	"net"
	"sync"
)

// conn is an accepted connection as the TLS stack sees it. It remembers the
// first bytes the client sent (to tell a plain-text client from a TLS one)
// and the parsed ClientHello (for failure reports), and releases what
// admission gave it exactly once, whoever closes it.
type conn struct {
	net.Conn
	head    [8]byte
	headLen int
	hello   *tls.ClientHelloInfo

	closeOnce sync.Once
	onClose   func()
}

func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if c.headLen < len(c.head) && n > 0 {
		c.headLen += copy(c.head[c.headLen:], b[:n])
	}
	return n, err
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		if c.onClose != nil {
			c.onClose()
		}
	})
	return err
}

// firstBytes returns a copy of what the client sent first, up to 8 bytes.
func (c *conn) firstBytes() []byte {
	return append([]byte(nil), c.head[:c.headLen]...)
}
