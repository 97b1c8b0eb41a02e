package proxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"
)

// Real client byte streams: RFC 6455 section 5.7's examples, and an MQTT
// CONNECT (mosquitto_pub's) in a masked binary frame as MQTT.js sends it.
func wsSamples() [][]byte {
	connect := []byte("\x10\x1a\x00\x04MQTT\x04\x02\x00\x3c\x00\x0emosq-pub-12345")
	masked := append([]byte{0x82, 0x80 | byte(len(connect)), 0x37, 0xfa, 0x21, 0x3d}, connect...)
	unmask([4]byte{0x37, 0xfa, 0x21, 0x3d}, 0, masked[6:])
	return [][]byte{
		{0x81, 0x05, 'H', 'e', 'l', 'l', 'o'},                                      // unmasked text
		{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58},         // masked "Hello"
		{0x01, 0x03, 'H', 'e', 'l', 0x80, 0x02, 'l', 'o'},                          // fragmented
		{0x89, 0x05, 'H', 'e', 'l', 'l', 'o', 0x8a, 0x05, 'H', 'e', 'l', 'l', 'o'}, // ping, unmasked pong (paho)
		append([]byte{0x82, 0x7e, 0x01, 0x00}, make([]byte, 256)...),               // 256 bytes, 16-bit length
		{0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0},                                       // 64 KiB announced, cut short
		{0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0},                                    // top length bit set
		{0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2},                               // masked close 1000
		masked,
	}
}

// FuzzReadFrameHeader parses a stream of frames: every header it accepts
// is 2 to 14 bytes that are exactly the bytes consumed, with a length no
// int64 overflow can come from.
func FuzzReadFrameHeader(f *testing.F) {
	for _, s := range wsSamples() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		var hb [maxFrameHeader]byte
		for {
			before := r.Len()
			h, err := readFrameHeader(r, &hb)
			if err != nil {
				return
			}
			if h.size < 2 || h.size > maxFrameHeader || before-r.Len() != h.size || h.length < 0 {
				t.Fatalf("header %+v from %d bytes", h, before-r.Len())
			}
			if !bytes.Equal(hb[:h.size], b[len(b)-before:len(b)-before+h.size]) {
				t.Fatal("raw header differs from the bytes read")
			}
			if h.length > int64(r.Len()) {
				return
			}
			r.Seek(h.length, io.SeekCurrent)
		}
	})
}

// FuzzRelayFromClient runs arbitrary client bytes through the relay's
// client-to-backend direction: it never panics, never writes more than
// it read (plus nothing of its own), and what it writes is whole frames
// taken from the input.
func FuzzRelayFromClient(f *testing.F) {
	for _, s := range wsSamples() {
		f.Add(s, int64(0))
	}
	f.Add(wsSamples()[2], int64(4))
	f.Fuzz(func(t *testing.T, b []byte, limit int64) {
		out := &captureConn{}
		rl := newWSRelay(HTTPOptions{MaxMessageSize: limit}, slog.New(slog.DiscardHandler),
			&wsEnd{conn: &captureConn{}, r: bufio.NewReaderSize(bytes.NewReader(b), wsReadBuffer), wtok: make(chan struct{}, 1)},
			&wsEnd{conn: out, mask: true, wtok: make(chan struct{}, 1)})
		rl.lastPing = []byte("Hello") // so the sample's pong is tlsfront's
		rl.pump(rl.client, rl.backend, true)
		got := out.bytes()
		if len(got) > len(b) {
			t.Fatalf("wrote %d bytes from %d", len(got), len(b))
		}
		r := bytes.NewReader(got)
		var hb [maxFrameHeader]byte
		for r.Len() > 0 {
			h, err := readFrameHeader(r, &hb)
			if err != nil {
				t.Fatalf("output is not frames: %v", err)
			}
			if h.length > int64(r.Len()) {
				// Only the last frame may be cut, where the input ended.
				if !bytes.HasSuffix(b, got[len(got)-r.Len():]) {
					t.Fatal("a cut frame that is not the input's end")
				}
				return
			}
			r.Seek(h.length, io.SeekCurrent)
		}
	})
}

// captureConn is a net.Conn that keeps what is written to it and reads
// nothing.
type captureConn struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *captureConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}
func (c *captureConn) bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.buf.Bytes())
}
func (c *captureConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (c *captureConn) Close() error                     { return nil }
func (c *captureConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *captureConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *captureConn) SetDeadline(time.Time) error      { return nil }
func (c *captureConn) SetReadDeadline(time.Time) error  { return nil }
func (c *captureConn) SetWriteDeadline(time.Time) error { return nil }

func TestClosePayloadFitsAControlFrame(t *testing.T) {
	long := string(bytes.Repeat([]byte("é"), 100)) // 200 bytes of 2-byte runes
	p := closePayload(closeGoingAway, long)
	if len(p) > maxControlPayload || binary.BigEndian.Uint16(p) != closeGoingAway {
		t.Fatalf("payload of %d bytes", len(p))
	}
	if r := p[2:]; len(r)%2 != 0 {
		t.Fatalf("reason cut inside a rune: %d bytes", len(r))
	}
	for _, mask := range []bool{false, true} {
		f := appendControlFrame(nil, opClose, p, mask)
		var hb [maxFrameHeader]byte
		br := bytes.NewReader(f)
		h, err := readFrameHeader(br, &hb)
		if err != nil || h.masked != mask || h.opcode != opClose || !h.fin || h.length != int64(len(p)) {
			t.Fatalf("mask=%v: header %+v err %v", mask, h, err)
		}
		body := f[h.size:]
		if mask {
			unmask(h.key, 0, body)
		}
		if !bytes.Equal(body, p) {
			t.Fatalf("mask=%v: payload differs", mask)
		}
	}
}

// brokenClient is a client connection that can no longer be written to,
// whose last frame is still to be read: reading waits until a write has
// failed, then yields that frame, then the end of the stream.
type brokenClient struct {
	captureConn
	failed chan struct{}
	once   sync.Once
	rest   *bytes.Reader
}

func (c *brokenClient) Write([]byte) (int, error) {
	c.once.Do(func() { close(c.failed) })
	return 0, net.ErrClosed
}

func (c *brokenClient) Read(b []byte) (int, error) {
	<-c.failed
	return c.rest.Read(b)
}

// A client whose connection fails for writing still gets the frames it
// sent before forwarded, ahead of the close tlsfront sends the backend:
// an MQTT DISCONNECT lost there fires the client's will.
func TestFramesInFlightFromAFailedSideAreForwarded(t *testing.T) {
	disconnect := []byte{0x82, 0x82, 1, 2, 3, 4, 0xe0 ^ 1, 0x00 ^ 2} // masked binary frame: MQTT DISCONNECT
	client := &brokenClient{failed: make(chan struct{}), rest: bytes.NewReader(disconnect)}
	front, back := net.Pipe()
	defer back.Close()
	rl := newWSRelay(HTTPOptions{}, slog.New(slog.DiscardHandler),
		&wsEnd{conn: client, r: bufio.NewReader(client), wtok: make(chan struct{}, 1)},
		&wsEnd{conn: front, r: bufio.NewReader(front), mask: true, wtok: make(chan struct{}, 1)})
	done := make(chan struct{})
	rl.start(func(int64, int64) { close(done) })
	// The backend sends something; writing it to the client fails.
	back.SetDeadline(time.Now().Add(10 * time.Second))
	back.Write([]byte{0x82, 0x02, 0xd0, 0x00}) // PINGRESP
	br := bufio.NewReader(back)
	var hb [maxFrameHeader]byte
	h, err := readFrameHeader(br, &hb)
	if err != nil || h.opcode != opBinary || h.length != 2 {
		t.Fatalf("backend's first frame: %+v %v, want the client's DISCONNECT", h, err)
	}
	p := make([]byte, 2)
	io.ReadFull(br, p)
	unmask(h.key, 0, p)
	if p[0] != 0xe0 {
		t.Fatalf("payload % x, want the DISCONNECT", p)
	}
	h, err = readFrameHeader(br, &hb)
	if err != nil || h.opcode != opClose {
		t.Fatalf("then %+v %v, want a close frame", h, err)
	}
	cp := make([]byte, h.length)
	io.ReadFull(br, cp)
	unmask(h.key, 0, cp)
	if code := closeCodeOf(cp); code != closeGoingAway {
		t.Fatalf("close %d, want 1001", code)
	}
	back.Close()
	<-done
}
