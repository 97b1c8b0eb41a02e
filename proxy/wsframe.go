package proxy

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
)

// WebSocket frames (RFC 6455 section 5.2). The relay reads frame headers
// only: payloads pass through untouched, so extensions such as
// permessage-deflate work end to end. Control frames are the exception
// where the relay needs them: a pong answering tlsfront's own ping, and
// the close frames tlsfront writes itself.

const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA

	// maxFrameHeader is the longest header: 2 bytes, an 8-byte length,
	// a 4-byte masking key.
	maxFrameHeader = 14
	// maxControlPayload is the most a control frame may carry.
	maxControlPayload = 125
)

// Close codes tlsfront sends (RFC 6455 section 7.4.1). 1005, 1006 and 1015
// are reserved for reporting locally and never go on the wire.
const (
	closeGoingAway      = 1001
	closeProtocolError  = 1002
	closeMessageTooBig  = 1009
	closeInternalError  = 1011
	maxCloseReasonBytes = maxControlPayload - 2
)

// errFrameLength is a 64-bit payload length with its top bit set, which
// RFC 6455 forbids and no byte count can hold.
var errFrameLength = errors.New("websocket frame length has its most significant bit set")

// frameHeader is one parsed frame header.
type frameHeader struct {
	fin    bool
	opcode byte
	masked bool
	key    [4]byte
	length int64 // payload bytes
	size   int   // header bytes as they came on the wire
}

func (h *frameHeader) control() bool { return h.opcode&0x8 != 0 }

// readFrameHeader reads one frame header from r into buf, which then
// holds its raw bytes (buf[:h.size]) to be forwarded as they came. A
// stream that ends cleanly before the header's first byte returns io.EOF;
// one that ends inside it returns io.ErrUnexpectedEOF. Nothing but the
// length's top bit is checked: what the far end accepts is its business.
func readFrameHeader(r io.Reader, buf *[maxFrameHeader]byte) (frameHeader, error) {
	var h frameHeader
	if _, err := io.ReadFull(r, buf[:2]); err != nil {
		return h, err
	}
	h.fin = buf[0]&0x80 != 0
	h.opcode = buf[0] & 0x0f
	h.masked = buf[1]&0x80 != 0
	n := 2
	switch l := buf[1] & 0x7f; l {
	case 126:
		if _, err := io.ReadFull(r, buf[n:n+2]); err != nil {
			return h, noEOF(err)
		}
		h.length = int64(binary.BigEndian.Uint16(buf[n:]))
		n += 2
	case 127:
		if _, err := io.ReadFull(r, buf[n:n+8]); err != nil {
			return h, noEOF(err)
		}
		v := binary.BigEndian.Uint64(buf[n:])
		if v>>63 != 0 {
			return h, errFrameLength
		}
		h.length = int64(v)
		n += 8
	default:
		h.length = int64(l)
	}
	if h.masked {
		if _, err := io.ReadFull(r, buf[n:n+4]); err != nil {
			return h, noEOF(err)
		}
		copy(h.key[:], buf[n:n+4])
		n += 4
	}
	h.size = n
	return h, nil
}

// noEOF turns a clean end into an unexpected one: the stream ended
// inside a frame.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// unmask XORs b with key in place; pos is b's offset in the payload.
func unmask(key [4]byte, pos int, b []byte) {
	for i := range b {
		b[i] ^= key[(pos+i)&3]
	}
}

// appendControlFrame appends a whole control frame with payload p (at
// most 125 bytes). Frames toward a server (the backend) must be masked;
// frames toward a client must not be.
func appendControlFrame(dst []byte, op byte, p []byte, mask bool) []byte {
	p = p[:min(len(p), maxControlPayload)]
	b1 := byte(len(p))
	if mask {
		b1 |= 0x80
	}
	dst = append(dst, 0x80|op, b1)
	if !mask {
		return append(dst, p...)
	}
	var key [4]byte
	rand.Read(key[:]) // never fails (crypto/rand); an unpredictable key, as RFC 6455 asks
	dst = append(dst, key[:]...)
	start := len(dst)
	dst = append(dst, p...)
	unmask(key, 0, dst[start:])
	return dst
}

// closePayload is a close frame's payload: the code, then a reason cut
// to fit a control frame (on a UTF-8 boundary).
func closePayload(code uint16, reason string) []byte {
	if len(reason) > maxCloseReasonBytes {
		cut := maxCloseReasonBytes
		for cut > 0 && reason[cut]&0xc0 == 0x80 {
			cut--
		}
		reason = reason[:cut]
	}
	p := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(reason)), code)
	return append(p, reason...)
}
