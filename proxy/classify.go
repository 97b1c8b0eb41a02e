package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"syscall"

	"github.com/tlsfront/tlsfront/certs"
	"github.com/tlsfront/tlsfront/internal/ja4"
)

// Reason names why a handshake failed, from a fixed, documented set (see
// [Reasons]). It is meant as a metric label and a log field: few values,
// each pointing at one thing an operator can check.
//
// Reasons starting with "client_alert_" mean the client rejected us and
// said why; the others are what the proxy saw itself.
type Reason string

// Client alerts: the client aborted the handshake with a TLS alert (RFC 8446
// section 6.2). Usually it did not like our certificate; a sudden jump in
// any of them right after a certificate change is that change's fault.
const (
	// ReasonClientAlertUnknownCA: the client does not trust the CA that
	// issued our certificate, or could not build a chain to a root it
	// trusts. Check that the served chain includes the intermediate, and
	// that the client's trust store has the root (devices with pinned or
	// old trust stores break when the certificate moves to a new CA).
	ReasonClientAlertUnknownCA Reason = "client_alert_unknown_ca"
	// ReasonClientAlertBadCertificate: the client rejected our certificate
	// without saying more. Go clients send this for every verification
	// failure (unknown CA, wrong name, expiry). Check the chain, the names
	// (SANs) against what clients dial, and the validity dates.
	ReasonClientAlertBadCertificate Reason = "client_alert_bad_certificate"
	// ReasonClientAlertCertificateUnknown: the client rejected our
	// certificate for an unspecified reason, often a name mismatch or a
	// user cancelling a browser warning. Check the SANs and the chain.
	ReasonClientAlertCertificateUnknown Reason = "client_alert_certificate_unknown"
	// ReasonClientAlertCertificateExpired: the client thinks our
	// certificate (or one in its chain) is expired or not yet valid. Check
	// the dates, and the client's clock: devices without RTC batteries
	// boot in 1970 and reject every certificate.
	ReasonClientAlertCertificateExpired Reason = "client_alert_certificate_expired"
	// ReasonClientAlertCertificateRevoked: the client found our
	// certificate revoked (OCSP or CRL). Replace the certificate.
	ReasonClientAlertCertificateRevoked Reason = "client_alert_certificate_revoked"
	// ReasonClientAlertUnsupportedCertificate: the client cannot use our
	// certificate's type, e.g. an RSA-only stack given an ECDSA key. Serve
	// an RSA certificate alongside, or reissue with the old key type.
	ReasonClientAlertUnsupportedCertificate Reason = "client_alert_unsupported_certificate"
	// ReasonClientAlertHandshakeFailure: the client found nothing
	// acceptable in our ServerHello or certificate (cipher, group,
	// signature algorithm, key type). Compare the failing JA4 with the
	// listener's cipher and certificate settings.
	ReasonClientAlertHandshakeFailure Reason = "client_alert_handshake_failure"
	// ReasonClientAlertProtocolVersion: the client refuses the TLS version
	// we chose. Check the listener's minimum and maximum versions.
	ReasonClientAlertProtocolVersion Reason = "client_alert_protocol_version"
	// ReasonClientAlertInsufficientSecurity: the client wants stronger
	// parameters than we offered (e.g. a bigger key). Check the key size
	// and cipher settings.
	ReasonClientAlertInsufficientSecurity Reason = "client_alert_insufficient_security"
	// ReasonClientAlertDecryptError: a signature or Finished check failed
	// on the client, e.g. a certificate whose key does not match the
	// private key served with it, or a middlebox rewriting traffic.
	ReasonClientAlertDecryptError Reason = "client_alert_decrypt_error"
	// ReasonClientAlertUnrecognizedName: the client insists on the server
	// name it sent and our certificate does not cover it. Add the name to
	// a certificate.
	ReasonClientAlertUnrecognizedName Reason = "client_alert_unrecognized_name"
	// ReasonClientAlertUserCanceled: the client gave up on purpose, often a
	// person closing a certificate warning. Look at the certificate.
	ReasonClientAlertUserCanceled Reason = "client_alert_user_canceled"
	// ReasonClientAlertUnencrypted: in TLS 1.3 the client sent something
	// unencrypted right after our certificate, which crypto/tls reports as
	// a bad record MAC. In practice it is an OpenSSL-based client sending
	// its rejection alert (usually unknown_ca) in plain text, which
	// OpenSSL does when verification fails before it has switched keys.
	// Treat it like a certificate rejection. It only appears when the
	// connection cannot tell which alert it was (see unencryptedAlert).
	ReasonClientAlertUnencrypted Reason = "client_alert_unencrypted"
	// ReasonClientAlertOther: any other alert from the client (decode
	// errors, internal errors, ...). The error in the log names it; a
	// steady rate from one JA4 points at a buggy client stack.
	ReasonClientAlertOther Reason = "client_alert_other"
)

// What the proxy saw itself.
const (
	// ReasonNoSharedVersion: the client offers only TLS versions below
	// the listener's minimum (by default TLS 1.2), or sent an SSL 2.0
	// format hello. This is a fleet of old devices or libraries: find them
	// by JA4 and upgrade them, or lower the minimum for their listener.
	ReasonNoSharedVersion Reason = "no_shared_version"
	// ReasonNoSharedCipher: no cipher suite (or, in TLS 1.3, no key
	// exchange group) is acceptable to both sides. In TLS 1.2 the suites
	// also depend on the certificate key: a client offering only RSA
	// suites cannot use an ECDSA certificate, so a renewal that changed
	// the key type shows up here. Compare the failing JA4's raw form with
	// the listener's suites and certificate.
	ReasonNoSharedCipher Reason = "no_shared_cipher"
	// ReasonNoSharedSignatureAlgorithm: the client accepts none of the
	// signature algorithms our certificate key can make (e.g. an RSA key
	// with a client that only takes ECDSA, or SHA-1-only clients). Check
	// the key type of a recently changed certificate.
	ReasonNoSharedSignatureAlgorithm Reason = "no_shared_signature_algorithm"
	// ReasonNoSharedALPN: the client asked for application protocols
	// (ALPN) and the listener speaks none of them. Check that the client
	// points at the right port (e.g. an HTTP client on an MQTT listener).
	ReasonNoSharedALPN Reason = "no_shared_alpn"
	// ReasonUnknownSNI: the client asked for a server name no certificate
	// covers and then failed. Add the name to a certificate, or fix the
	// name the clients dial. Needs the listener to know its names; without
	// that these fall under the client alert that followed.
	ReasonUnknownSNI Reason = "unknown_sni"
	// ReasonStalledMidHandshake: the handshake timeout expired after the
	// client had started (some or all of a ClientHello arrived). Look for
	// packet loss, MTU problems (large certificate chains or post-quantum
	// key shares that do not fit), or a client stuck on slow verification.
	ReasonStalledMidHandshake Reason = "stalled_mid_handshake"
	// ReasonNoClientHello: the client connected and sent nothing until the
	// handshake timeout. Usually health checks or port scanners; in bulk,
	// a client that expects the server to speak first (a wrong port or a
	// plain-text protocol).
	ReasonNoClientHello Reason = "no_client_hello"
	// ReasonClosedBeforeHello: the client closed or reset the connection
	// before a complete ClientHello. Usually TCP health checks and
	// scanners; if it tracks real traffic, look at load balancer probes.
	ReasonClosedBeforeHello Reason = "closed_before_hello"
	// ReasonNotTLSHTTP: plain HTTP arrived on the TLS port. Point the
	// client at https://, or at the plain HTTP (redirect) listener.
	ReasonNotTLSHTTP Reason = "not_tls_http"
	// ReasonNotTLSMQTT: a plain MQTT CONNECT arrived on the TLS port. The
	// client is configured for port 1883 semantics (no TLS); enable TLS on
	// it or send it to the plain MQTT port.
	ReasonNotTLSMQTT Reason = "not_tls_mqtt"
	// ReasonNotTLS: something that is neither TLS, HTTP nor MQTT arrived
	// (SSH, a scanner, another protocol). Check what is configured to
	// connect here.
	ReasonNotTLS Reason = "not_tls"
	// ReasonClientClosed: the client closed the connection after its
	// ClientHello without an alert. Many clients do this instead of
	// alerting when they reject a certificate, so treat a jump after a
	// certificate change like a certificate rejection.
	ReasonClientClosed Reason = "client_closed"
	// ReasonCertificatePending: the client asked for an on-demand name
	// whose certificate is being obtained right now; the handshake failed
	// at once rather than wait on the CA. A retry in a few seconds
	// succeeds. In bulk, a burst of new names.
	ReasonCertificatePending Reason = "certificate_pending"
	// ReasonCertificateUnavailable: the client asked for an on-demand name
	// whose certificate cannot be had now: the CA refused it recently
	// (the name is backing off) or an issuance cap was reached. The log
	// and the ACME metrics say which; check that the name points here and
	// the CA's rate limits.
	ReasonCertificateUnavailable Reason = "certificate_unavailable"
	// ReasonClientCertNotAllowed: the client's certificate verified, but
	// the listener's allow list (client_allow) names none of its CN, OUs,
	// DNS or URI SANs; the client got a bad_certificate alert. Add the
	// identity to the list, or find out who holds a certificate from our
	// CA that should not connect here.
	ReasonClientCertNotAllowed Reason = "client_cert_not_allowed"
	// ReasonSNITrailingDot: the client asked for a server name ending in
	// a dot ("broker.example.com."), which RFC 6066 forbids and
	// crypto/tls refuses before any certificate is chosen; the name
	// cannot be rewritten, as the ClientHello is part of what both sides
	// sign. OpenSSL and Node send the name as given, so the client was
	// configured with the fully qualified form: drop the final dot there.
	ReasonSNITrailingDot Reason = "sni_trailing_dot"
	// ReasonServerShutdown: the proxy was shutting down. Not the client's
	// fault; exclude it from alerting.
	ReasonServerShutdown Reason = "server_shutdown"
	// ReasonOther: none of the above. The error in the log says more; if a
	// new pattern shows up, it may deserve its own reason.
	ReasonOther Reason = "other"
)

var allReasons = []Reason{
	ReasonClientAlertUnknownCA,
	ReasonClientAlertBadCertificate,
	ReasonClientAlertCertificateUnknown,
	ReasonClientAlertCertificateExpired,
	ReasonClientAlertCertificateRevoked,
	ReasonClientAlertUnsupportedCertificate,
	ReasonClientAlertHandshakeFailure,
	ReasonClientAlertProtocolVersion,
	ReasonClientAlertInsufficientSecurity,
	ReasonClientAlertDecryptError,
	ReasonClientAlertUnrecognizedName,
	ReasonClientAlertUserCanceled,
	ReasonClientAlertUnencrypted,
	ReasonClientAlertOther,
	ReasonNoSharedVersion,
	ReasonNoSharedCipher,
	ReasonNoSharedSignatureAlgorithm,
	ReasonNoSharedALPN,
	ReasonUnknownSNI,
	ReasonStalledMidHandshake,
	ReasonNoClientHello,
	ReasonClosedBeforeHello,
	ReasonNotTLSHTTP,
	ReasonNotTLSMQTT,
	ReasonNotTLS,
	ReasonClientClosed,
	ReasonCertificatePending,
	ReasonCertificateUnavailable,
	ReasonSNITrailingDot,
	ReasonClientCertNotAllowed,
	ReasonServerShutdown,
	ReasonOther,
}

// Reasons returns every Reason classify can give, e.g. to create metric
// series at zero before the first failure. The caller owns the slice.
func Reasons() []Reason { return append([]Reason(nil), allReasons...) }

// classifier holds what classification needs to know about the listener.
// The zero value assumes the proxy's defaults and no name lookup.
type classifier struct {
	// knownName reports whether a certificate covers a server name; nil
	// disables ReasonUnknownSNI.
	knownName func(serverName string) bool
	// minVersion is the listener's lowest TLS version; zero means TLS 1.2,
	// what serverTLSConfig sets by default.
	minVersion uint16
}

// classify gives a failed handshake its reason, assuming the proxy's
// default minimum version and no name lookup.
func classify(ev *HandshakeEvent) Reason { return classifier{}.classify(ev) }

// classify gives a failed handshake its reason. The order matters: what
// arrived on the wire first (not TLS at all), then who stopped it (the
// proxy shutting down, the timeout), then what the server itself refused,
// then what the client said.
func (cl classifier) classify(ev *HandshakeEvent) Reason {
	err := ev.Err
	if err == nil {
		return ""
	}
	if r := classifyFirstBytes(ev.FirstBytes); r != "" {
		return r
	}
	if errors.Is(err, context.Canceled) {
		return ReasonServerShutdown
	}
	if errors.Is(err, certs.ErrIssuancePending) {
		return ReasonCertificatePending
	}
	if errors.Is(err, certs.ErrIssuanceFailing) || errors.Is(err, certs.ErrIssuanceLimited) {
		return ReasonCertificateUnavailable
	}
	if ev.TimedOut {
		if ev.Hello == nil && len(ev.FirstBytes) == 0 {
			return ReasonNoClientHello
		}
		return ReasonStalledMidHandshake
	}
	if ev.Hello == nil && strings.HasSuffix(ev.RawServerName, ".") {
		return ReasonSNITrailingDot
	}
	var notAllowed *ClientNotAllowedError
	if errors.As(err, &notAllowed) {
		return ReasonClientCertNotAllowed
	}
	alert, isAlert := clientAlert(err)
	if ev.Hello != nil {
		// A client that alerted us had accepted our ServerHello, version
		// included; only the other failures can be version refusals.
		if !isAlert && cl.tooOld(ev.Hello) {
			return ReasonNoSharedVersion
		}
		if r := classifyLocal(err); r != "" {
			return r
		}
		if !isAlert {
			alert, isAlert = unencryptedAlert(ev.Hello, err)
		}
	}
	closed := isClosed(err)
	if ev.Hello != nil && cl.unknownName(ev.Hello.ServerName) {
		// A client that dialled a name we have no certificate for got the
		// default one; whatever it then said about that certificate (or
		// if it just hung up), the missing name is the cause to fix.
		if !isAlert || certificateAlert(alert) {
			return ReasonUnknownSNI
		}
	}
	if isAlert {
		return alert
	}
	if closed {
		if ev.Hello == nil {
			return ReasonClosedBeforeHello
		}
		return ReasonClientClosed
	}
	return ReasonOther
}

// tooOld reports whether every version h offers is below the minimum.
func (cl classifier) tooOld(h *tls.ClientHelloInfo) bool {
	floor := cl.minVersion
	if floor == 0 {
		floor = tls.VersionTLS12
	}
	for _, v := range h.SupportedVersions {
		if v >= floor && !isGREASE(v) {
			return false
		}
	}
	// An empty list is what crypto/tls makes of an SSL 3.0 hello.
	return true
}

func (cl classifier) unknownName(name string) bool {
	return cl.knownName != nil && name != "" && !cl.knownName(name)
}

func isGREASE(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }

// httpMethods start a plain HTTP/1.x request or an HTTP/2 prior-knowledge
// preface ("PRI * HTTP/2.0").
var httpMethods = []string{"GET ", "POST ", "HEAD ", "PUT ", "DELETE ", "OPTIONS ", "CONNECT ", "PATCH ", "TRACE ", "PRI "}

// classifyFirstBytes recognises clients that do not speak TLS at all. It
// returns "" for bytes that start like TLS, or for no bytes.
func classifyFirstBytes(b []byte) Reason {
	if len(b) == 0 {
		return ""
	}
	switch {
	case b[0] >= 0x14 && b[0] <= 0x17:
		// A TLS record type (handshake, alert, ...): TLS, however broken.
		return ""
	case b[0]&0x80 != 0 && len(b) >= 3 && b[2] == 0x01:
		// SSL 2.0 record header (length with the top bit set) carrying a
		// CLIENT-HELLO: an ancient stack, which is a version problem.
		return ReasonNoSharedVersion
	case looksLikeMQTTConnect(b):
		return ReasonNotTLSMQTT
	}
	for _, m := range httpMethods {
		// Allow a client that stalled mid-method, as long as enough of it
		// arrived to be sure.
		if strings.HasPrefix(string(b), m) || len(b) >= 3 && len(b) < len(m) && strings.HasPrefix(m, string(b)) {
			return ReasonNotTLSHTTP
		}
	}
	return ReasonNotTLS
}

// looksLikeMQTTConnect reports whether b can be the start of an MQTT
// CONNECT packet: type 1 with no flags (0x10), a variable-length remaining
// length, then the protocol name "MQTT" (3.1.1, 5) or "MQIsdp" (3.1). Only
// the bytes present are checked; 0x10 is never a TLS first byte.
func looksLikeMQTTConnect(b []byte) bool {
	if b[0] != 0x10 {
		return false
	}
	i := 1
	for ; i < len(b) && i <= 4; i++ {
		if b[i]&0x80 == 0 {
			i++
			break
		}
	}
	want := [][]byte{{0x00, 0x04, 'M', 'Q', 'T', 'T'}, {0x00, 0x06, 'M', 'Q', 'I', 's', 'd', 'p'}}
	rest := b[min(i, len(b)):]
	for _, w := range want {
		n := min(len(rest), len(w))
		if string(rest[:n]) == string(w[:n]) {
			return true
		}
	}
	return false
}

// localFailures are the handshake errors crypto/tls returns when the server
// side refuses the client's offer. crypto/tls builds them with errors.New
// and fmt.Errorf, with no type or sentinel to test, so their text is all
// there is; TestLocalFailureTexts pins each one against real clients, so
// a Go release that rewords one fails the tests instead of silently
// turning into ReasonOther.
var localFailures = []struct {
	prefix string
	reason Reason
}{
	{"tls: client offered only unsupported versions", ReasonNoSharedVersion},
	{"tls: no cipher suite supported by both client and server", ReasonNoSharedCipher},
	{"tls: no key exchanges supported by both client and server", ReasonNoSharedCipher},
	{"tls: no ECDHE curve supported by both client and server", ReasonNoSharedCipher},
	{"tls: client requested unsupported application protocols", ReasonNoSharedALPN},
	{"tls: peer doesn't support any of the certificate's signature algorithms", ReasonNoSharedSignatureAlgorithm},
}

func classifyLocal(err error) Reason {
	msg := err.Error()
	for _, f := range localFailures {
		if strings.HasPrefix(msg, f.prefix) {
			return f.reason
		}
	}
	return ""
}

// alertReasons maps the text of a received alert to its reason.
//
// crypto/tls reports an alert from the peer as a *net.OpError with Op
// "remote error" wrapping a value of its unexported type alert, so there is
// no type to match with errors.As and no constants to compare with; its
// Error() text ("tls: " + the name in crypto/tls/alert.go) is the only
// stable handle. Exposing the type is golang/go#35234 (open; see also
// #56691). TestAlertTexts sends every alert below to a real crypto/tls
// client and checks the mapping, so a rename breaks a test, not the
// metrics.
var alertReasons = map[string]Reason{
	"tls: unknown certificate authority":  ReasonClientAlertUnknownCA,
	"tls: bad certificate":                ReasonClientAlertBadCertificate,
	"tls: unknown certificate":            ReasonClientAlertCertificateUnknown,
	"tls: expired certificate":            ReasonClientAlertCertificateExpired,
	"tls: revoked certificate":            ReasonClientAlertCertificateRevoked,
	"tls: unsupported certificate":        ReasonClientAlertUnsupportedCertificate,
	"tls: handshake failure":              ReasonClientAlertHandshakeFailure,
	"tls: protocol version not supported": ReasonClientAlertProtocolVersion,
	"tls: insufficient security level":    ReasonClientAlertInsufficientSecurity,
	"tls: error decrypting message":       ReasonClientAlertDecryptError,
	"tls: unrecognized name":              ReasonClientAlertUnrecognizedName,
	"tls: user canceled":                  ReasonClientAlertUserCanceled,
}

// clientAlert returns the reason for an alert the client sent, if err is
// one.
func clientAlert(err error) (Reason, bool) {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" || op.Err == nil {
		return "", false
	}
	if r, ok := alertReasons[op.Err.Error()]; ok {
		return r, true
	}
	return ReasonClientAlertOther, true
}

// alertCodes are the wire codes (RFC 8446 section 6) of the alerts in
// alertReasons, for alerts read from the raw bytes.
var alertCodes = map[byte]Reason{
	48:  ReasonClientAlertUnknownCA,
	42:  ReasonClientAlertBadCertificate,
	46:  ReasonClientAlertCertificateUnknown,
	45:  ReasonClientAlertCertificateExpired,
	44:  ReasonClientAlertCertificateRevoked,
	43:  ReasonClientAlertUnsupportedCertificate,
	40:  ReasonClientAlertHandshakeFailure,
	70:  ReasonClientAlertProtocolVersion,
	71:  ReasonClientAlertInsufficientSecurity,
	51:  ReasonClientAlertDecryptError,
	112: ReasonClientAlertUnrecognizedName,
	90:  ReasonClientAlertUserCanceled,
}

// unencryptedAlert recognises a TLS 1.3 client rejecting us with an alert
// in plain text. OpenSSL sends the alert for a failed certificate check
// before it switches to the handshake keys; crypto/tls, which already
// expects encrypted records, fails to decrypt it and reports a local
// bad_record_mac. (tlsfuzzer/tlslite-ng#344 describes the same OpenSSL
// behaviour against another server.)
//
// If the connection remembers the last bytes it read (a lastBytes method
// on the hello's Conn), the alert record itself is decoded: a plain-text
// alert is 15 03 0x 00 02 <level> <code>. Otherwise the result is
// ReasonClientAlertUnencrypted.
func unencryptedAlert(h *tls.ClientHelloInfo, err error) (Reason, bool) {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "local error" || op.Err == nil || op.Err.Error() != "tls: bad record MAC" {
		return "", false
	}
	if !slices.Contains(h.SupportedVersions, tls.VersionTLS13) {
		// Before TLS 1.3 an alert before ChangeCipherSpec is legitimately
		// plain text and parses; a bad MAC there is real corruption.
		return "", false
	}
	if lb, ok := h.Conn.(interface{ lastBytes() []byte }); ok {
		if b := lb.lastBytes(); len(b) >= 7 {
			rec := b[len(b)-7:]
			if rec[0] == 0x15 && rec[1] == 0x03 && rec[3] == 0x00 && rec[4] == 0x02 {
				if r, ok := alertCodes[rec[6]]; ok {
					return r, true
				}
				return ReasonClientAlertOther, true
			}
		}
	}
	return ReasonClientAlertUnencrypted, true
}

// certificateAlert reports whether a client alert is about our
// certificate, which is what a client sends when the certificate it got
// does not cover the name it asked for.
func certificateAlert(r Reason) bool {
	switch r {
	case ReasonClientAlertUnknownCA, ReasonClientAlertBadCertificate, ReasonClientAlertCertificateUnknown,
		ReasonClientAlertUnrecognizedName, ReasonClientAlertUserCanceled, ReasonClientAlertUnencrypted:
		return true
	}
	return false
}

// isClosed reports whether err means the client went away: a clean close,
// a close mid-record, a reset, or a broken pipe while we were writing.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// fingerprint returns the JA4 fingerprint of a ClientHello. It runs on
// every handshake and costs about a microsecond and one allocation (see
// BenchmarkFingerprint).
func fingerprint(h *tls.ClientHelloInfo) string { return ja4.FromInfo(h) }
