package ja4

import (
	"crypto/sha256"
	"crypto/tls"
	"slices"
)

// Extension types the fingerprint treats specially.
const (
	extServerName        = 0x0000
	extALPN              = 0x0010
	extSignatureAlgs     = 0x000d
	extSupportedVersions = 0x002b
)

// Length of a fingerprint: a(10) _ b(12) _ c(12).
const fingerprintLen = 36

// emptyHash stands for an empty list, so that "nothing offered" is visible
// at a glance instead of being the sha256 of the empty string.
const emptyHash = "000000000000"

const hexDigits = "0123456789abcdef"

// isGREASE reports whether v is one of the 16 GREASE values of RFC 8701
// (0x0a0a, 0x1a1a, ... 0xfafa) that clients sprinkle into lists to keep
// servers tolerant; they change per connection and must not be counted.
func isGREASE(v uint16) bool {
	return v&0x0f0f == 0x0a0a && v>>8 == v&0xff
}

// hello is what the fingerprint is computed from. Lists may hold GREASE
// values; compute drops them.
type hello struct {
	version    uint16 // highest offered version, 0 when unknown
	sni        bool   // an SNI extension is present
	serverName []byte // the first host_name in it, a view into the raw bytes
	alpn0      byte   // first character of the ALPN part, '0' when none
	alpn1      byte   // last character of the ALPN part
	ciphers    []uint16
	extensions []uint16 // in the order offered
	signatures []uint16 // in the order offered
}

// lists is the GREASE-free, JA4-ordered content of a hello: ciphers and
// extensions sorted (extensions without SNI and ALPN), signature algorithms
// in offered order.
type lists struct {
	nCiphers, nExtensions int // counts before SNI/ALPN removal
	ciphers, extensions   []uint16
	signatures            []uint16
}

// Stack buffers large enough for every real hello; bigger lists spill to
// the heap through append.
type buffers struct {
	c, e, s [96]uint16
}

func (h *hello) lists(b *buffers) lists {
	var l lists
	l.ciphers = appendNonGREASE(b.c[:0], h.ciphers)
	l.extensions = appendNonGREASE(b.e[:0], h.extensions)
	l.signatures = appendNonGREASE(b.s[:0], h.signatures)
	l.nCiphers, l.nExtensions = len(l.ciphers), len(l.extensions)
	// SNI and ALPN are already in the a part; dropping them here keeps
	// the c part stable whether a client dials a name or an address.
	l.extensions = slices.DeleteFunc(l.extensions, func(v uint16) bool { return v == extServerName || v == extALPN })
	slices.Sort(l.ciphers)
	slices.Sort(l.extensions)
	return l
}

func appendNonGREASE(dst, src []uint16) []uint16 {
	for _, v := range src {
		if !isGREASE(v) {
			dst = append(dst, v)
		}
	}
	return dst
}

// prefix writes the 10-character a part into dst.
func (h *hello) prefix(dst []byte, l *lists) {
	dst[0] = 't'
	v := versionCode(h.version)
	dst[1], dst[2] = v[0], v[1]
	dst[3] = 'i'
	if h.sni {
		dst[3] = 'd'
	}
	putCount(dst[4:6], l.nCiphers)
	putCount(dst[6:8], l.nExtensions)
	dst[8], dst[9] = h.alpn0, h.alpn1
}

func putCount(dst []byte, n int) {
	n = min(n, 99)
	dst[0], dst[1] = byte('0'+n/10), byte('0'+n%10)
}

// versionCode maps a protocol version to its two JA4 characters. SSL 2.0 is
// listed both as 0x0002 (the current spec) and 0x0200 (spec v0.18.2).
func versionCode(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "13"
	case tls.VersionTLS12:
		return "12"
	case tls.VersionTLS11:
		return "11"
	case tls.VersionTLS10:
		return "10"
	case 0x0300:
		return "s3"
	case 0x0002, 0x0200:
		return "s2"
	case 0x0100:
		return "s1"
	case 0xfeff:
		return "d1"
	case 0xfefd:
		return "d2"
	case 0xfefc:
		return "d3"
	}
	return "00"
}

// alpnChars returns the ALPN part for the first offered protocol p: its
// first and last characters when both are ASCII letters or digits, else the
// first and last hex digits of p (so 0xAB 0xCD gives "ad"), and "00" when
// there is none.
func alpnChars[S ~string | ~[]byte](p S) (byte, byte) {
	if len(p) == 0 {
		return '0', '0'
	}
	first, last := p[0], p[len(p)-1]
	if isAlnum(first) && isAlnum(last) {
		return first, last
	}
	return hexDigits[first>>4], hexDigits[last&0x0f]
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// appendHexList appends the values as comma-separated 4-digit lower-case
// hex.
func appendHexList(dst []byte, vs []uint16) []byte {
	for i, v := range vs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, hexDigits[v>>12], hexDigits[v>>8&0xf], hexDigits[v>>4&0xf], hexDigits[v&0xf])
	}
	return dst
}

// cString appends the text the c part hashes: sorted extensions, then "_"
// and the signature algorithms when there are any.
func appendCString(dst []byte, l *lists) []byte {
	dst = appendHexList(dst, l.extensions)
	if len(l.signatures) > 0 {
		dst = append(dst, '_')
		dst = appendHexList(dst, l.signatures)
	}
	return dst
}

// putHash12 writes the first 12 hex digits of sha256(text) into dst.
func putHash12(dst, text []byte) {
	sum := sha256.Sum256(text)
	for i := range 6 {
		dst[2*i], dst[2*i+1] = hexDigits[sum[i]>>4], hexDigits[sum[i]&0xf]
	}
}

// compute returns the JA4 fingerprint of h.
func (h *hello) compute() string {
	var b buffers
	l := h.lists(&b)
	var out [fingerprintLen]byte
	h.prefix(out[:10], &l)
	out[10], out[23] = '_', '_'
	// One scratch buffer serves both hashes; 96 entries of 5 bytes cover
	// every real hello without touching the heap.
	var scratch [96 * 5 * 2]byte
	if len(l.ciphers) == 0 {
		copy(out[11:23], emptyHash)
	} else {
		putHash12(out[11:23], appendHexList(scratch[:0], l.ciphers))
	}
	// The spec zeroes c when no extension is left, whatever the signature
	// algorithms (which can only arrive in an extension anyway).
	if len(l.extensions) == 0 {
		copy(out[24:36], emptyHash)
	} else {
		putHash12(out[24:36], appendCString(scratch[:0], &l))
	}
	return string(out[:])
}

// raw returns the JA4_r form of h: the same a part, then the lists that
// compute hashes, in clear. It is for people reading logs, not for hot
// paths.
func (h *hello) raw() string {
	var b buffers
	l := h.lists(&b)
	out := make([]byte, 10, 10+5*(len(l.ciphers)+len(l.extensions)+len(l.signatures))+2)
	h.prefix(out, &l)
	out = append(out, '_')
	out = appendHexList(out, l.ciphers)
	out = append(out, '_')
	out = appendCString(out, &l)
	return string(out)
}
