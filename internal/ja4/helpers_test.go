package ja4

import "encoding/binary"

// testHello builds ClientHello bytes field by field, so that vectors from
// the spec (which are given as lists, not captures) can be fed through the
// parser exactly as a client would send them.
type testHello struct {
	legacy  uint16
	ciphers []uint16
	exts    []testExt
}

type testExt struct {
	typ  uint16
	data []byte
}

// message returns the handshake message: type, uint24 length, body.
func (h testHello) message() []byte {
	var b []byte
	b = binary.BigEndian.AppendUint16(b, h.legacy)
	b = append(b, make([]byte, 32)...) // random
	b = append(b, 0)                   // empty session id
	b = binary.BigEndian.AppendUint16(b, uint16(2*len(h.ciphers)))
	for _, c := range h.ciphers {
		b = binary.BigEndian.AppendUint16(b, c)
	}
	b = append(b, 1, 0) // compression: null only
	if h.exts != nil {
		var e []byte
		for _, x := range h.exts {
			e = binary.BigEndian.AppendUint16(e, x.typ)
			e = binary.BigEndian.AppendUint16(e, uint16(len(x.data)))
			e = append(e, x.data...)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(e)))
		b = append(b, e...)
	}
	msg := []byte{typeClientHello, byte(len(b) >> 16), byte(len(b) >> 8), byte(len(b))}
	return append(msg, b...)
}

// records wraps msg in handshake records of at most frag bytes each.
func records(msg []byte, frag int) []byte {
	var out []byte
	for len(msg) > 0 {
		n := min(frag, len(msg))
		out = append(out, recordTypeHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

func u16list(lenBytes int, vs ...uint16) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.BigEndian.AppendUint16(b, v)
	}
	if lenBytes == 1 {
		return append([]byte{byte(len(b))}, b...)
	}
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)
}

func sniExt(name string) testExt {
	entry := append([]byte{0}, binary.BigEndian.AppendUint16(nil, uint16(len(name)))...)
	entry = append(entry, name...)
	list := append(binary.BigEndian.AppendUint16(nil, uint16(len(entry))), entry...)
	return testExt{extServerName, list}
}

func alpnExt(protos ...string) testExt {
	var l []byte
	for _, p := range protos {
		l = append(l, byte(len(p)))
		l = append(l, p...)
	}
	return testExt{extALPN, append(binary.BigEndian.AppendUint16(nil, uint16(len(l))), l...)}
}

func sigExt(sigs ...uint16) testExt { return testExt{extSignatureAlgs, u16list(2, sigs...)} }

func versionsExt(vs ...uint16) testExt { return testExt{extSupportedVersions, u16list(1, vs...)} }

// emptyExt is an extension with no body, which is all JA4 needs of most.
func emptyExt(typ uint16) testExt { return testExt{typ: typ} }
