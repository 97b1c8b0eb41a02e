// Package ja4 computes the JA4 TLS client fingerprint of a ClientHello, as
// specified by FoxIO (https://github.com/FoxIO-LLC/ja4, technical_details/JA4.md;
// JA4 itself is BSD 3-Clause licensed, unlike the other JA4+ methods, none of
// which are implemented here).
//
// A fingerprint looks like t13d1516h2_8daaf6152771_e5627efa2ab1:
//
//	t       TLS over TCP (this package never sees QUIC or DTLS)
//	13      highest version offered: supported_versions if present, else the
//	        legacy ClientHello version (s3, 10, 11, 12, 13; 00 if unknown)
//	d       an SNI extension is present ("i" when absent)
//	15      number of cipher suites, GREASE excluded, at most 99
//	16      number of extensions, GREASE excluded, at most 99
//	h2      first and last character of the first ALPN value ("00" if none)
//	_8daaf6152771  sha256 of the sorted cipher list, first 12 hex digits
//	_e5627efa2ab1  sha256 of the sorted extension list (without SNI and
//	        ALPN), "_", the signature algorithms in offered order
//
// GREASE values (RFC 8701) are ignored everywhere. Two entry points give the
// same answer for the same hello: [FromClientHello] parses raw bytes from the
// wire, and [FromInfo] reads the [tls.ClientHelloInfo] that crypto/tls hands
// to GetConfigForClient, which is what a server sees for free.
//
// Clients that share a TLS stack share a fingerprint, whatever their
// addresses: a fleet of devices on an old firmware shows up as one JA4.
package ja4
