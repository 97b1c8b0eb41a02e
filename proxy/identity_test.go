package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net/url"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"

	"github.com/tlsfront/tlsfront/certs"
	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/pki/pkitest"
)

// mtlsConfig is a server configuration with a localhost leaf from ca that
// verifies client certificates against ca's root the way tlsfront does
// (certs.ClientCAs), requiring one when required is set.
func mtlsConfig(t *testing.T, ca *pkitest.CA, required bool) *tls.Config {
	t.Helper()
	leaf := ca.Leaf(pki.Options{})
	cfg := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.DER, ca.Intermediate.DER}, PrivateKey: leaf.Key}}}
	cas := certs.NewClientCAs(required)
	if _, _, err := cas.Reload(ca.RootFile()); err != nil {
		t.Fatal(err)
	}
	cas.Configure(cfg)
	return cfg
}

// clientCert is a client certificate from ca's intermediate, sent with it.
func clientCert(ca *pkitest.CA, o pki.Options) tls.Certificate {
	if len(o.DNSNames) == 0 && len(o.IPs) == 0 {
		o.DNSNames = []string{"client.invalid"}
	}
	leaf := ca.Leaf(o)
	return tls.Certificate{Certificate: [][]byte{leaf.DER, ca.Intermediate.DER}, PrivateKey: leaf.Key}
}

// sslTLV reads the SSL TLV of a PROXY header.
func sslTLV(t *testing.T, h *proxyproto.Header) tlvparse.PP2SSL {
	t.Helper()
	tlvs, err := h.TLVs()
	if err != nil {
		t.Fatal(err)
	}
	for _, tlv := range tlvs {
		if tlvparse.IsSSL(tlv) {
			ssl, err := tlvparse.SSL(tlv)
			if err != nil {
				t.Fatal(err)
			}
			return ssl
		}
	}
	t.Fatalf("no SSL TLV in %v", tlvs)
	return tlvparse.PP2SSL{}
}

func waitHeader(t *testing.T, be *echoBackend) *proxyproto.Header {
	t.Helper()
	select {
	case h := <-be.headers:
		return h
	case <-time.After(10 * time.Second):
		t.Fatal("no PROXY header at the backend within 10s")
		return nil
	}
}

// TestProxyProtocolSSLTLV: a backend that reads PROXY protocol v2 learns
// from the SSL TLV whether the client sent a certificate, whether it
// verified, its CN, and the TLS parameters; what VerneMQ and EMQX take the
// MQTT username from.
func TestProxyProtocolSSLTLV(t *testing.T) {
	ca := pkitest.NewCA(t)
	be := newEchoBackend(t, true)
	backend := be.backend()
	backend.ProxyProtocol = 2
	p := startProxy(t, Options{Backend: backend, TLS: mtlsConfig(t, ca, false), ProxyProtocolTLS: true, ClientCertsVerified: true})
	unverified := startProxy(t, Options{Backend: backend, TLS: mtlsConfig(t, ca, false), ProxyProtocolTLS: true})
	device := clientCert(ca, pki.Options{CommonName: "device-42"})

	type want struct {
		verified, certConn, certSess bool
		cn, version, cipher, sigAlg  string
		keyAlg                       string
	}
	for _, tt := range []struct {
		name string
		p    *testProxy
		cfg  func(*tls.Config)
		want want
	}{
		{"verified certificate", p, func(c *tls.Config) { c.Certificates = []tls.Certificate{device} },
			want{verified: true, certConn: true, certSess: true, cn: "device-42", version: "TLSv1.3", cipher: "TLS_AES_128_GCM_SHA256", sigAlg: "ecdsa-with-SHA256", keyAlg: "EC256"}},
		{"TLS 1.2", p, func(c *tls.Config) {
			c.Certificates = []tls.Certificate{device}
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}
		}, want{verified: true, certConn: true, certSess: true, cn: "device-42", version: "TLSv1.2", cipher: "ECDHE-ECDSA-AES256-GCM-SHA384", sigAlg: "ecdsa-with-SHA256", keyAlg: "EC256"}},
		{"no certificate", p, func(c *tls.Config) {},
			want{version: "TLSv1.3", cipher: "TLS_AES_128_GCM_SHA256", sigAlg: "ecdsa-with-SHA256", keyAlg: "EC256"}},
		{"listener not verifying", unverified, func(c *tls.Config) { c.Certificates = []tls.Certificate{device} },
			want{certConn: true, certSess: true, version: "TLSv1.3", cipher: "TLS_AES_128_GCM_SHA256", sigAlg: "ecdsa-with-SHA256", keyAlg: "EC256"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.p.ca.ClientConfig("localhost")
			cfg.RootCAs = ca.Pool()
			cfg.CipherSuites = nil
			tt.cfg(cfg)
			c, err := tls.Dial("tcp", tt.p.addr, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := roundTrip(t, c, "hello"); got != "hello" {
				t.Fatalf("echo = %q", got)
			}
			ssl := sslTLV(t, waitHeader(t, be))
			cn, _ := ssl.ClientCN()
			version, _ := ssl.SSLVersion()
			cipher, _ := ssl.SSLCipher()
			sigAlg, _ := ssl.SSLSigAlg()
			keyAlg, _ := ssl.SSLKeyAlg()
			got := want{verified: ssl.Verified(), certConn: ssl.ClientCertConn(), certSess: ssl.ClientCertSess(), cn: cn, version: version, cipher: cipher, sigAlg: sigAlg, keyAlg: keyAlg}
			if !ssl.ClientSSL() || got != tt.want {
				t.Fatalf("TLV = %+v (client SSL %v), want %+v", got, ssl.ClientSSL(), tt.want)
			}
		})
	}

	t.Run("resumed session", func(t *testing.T) {
		cfg := ca.ClientConfig("localhost")
		cfg.Certificates = []tls.Certificate{device}
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		for i, wantResumed := range []bool{false, true} {
			c, err := tls.Dial("tcp", p.addr, cfg)
			if err != nil {
				t.Fatal(err)
			}
			roundTrip(t, c, "hello") // reads the session ticket too
			resumed := c.ConnectionState().DidResume
			c.Close()
			ssl := sslTLV(t, waitHeader(t, be))
			if resumed != wantResumed {
				t.Fatalf("connection %d: resumed %v, want %v", i, resumed, wantResumed)
			}
			cn, _ := ssl.ClientCN()
			_, hasSigAlg := ssl.SSLSigAlg()
			// A resumed session carries the certificate of the full
			// handshake, verified again, but none was sent on it.
			if !ssl.Verified() || cn != "device-42" || !ssl.ClientCertSess() || ssl.ClientCertConn() == resumed || hasSigAlg == resumed {
				t.Fatalf("connection %d (resumed %v): verified %v cn %q sess %v conn %v sig alg %v", i, resumed, ssl.Verified(), cn, ssl.ClientCertSess(), ssl.ClientCertConn(), hasSigAlg)
			}
		}
	})
}

func TestProxyProtocolSSLTLVNeedsVersion2(t *testing.T) {
	be := newEchoBackend(t, false)
	b := be.backend()
	b.ProxyProtocol = 1
	_, err := New(Options{Name: "x", Kind: KindTCP, Backend: b, TLS: &tls.Config{Certificates: []tls.Certificate{{}}}, ProxyProtocolTLS: true})
	if err == nil {
		t.Fatal("SSL TLV with PROXY protocol 1 accepted")
	}
}

// TestClientAllowList: with an allow list, a client certificate that
// verified is let in when its CN, an OU, a DNS SAN or a URI SAN (SPIFFE
// ID) is listed, and refused with a bad_certificate alert and its own
// reason otherwise. The chain is checked first: a listed CN from another
// CA is a chain failure, not an allow-list one.
func TestClientAllowList(t *testing.T) {
	ca := pkitest.NewCA(t)
	other := pkitest.NewCA(t)
	be := newEchoBackend(t, false)
	rec := newRecorder()
	spiffe, _ := url.Parse("spiffe://example.org/ns/prod/sa/meter")
	otherSpiffe, _ := url.Parse("spiffe://example.org/ns/dev/sa/meter")
	allow := &ClientAllow{CN: []string{"device-1"}, OU: []string{"meters"}, DNS: []string{"gw.example.com"}, URI: []string{spiffe.String()}}
	p := startProxy(t, Options{Backend: be.backend(), TLS: mtlsConfig(t, ca, false), ClientAllow: allow, Reporter: rec})

	for _, tt := range []struct {
		name string
		cert *tls.Certificate
		ok   bool
		want Reason
	}{
		{"listed CN", ptr(clientCert(ca, pki.Options{CommonName: "device-1"})), true, ""},
		{"listed OU", ptr(clientCert(ca, pki.Options{CommonName: "device-9", OrganizationalUnit: []string{"sensors", "meters"}})), true, ""},
		{"listed DNS SAN, other case", ptr(clientCert(ca, pki.Options{CommonName: "gw", DNSNames: []string{"GW.example.com"}})), true, ""},
		{"listed SPIFFE ID", ptr(clientCert(ca, pki.Options{CommonName: "meter", URIs: []*url.URL{spiffe}})), true, ""},
		{"unlisted CN", ptr(clientCert(ca, pki.Options{CommonName: "device-2"})), false, ReasonClientCertNotAllowed},
		{"unlisted SPIFFE ID", ptr(clientCert(ca, pki.Options{CommonName: "meter", URIs: []*url.URL{otherSpiffe}})), false, ReasonClientCertNotAllowed},
		{"no certificate", nil, false, ReasonClientCertNotAllowed},
		{"listed CN from another CA", ptr(clientCert(other, pki.Options{CommonName: "device-1"})), false, ReasonOther},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ca.ClientConfig("localhost")
			if tt.cert != nil {
				cfg.Certificates = []tls.Certificate{*tt.cert}
			}
			c, err := tls.Dial("tcp", p.addr, cfg)
			if err == nil {
				// In TLS 1.3 the server checks the client's certificate
				// after the client finished: the refusal comes on read.
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err = io.WriteString(c, "ping"); err == nil {
					_, err = io.ReadFull(c, make([]byte, 4))
				}
				c.Close()
			}
			ev := p.waitEvent(t)
			if tt.ok {
				if err != nil || ev.Err != nil {
					t.Fatalf("refused: client %v, server %v", err, ev.Err)
				}
				return
			}
			if err == nil {
				t.Fatal("let in")
			}
			if ev.Reason != tt.want {
				t.Fatalf("reason %q (server err %v), want %q", ev.Reason, ev.Err, tt.want)
			}
			if tt.want == ReasonClientCertNotAllowed {
				var ne *ClientNotAllowedError
				if !errors.As(ev.Err, &ne) || !isBadCertificateAlert(err) {
					t.Fatalf("server err %v, client err %v; want a bad_certificate alert", ev.Err, err)
				}
			}
		})
	}
	eventually(t, "refusals reported with their reason", 5*time.Second, func() bool {
		hs, _ := rec.snapshot()
		n := 0
		for _, h := range hs {
			if h.Reason == string(ReasonClientCertNotAllowed) {
				n++
			}
		}
		return n == 3
	})
}

func ptr[T any](v T) *T { return &v }

func isBadCertificateAlert(err error) bool {
	r, ok := clientAlert(err)
	return ok && r == ReasonClientAlertBadCertificate
}
