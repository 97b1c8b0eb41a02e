package proxy

import (
	"crypto/tls"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// conn is an accepted connection as the TLS stack sees it. While the
// handshake runs it remembers what the client sent (see connHandshake);
// it releases what admission gave it exactly once, whoever closes it.
// It lives as long as the connection, idle or not, so it holds only what
// is needed after the handshake.
type conn struct {
	net.Conn
	// rc is Conn's socket when Conn is a plain one (nothing buffered
	// above it): reads and writes then go through rawRead and rawWrite.
	rc syscall.RawConn
	// hs is set for the handshake and dropped after it (endHandshake).
	hs *connHandshake
	// served is the certificate this handshake served, when the listener
	// records it (recordServed); nil on resumption.
	served *tls.Certificate
	// session is set once the connection is handed to net/http, which
	// sees only the *tls.Conn over it.
	session *session

	// bufferedOnly makes reads fail as under an expired deadline, without
	// touching the socket, so that a reader learns whether crypto/tls
	// holds more (half.readBuffered). Set and cleared around one Read, on
	// the reading goroutine.
	bufferedOnly bool

	closeOnce sync.Once
	onClose   func()
}

// connHandshake is what a conn keeps for the handshake's reports: the
// first bytes the client sent (to tell a plain-text client from a TLS
// one), the last ones, and the parsed ClientHello. An idle connection
// keeps none of it.
type connHandshake struct {
	head    [8]byte
	headLen int
	// tail is the last bytes read: a TLS 1.3 client built on OpenSSL sends
	// its rejection alert in plain text (a 7-byte record), which Go reports
	// only as a bad record MAC; classify reads the alert from here.
	tail    [7]byte
	tailLen int
	// helloBuf, when set, keeps the first bytes of the handshake (the
	// ClientHello) for a hello crypto/tls refuses to parse: what it asked
	// for is then read from the raw bytes.
	helloBuf *[helloCaptureLen]byte
	helloLen int
	hello    *tls.ClientHelloInfo
	// probe: the hello was tlsfront's own self-probe.
	probe bool
	// pending holds bytes read ahead by awaitHello, handed to the
	// first Read.
	pending []byte
	// done stops the recording: after the handshake the bytes are the
	// application's, and copying them costs every read. Set only on the
	// rare state endHandshake keeps for bytes read ahead and not yet read.
	done bool
}

// endHandshake drops the handshake's state: after it the bytes are the
// application's. Bytes awaitHello read ahead that the handshake did not
// consume (a client that does not wait for our answer) stay for Read.
// It must not run concurrently with Read.
func (c *conn) endHandshake() {
	if c.hs != nil && len(c.hs.pending) > 0 {
		c.hs = &connHandshake{pending: c.hs.pending, done: true}
		return
	}
	c.hs = nil
}

var firstReadPool = sync.Pool{New: func() any { b := make([]byte, 1500); return &b }}

// awaitHello waits until the client's first TLS record, its ClientHello,
// has arrived whole, or timeout passes. The bytes read stay for the TLS
// stack. A client whose first bytes are not a TLS handshake record is not
// waited for further: the TLS stack then fails it, and its first bytes
// say why. A hello longer than one record (none seen in practice) is
// waited for up to its first record.
func (c *conn) awaitHello(timeout time.Duration) error {
	c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	// Whatever the first segment carried, as the TLS stack's own first
	// read would take it: a reader that takes less would leave a
	// plain-text client's request unread, and closing over unread bytes
	// resets the connection instead of closing it.
	bp := firstReadPool.Get().(*[]byte)
	defer firstReadPool.Put(bp)
	hs := c.hs
	n, err := c.readWire(*bp)
	hs.pending = append(hs.pending[:0], (*bp)[:n]...)
	if n == 0 {
		return err
	}
	// The rest of the record is appended as it arrives: memory follows
	// what the client sent, at most one record.
	for want := helloRecordLen(hs.pending); len(hs.pending) < want; want = helloRecordLen(hs.pending) {
		n, err := c.readWire((*bp)[:min(len(*bp), want-len(hs.pending))])
		hs.pending = append(hs.pending, (*bp)[:n]...)
		if err != nil {
			return err
		}
	}
	return nil
}

// helloRecordLen is how many bytes the first TLS record starting b takes,
// or 0 when b does not start one (or one no TLS stack accepts): there is
// nothing to wait for then.
func helloRecordLen(b []byte) int {
	const maxRecord = 16384 + 2048 // RFC 8446, 5.2: a record's largest ciphertext
	if len(b) == 0 || b[0] != 0x16 {
		return 0
	}
	if len(b) < 5 {
		return 5
	}
	n := int(b[3])<<8 | int(b[4])
	if b[1] != 3 || n > maxRecord {
		return 0
	}
	return 5 + n
}

func (c *conn) Read(b []byte) (int, error) {
	if hs := c.hs; hs != nil && len(hs.pending) > 0 {
		n := copy(b, hs.pending)
		if hs.pending = hs.pending[n:]; len(hs.pending) == 0 {
			hs.pending = nil // an idle connection keeps no copy of its hello
		}
		return n, nil
	}
	return c.readWire(b)
}

// Write writes to the socket (see rawio.go).
func (c *conn) Write(b []byte) (int, error) {
	if c.rc != nil {
		return rawWrite(c.rc, c.Conn, b)
	}
	return c.Conn.Write(b)
}

// readWire reads from the socket (see rawio.go), keeping what the
// handshake's reports need.
func (c *conn) readWire(b []byte) (n int, err error) {
	if c.bufferedOnly {
		// What an expired deadline returns, unwrapped: crypto/tls
		// takes it as temporary and keeps the connection usable.
		return 0, os.ErrDeadlineExceeded
	}
	if c.rc != nil {
		n, err = rawRead(c.rc, c.Conn, b)
	} else {
		n, err = c.Conn.Read(b)
	}
	if hs := c.hs; n > 0 && hs != nil && !hs.done {
		if hs.headLen < len(hs.head) {
			hs.headLen += copy(hs.head[hs.headLen:], b[:n])
		}
		hs.keepTail(b[:n])
		if hs.helloBuf != nil && hs.helloLen < len(hs.helloBuf) {
			hs.helloLen += copy(hs.helloBuf[hs.helloLen:], b[:n])
		}
	}
	return n, err
}

// helloCaptureLen bounds the ClientHello bytes kept: real hellos, post-
// quantum key shares included, fit; a longer one is not read back.
const helloCaptureLen = 4096

// helloBytes returns the start of what the client sent, up to
// helloCaptureLen bytes, while the capture is on.
func (c *conn) helloBytes() []byte {
	if c.hs == nil || c.hs.helloBuf == nil {
		return nil
	}
	return c.hs.helloBuf[:c.hs.helloLen]
}

func (hs *connHandshake) keepTail(b []byte) {
	if len(b) >= len(hs.tail) {
		hs.tailLen = copy(hs.tail[:], b[len(b)-len(hs.tail):])
		return
	}
	keep := min(hs.tailLen, len(hs.tail)-len(b))
	copy(hs.tail[:], hs.tail[hs.tailLen-keep:hs.tailLen])
	hs.tailLen = keep + copy(hs.tail[keep:], b)
}

// lastBytes returns the last bytes read during the handshake, up to 7.
func (c *conn) lastBytes() []byte {
	if c.hs == nil {
		return nil
	}
	return c.hs.tail[:c.hs.tailLen]
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
	if c.hs == nil {
		return nil
	}
	return append([]byte(nil), c.hs.head[:c.hs.headLen]...)
}
