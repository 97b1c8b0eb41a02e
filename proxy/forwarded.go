package proxy

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"net/http"
	"net/netip"
	"strings"
)

// What an http listener tells the backend about the client, the same on
// plain requests and on WebSocket upgrades.

// hopHeaders are meaningful only for one connection (RFC 9110 section
// 7.6.1); a proxy removes them, and every header the Connection header
// names.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func removeHopHeaders(h http.Header) {
	for _, v := range h.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		h.Del(name)
	}
}

const xfccHeader = "X-Forwarded-Client-Cert"

// setForwarding writes the forwarding headers of out, a request to the
// backend made from in, which came from peer (the TCP peer, or the
// source a trusted load balancer's PROXY header named).
//
// X-Forwarded-For gets peer appended when peer is a trusted proxy, and is
// replaced by it otherwise, so an untrusted client cannot pose as another
// address. Forwarded (RFC 7239) follows the same rule when turned on, and
// passes only from trusted proxies when off. X-Forwarded-Client-Cert is
// always dropped from what the client sent, and set from the verified
// client certificate when there is one.
func (h *httpForwarder) setForwarding(out http.Header, in *http.Request, peer netip.Addr) {
	trusted := h.trusted(peer)
	xff := peer.String()
	if prior := in.Header.Values("X-Forwarded-For"); trusted && len(prior) > 0 {
		xff = strings.Join(prior, ", ") + ", " + xff
	}
	out.Set("X-Forwarded-For", xff)
	out.Set("X-Forwarded-Proto", "https")
	out.Set("X-Forwarded-Host", in.Host)

	prior := in.Header.Values("Forwarded")
	out.Del("Forwarded")
	switch {
	case h.opts.ForwardedHeader:
		elem := "for=" + forwardedNode(peer) + ";host=" + forwardedValue(in.Host) + ";proto=https"
		if trusted && len(prior) > 0 {
			elem = strings.Join(prior, ", ") + ", " + elem
		}
		out.Set("Forwarded", elem)
	case trusted:
		for _, v := range prior {
			out.Add("Forwarded", v)
		}
	}

	out.Del(xfccHeader)
	if v := h.clientCertValue(in); v != "" {
		out.Set(xfccHeader, v)
	}
}

// trusted reports whether peer is a proxy whose forwarding headers are
// believed.
func (h *httpForwarder) trusted(peer netip.Addr) bool {
	return h.opts.TrustedProxies.Contains(peer)
}

// forwardedNode is a node for RFC 7239's for=: IPv6 in brackets, quoted.
func forwardedNode(a netip.Addr) string {
	if a.Is6() {
		return `"[` + a.String() + `]"`
	}
	return a.String()
}

// forwardedValue quotes v unless it is an RFC 7230 token.
func forwardedValue(v string) string {
	for _, r := range v {
		if !isTokenRune(r) {
			return quote(v)
		}
	}
	if v == "" {
		return `""`
	}
	return v
}

func isTokenRune(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	}
	return strings.ContainsRune("!#$%&'*+-.^_`|~", r)
}

func quote(v string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}

// clientCertValue is the X-Forwarded-Client-Cert value for the request's
// client certificate, in Envoy's format: Hash (SHA-256 of the DER, hex),
// Subject (RFC 2253, always quoted), URI (the first URI SAN, empty when
// none) and one DNS pair per DNS SAN; a value with , ; = or a quote is
// quoted. It is empty unless the listener verifies client certificates
// and the client sent one. By (the proxy's own URI SAN) is left out: a
// server certificate rarely has one.
func (h *httpForwarder) clientCertValue(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return ""
	}
	if !h.certsVerified && len(r.TLS.VerifiedChains) == 0 {
		return ""
	}
	return xfccValue(r.TLS.PeerCertificates[0])
}

func xfccValue(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	var b strings.Builder
	b.WriteString("Hash=" + hex.EncodeToString(sum[:]))
	b.WriteString(";Subject=" + quote(c.Subject.String()))
	uri := ""
	if len(c.URIs) > 0 {
		uri = c.URIs[0].String()
	}
	b.WriteString(";URI=" + xfccQuote(uri))
	for _, d := range c.DNSNames {
		b.WriteString(";DNS=" + xfccQuote(d))
	}
	return b.String()
}

func xfccQuote(v string) string {
	if strings.ContainsAny(v, `,;="\`) {
		return quote(v)
	}
	return v
}
