package ja4

import (
	"errors"
	"fmt"
)

// Errors from FromClientHello. Both are wrapped with where parsing stopped.
var (
	// ErrIncomplete means the bytes end before the ClientHello does;
	// reading more from the connection may help.
	ErrIncomplete = errors.New("ja4: incomplete ClientHello")
	// ErrMalformed means the bytes are not a ClientHello; more bytes will
	// not help.
	ErrMalformed = errors.New("ja4: malformed ClientHello")
)

const (
	recordTypeHandshake = 0x16
	typeClientHello     = 0x01
	recordHeaderLen     = 5
	handshakeHeaderLen  = 4
	// maxRecordLen is the largest TLSCiphertext record (RFC 8446 5.2).
	maxRecordLen = 1<<14 + 256
)

// FromClientHello returns the JA4 fingerprint of a ClientHello given as raw
// bytes: either as read from the connection (one or more TLS handshake
// records, starting with 0x16) or as a bare handshake message (starting
// with 0x01). Bytes after the ClientHello are ignored.
//
// raw is untrusted: every length is checked against the bytes present, and
// nothing is allocated in proportion to a length the peer claims. Malformed
// extension bodies (e.g. a truncated ALPN list) count as present but
// empty, as other JA4 implementations do; the outer structure must be
// sound. Errors wrap [ErrIncomplete] or [ErrMalformed].
func FromClientHello(raw []byte) (string, error) {
	h, err := parseClientHello(raw)
	if err != nil {
		return "", err
	}
	return h.compute(), nil
}

// RawFromClientHello is [FromClientHello] in the JA4_r form.
func RawFromClientHello(raw []byte) (string, error) {
	h, err := parseClientHello(raw)
	if err != nil {
		return "", err
	}
	return h.raw(), nil
}

// ServerName returns the host name a raw ClientHello (as FromClientHello
// takes it) asks for in its server_name extension, "" when it asks for
// none. It is for hellos crypto/tls refuses, which never reach
// ClientHelloInfo: one whose name ends in a dot, for instance. The name is
// returned as sent, unchecked.
func ServerName(raw []byte) (string, error) {
	h, err := parseClientHello(raw)
	if err != nil {
		return "", err
	}
	return string(h.serverName), nil
}

func parseClientHello(raw []byte) (hello, error) {
	msg, err := handshakeMessage(raw)
	if err != nil {
		return hello{}, err
	}
	return parseHelloBody(msg)
}

// handshakeMessage returns the body of the first handshake message, after
// the 4-byte header, joining records when the client fragmented it.
func handshakeMessage(raw []byte) ([]byte, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("no bytes: %w", ErrIncomplete)
	}
	switch raw[0] {
	case typeClientHello:
		return bareMessage(raw)
	case recordTypeHandshake:
	default:
		if raw[0]&0x80 != 0 {
			// An SSL 2.0 style hello: a two-byte length with the top bit
			// set. It has no extensions, so no JA4 to speak of.
			return nil, fmt.Errorf("SSL 2.0 format hello (first byte %#02x): %w", raw[0], ErrMalformed)
		}
		return nil, fmt.Errorf("first byte %#02x is neither a handshake record nor a ClientHello: %w", raw[0], ErrMalformed)
	}

	// Fast path: the whole message sits in the first record, which is what
	// nearly every client sends.
	first, rest, err := nextRecord(raw)
	if err != nil {
		return nil, err
	}
	if len(first) >= handshakeHeaderLen {
		n := int(first[1])<<16 | int(first[2])<<8 | int(first[3])
		if first[0] == typeClientHello && len(first)-handshakeHeaderLen >= n {
			return first[handshakeHeaderLen : handshakeHeaderLen+n], nil
		}
	}

	// Slow path: collect fragments. The message can never be longer than
	// the bytes we were given, which bounds the buffer.
	buf := append([]byte(nil), first...)
	for {
		if len(buf) >= handshakeHeaderLen {
			if buf[0] != typeClientHello {
				return nil, fmt.Errorf("handshake message type %d is not ClientHello: %w", buf[0], ErrMalformed)
			}
			n := int(buf[1])<<16 | int(buf[2])<<8 | int(buf[3])
			if len(buf)-handshakeHeaderLen >= n {
				return buf[handshakeHeaderLen : handshakeHeaderLen+n], nil
			}
		}
		if len(rest) == 0 {
			return nil, fmt.Errorf("record stream ends inside the ClientHello: %w", ErrIncomplete)
		}
		var frag []byte
		frag, rest, err = nextRecord(rest)
		if err != nil {
			return nil, err
		}
		buf = append(buf, frag...)
	}
}

// nextRecord splits one handshake record off b.
func nextRecord(b []byte) (payload, rest []byte, err error) {
	if len(b) < recordHeaderLen {
		return nil, nil, fmt.Errorf("record header: %w", ErrIncomplete)
	}
	if b[0] != recordTypeHandshake {
		return nil, nil, fmt.Errorf("record type %d inside the ClientHello: %w", b[0], ErrMalformed)
	}
	n := int(b[3])<<8 | int(b[4])
	if n > maxRecordLen {
		return nil, nil, fmt.Errorf("record length %d: %w", n, ErrMalformed)
	}
	if n == 0 {
		// An empty handshake record is forbidden (RFC 8446 5.1) and would
		// otherwise let a peer make us loop over nothing.
		return nil, nil, fmt.Errorf("empty handshake record: %w", ErrMalformed)
	}
	if len(b)-recordHeaderLen < n {
		return nil, nil, fmt.Errorf("record of %d bytes, %d present: %w", n, len(b)-recordHeaderLen, ErrIncomplete)
	}
	return b[recordHeaderLen : recordHeaderLen+n], b[recordHeaderLen+n:], nil
}

func bareMessage(raw []byte) ([]byte, error) {
	if len(raw) < handshakeHeaderLen {
		return nil, fmt.Errorf("handshake header: %w", ErrIncomplete)
	}
	n := int(raw[1])<<16 | int(raw[2])<<8 | int(raw[3])
	if len(raw)-handshakeHeaderLen < n {
		return nil, fmt.Errorf("ClientHello of %d bytes, %d present: %w", n, len(raw)-handshakeHeaderLen, ErrIncomplete)
	}
	return raw[handshakeHeaderLen : handshakeHeaderLen+n], nil
}

// parseHelloBody reads a ClientHello body (RFC 8446 4.1.2). Lists stay
// views into msg except the small ones JA4 needs as numbers.
func parseHelloBody(msg []byte) (hello, error) {
	h := hello{alpn0: '0', alpn1: '0'}
	s := bytesReader(msg)
	var legacyVersion uint16
	var cipherBytes, ignored bytesReader
	if !s.u16(&legacyVersion) || !s.skip(32) {
		return h, fmt.Errorf("version and random: %w", ErrMalformed)
	}
	if !s.vec8(&ignored) {
		return h, fmt.Errorf("session id: %w", ErrMalformed)
	}
	if !s.vec16(&cipherBytes) || len(cipherBytes)%2 != 0 {
		return h, fmt.Errorf("cipher suites: %w", ErrMalformed)
	}
	if !s.vec8(&ignored) {
		return h, fmt.Errorf("compression methods: %w", ErrMalformed)
	}
	h.ciphers = cipherBytes.u16s(nil)
	h.version = legacyVersion
	if len(s) == 0 {
		// A hello may end before the extensions block (pre-TLS 1.3).
		return h, nil
	}
	var exts bytesReader
	if !s.vec16(&exts) || len(s) != 0 {
		return h, fmt.Errorf("extensions block: %w", ErrMalformed)
	}
	for len(exts) > 0 {
		var typ uint16
		var data bytesReader
		if !exts.u16(&typ) || !exts.vec16(&data) {
			return h, fmt.Errorf("extension %d: %w", len(h.extensions), ErrMalformed)
		}
		h.extensions = append(h.extensions, typ)
		switch typ {
		case extServerName:
			h.sni = true
			// server_name_list of (name_type, opaque name<1..2^16-1>);
			// the first host_name (type 0) is the name, as in crypto/tls.
			var list bytesReader
			if data.vec16(&list) {
				for len(list) > 0 && h.serverName == nil {
					var name bytesReader
					typ := list[0]
					list = list[1:]
					if !list.vec16(&name) {
						break
					}
					if typ == 0 {
						h.serverName = name
					}
				}
			}
		case extALPN:
			var list, first bytesReader
			if data.vec16(&list) && list.vec8(&first) {
				h.alpn0, h.alpn1 = alpnChars(first)
			}
		case extSignatureAlgs:
			var list bytesReader
			if data.vec16(&list) {
				h.signatures = list.u16s(nil)
			}
		case extSupportedVersions:
			var list bytesReader
			h.version = 0
			if data.vec8(&list) {
				for _, v := range list.u16s(nil) {
					if !isGREASE(v) && v > h.version {
						h.version = v
					}
				}
			}
		}
	}
	return h, nil
}

// bytesReader consumes big-endian fields from the front of a byte slice.
// Each method reports whether the field was there in full and consumes
// nothing when it was not.
type bytesReader []byte

func (r *bytesReader) skip(n int) bool {
	if len(*r) < n {
		return false
	}
	*r = (*r)[n:]
	return true
}

func (r *bytesReader) u16(v *uint16) bool {
	if len(*r) < 2 {
		return false
	}
	*v = uint16((*r)[0])<<8 | uint16((*r)[1])
	*r = (*r)[2:]
	return true
}

func (r *bytesReader) vec8(out *bytesReader) bool {
	if len(*r) < 1 || len(*r)-1 < int((*r)[0]) {
		return false
	}
	n := int((*r)[0])
	*out = (*r)[1 : 1+n]
	*r = (*r)[1+n:]
	return true
}

func (r *bytesReader) vec16(out *bytesReader) bool {
	if len(*r) < 2 {
		return false
	}
	n := int((*r)[0])<<8 | int((*r)[1])
	if len(*r)-2 < n {
		return false
	}
	*out = (*r)[2 : 2+n]
	*r = (*r)[2+n:]
	return true
}

// u16s decodes the whole slice as big-endian uint16s; a trailing odd byte
// is ignored.
func (r bytesReader) u16s(dst []uint16) []uint16 {
	for i := 0; i+1 < len(r); i += 2 {
		dst = append(dst, uint16(r[i])<<8|uint16(r[i+1]))
	}
	return dst
}
