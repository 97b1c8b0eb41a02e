package proxy

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// ClientAllow lists the client certificates a listener lets in, after
// their chain verified. A certificate is let in when any one of its
// subject common name, organisational units, DNS SANs or URI SANs
// (SPIFFE IDs such as spiffe://example.org/ns/prod/sa/meter) is listed.
// DNS names compare without regard to case; the others exactly. The zero
// value lists nothing and is not a check: Options.ClientAllow is nil then.
type ClientAllow struct {
	CN  []string `yaml:"cn"`
	OU  []string `yaml:"ou"`
	DNS []string `yaml:"dns"`
	URI []string `yaml:"uri"`
}

// Empty reports whether a lists nothing.
func (a *ClientAllow) Empty() bool {
	return a == nil || len(a.CN)+len(a.OU)+len(a.DNS)+len(a.URI) == 0
}

// ClientNotAllowedError is a client certificate that verified but is on no
// allow list of the listener. The handshake fails with a bad_certificate
// alert and the reason client_cert_not_allowed.
type ClientNotAllowedError struct {
	// Subject is the certificate's subject, for the log; empty when the
	// client sent no certificate.
	Subject string
}

func (e *ClientNotAllowedError) Error() string {
	if e.Subject == "" {
		return "client sent no certificate, and the listener lets in only listed ones"
	}
	return fmt.Sprintf("client certificate %q is not on the listener's allow list", e.Subject)
}

// allows reports whether leaf is listed.
func (a *ClientAllow) allows(leaf *x509.Certificate) bool {
	if slices.Contains(a.CN, leaf.Subject.CommonName) && leaf.Subject.CommonName != "" {
		return true
	}
	for _, ou := range leaf.Subject.OrganizationalUnit {
		if slices.Contains(a.OU, ou) {
			return true
		}
	}
	for _, n := range leaf.DNSNames {
		if slices.ContainsFunc(a.DNS, func(d string) bool { return strings.EqualFold(d, n) }) {
			return true
		}
	}
	for _, u := range leaf.URIs {
		if slices.Contains(a.URI, u.String()) {
			return true
		}
	}
	return false
}

// verifyAllowed wraps the configuration's VerifyConnection, which checks
// the chain (certs.ClientCAs), with the allow list: it runs only once the
// chain verified, and refuses certificates a lists nowhere.
func verifyAllowed(a *ClientAllow, next func(tls.ConnectionState) error) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if next != nil {
			if err := next(cs); err != nil {
				return err
			}
		}
		if len(cs.PeerCertificates) == 0 {
			return &ClientNotAllowedError{}
		}
		if leaf := cs.PeerCertificates[0]; !a.allows(leaf) {
			return &ClientNotAllowedError{Subject: leaf.Subject.String()}
		}
		return nil
	}
}

// recordServed wraps cfg's certificate selection so that each connection
// remembers the certificate it was served, for the PROXY TLVs that
// describe it. A static Certificates list is served the way crypto/tls
// would: the first the client supports.
func recordServed(cfg *tls.Config) {
	inner, static := cfg.GetCertificate, cfg.Certificates
	cfg.Certificates = nil
	cfg.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		var c *tls.Certificate
		var err error
		if inner != nil {
			c, err = inner(h)
		} else if len(static) > 0 {
			c = &static[0]
			for i := range static {
				if h.SupportsCertificate(&static[i]) == nil {
					c = &static[i]
					break
				}
			}
		}
		if cn, ok := h.Conn.(*conn); ok && c != nil {
			cn.served = c
		}
		return c, err
	}
}

// sslTLVs describes a TLS session in the PROXY protocol v2 SSL TLV
// (PP2_TYPE_SSL, section 2.2.6 of the spec), as HAProxy's
// send-proxy-v2-ssl-cn does: the client connected over TLS; whether it
// sent a certificate on this connection or its session; verify 0 when
// that certificate verified; the version, cipher, and for the served
// certificate its signature and key algorithms (when this handshake
// served one: not on resumption). The client's CN is sent only for a
// verified certificate, so that a broker taking the MQTT username from it
// cannot be handed an unverified name.
func sslTLVs(cs tls.ConnectionState, served *tls.Certificate, verified bool) ([]proxyproto.TLV, error) {
	ssl := tlvparse.PP2SSL{Client: tlvparse.PP2_BITFIELD_CLIENT_SSL, Verify: 1}
	sub := func(t proxyproto.PP2Type, v string) {
		if v != "" {
			ssl.TLV = append(ssl.TLV, proxyproto.TLV{Type: t, Value: []byte(v)})
		}
	}
	sub(proxyproto.PP2_SUBTYPE_SSL_VERSION, versionName(cs.Version))
	if len(cs.PeerCertificates) > 0 {
		ssl.Client |= tlvparse.PP2_BITFIELD_CLIENT_CERT_SESS
		if !cs.DidResume {
			ssl.Client |= tlvparse.PP2_BITFIELD_CLIENT_CERT_CONN
		}
		if verified {
			ssl.Verify = 0
			sub(proxyproto.PP2_SUBTYPE_SSL_CN, cs.PeerCertificates[0].Subject.CommonName)
		}
	}
	sub(proxyproto.PP2_SUBTYPE_SSL_CIPHER, cipherName(cs.CipherSuite))
	if served != nil && len(served.Certificate) > 0 {
		leaf := served.Leaf
		if leaf == nil {
			leaf, _ = x509.ParseCertificate(served.Certificate[0])
		}
		if leaf != nil {
			sub(proxyproto.PP2_SUBTYPE_SSL_SIG_ALG, sigAlgName(leaf.SignatureAlgorithm))
			sub(proxyproto.PP2_SUBTYPE_SSL_KEY_ALG, keyAlgName(leaf.PublicKey))
		}
	}
	t, err := ssl.Marshal()
	if err != nil {
		return nil, err
	}
	return []proxyproto.TLV{t}, nil
}

// versionName is the version as OpenSSL names it, which is what HAProxy
// sends and brokers log.
func versionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS10:
		return "TLSv1"
	}
	return ""
}

// opensslSuites are OpenSSL's names of the TLS 1.2 suites tlsfront
// offers; TLS 1.3 suites have the same name in both.
var opensslSuites = map[uint16]string{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256:       "ECDHE-ECDSA-AES128-GCM-SHA256",
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256:         "ECDHE-RSA-AES128-GCM-SHA256",
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384:       "ECDHE-ECDSA-AES256-GCM-SHA384",
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:         "ECDHE-RSA-AES256-GCM-SHA384",
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: "ECDHE-ECDSA-CHACHA20-POLY1305",
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:   "ECDHE-RSA-CHACHA20-POLY1305",
}

func cipherName(id uint16) string {
	if n, ok := opensslSuites[id]; ok {
		return n
	}
	return tls.CipherSuiteName(id)
}

// sigAlgName is OpenSSL's short name of a certificate signature
// algorithm, as HAProxy sends it; others get Go's name.
func sigAlgName(a x509.SignatureAlgorithm) string {
	switch a {
	case x509.SHA256WithRSA:
		return "RSA-SHA256"
	case x509.SHA384WithRSA:
		return "RSA-SHA384"
	case x509.SHA512WithRSA:
		return "RSA-SHA512"
	case x509.SHA256WithRSAPSS, x509.SHA384WithRSAPSS, x509.SHA512WithRSAPSS:
		return "RSASSA-PSS"
	case x509.ECDSAWithSHA256:
		return "ecdsa-with-SHA256"
	case x509.ECDSAWithSHA384:
		return "ecdsa-with-SHA384"
	case x509.ECDSAWithSHA512:
		return "ecdsa-with-SHA512"
	case x509.PureEd25519:
		return "ED25519"
	}
	return a.String()
}

// keyAlgName names a key as HAProxy does: RSA2048, EC256, ED25519.
func keyAlgName(k any) string {
	switch k := k.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return fmt.Sprintf("EC%d", k.Curve.Params().BitSize)
	case ed25519.PublicKey:
		return "ED25519"
	}
	return ""
}
