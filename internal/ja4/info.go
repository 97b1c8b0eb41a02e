package ja4

import (
	"crypto/tls"
	"slices"
)

// FromInfo returns the JA4 fingerprint of the ClientHello that crypto/tls
// parsed into h, as passed to GetConfigForClient or GetCertificate. It
// equals [FromClientHello] of the same bytes, with exceptions only a broken
// or ancient client can trigger, because crypto/tls does not pass the
// legacy version field on: in a hello without the supported_versions
// extension, a legacy version below TLS 1.0 is reported as SSL 3.0 ("s3")
// and one above TLS 1.3 as TLS 1.3 ("13").
//
// It needs Go 1.24 or later (ClientHelloInfo.Extensions). It only reads h,
// allocates just the returned string, and is safe to call concurrently.
func FromInfo(h *tls.ClientHelloInfo) string {
	var sigs [64]uint16
	in := infoHello(h, sigs[:0])
	return in.compute()
}

// RawFromInfo is [FromInfo] in the JA4_r form: the lists in clear instead
// of their hashes, for logs and for explaining why two fingerprints differ.
func RawFromInfo(h *tls.ClientHelloInfo) string {
	in := infoHello(h, nil)
	return in.raw()
}

func infoHello(h *tls.ClientHelloInfo, sigBuf []uint16) hello {
	in := hello{
		version:    infoVersion(h),
		sni:        slices.Contains(h.Extensions, extServerName),
		ciphers:    h.CipherSuites,
		extensions: h.Extensions,
		alpn0:      '0',
		alpn1:      '0',
	}
	for _, s := range h.SignatureSchemes {
		sigBuf = append(sigBuf, uint16(s))
	}
	in.signatures = sigBuf
	if len(h.SupportedProtos) > 0 {
		in.alpn0, in.alpn1 = alpnChars(h.SupportedProtos[0])
	}
	return in
}

// infoVersion picks the highest non-GREASE version in SupportedVersions.
// crypto/tls fills that list from the supported_versions extension when the
// client sent one, else from the legacy version (every version from TLS 1.0
// up to it), so its maximum is the spec's answer in both cases.
func infoVersion(h *tls.ClientHelloInfo) uint16 {
	var best uint16
	for _, v := range h.SupportedVersions {
		if !isGREASE(v) && v > best {
			best = v
		}
	}
	if best == 0 && len(h.SupportedVersions) == 0 && !slices.Contains(h.Extensions, extSupportedVersions) {
		// crypto/tls derived an empty list from a legacy version below
		// TLS 1.0; in practice that is an SSL 3.0 client.
		return 0x0300
	}
	return best
}
