package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tlsfront/tlsfront/limits"
	"github.com/tlsfront/tlsfront/report"
)

// ListenerConfig is one entry of the listeners section of the
// configuration, as an operator writes it. Default and Validate check it
// and fill in what it leaves out; Build turns it into a Listener.
type ListenerConfig struct {
	Name string `yaml:"name"`
	// Kind is tcp (TLS in, TCP out), http (TLS in, HTTP/WebSocket out)
	// or redirect (plain HTTP answered with 301 to https).
	Kind    string `yaml:"kind"`
	Listen  string `yaml:"listen"`
	Backend string `yaml:"backend"`
	// Protocol is what a tcp listener carries: mqtt (default) lets
	// refusals be answered with a CONNACK; raw just closes.
	Protocol string `yaml:"protocol"`
	// MQTTMaxConnectSize is the largest MQTT CONNECT (bytes) read when
	// CONNECTs are read (client-id limit, refusals); 0: 256 KiB.
	MQTTMaxConnectSize int `yaml:"mqtt_max_connect_size"`
	// ProxyProtocol writes a PROXY header (1 or 2) to the backend.
	ProxyProtocol int `yaml:"proxy_protocol"`
	// ProxyProtocolTLS adds the SSL TLV (client certificate verified, its
	// CN, TLS version and cipher) to a version 2 PROXY header.
	ProxyProtocolTLS bool `yaml:"proxy_protocol_tls"`
	// ClientAllow lets in only the listed client certificates.
	ClientAllow ClientAllow `yaml:"client_allow"`
	// AcceptProxyProtocol reads a PROXY header from the trusted load
	// balancers in ProxyProtocolFrom; a header from anyone else is
	// refused.
	AcceptProxyProtocol bool            `yaml:"accept_proxy_protocol"`
	ProxyProtocolFrom   limits.Networks `yaml:"proxy_protocol_from"`
	HandshakeTimeout    time.Duration   `yaml:"handshake_timeout"`
	// ParkAfter: a tcp connection direction quiet this long gives back
	// its goroutine and waits in the shared readiness watcher (0: 1s;
	// negative: never).
	ParkAfter   time.Duration   `yaml:"park_after"`
	IdleTimeout time.Duration   `yaml:"idle_timeout"`
	Routes      []RouteConfig   `yaml:"routes"`
	WebSocket   WebSocketConfig `yaml:"websocket"`
	// HTTPSPort is where a redirect listener sends clients.
	HTTPSPort int `yaml:"https_port"`
	// TLS is what the listener accepts of clients' TLS stacks.
	TLS TLSPolicyConfig `yaml:"tls"`
	// PreserveHost (http listeners) sends the client's Host to the
	// backend; false sends the backend's address. Default true.
	PreserveHost *bool `yaml:"preserve_host"`
	// TrustedProxies (http listeners) are the CIDRs of peers whose
	// X-Forwarded-For and Forwarded are appended to rather than replaced.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// ForwardedHeader (http listeners) also sends RFC 7239 Forwarded.
	ForwardedHeader bool `yaml:"forwarded_header"`
	// MaxHeaderBytes (http listeners) caps a request's headers, HTTP/1.1
	// and HTTP/2 alike (0: 64 KiB).
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// ClientStreams (http listeners) caps one client's requests in
	// flight, HTTP/2 streams included (0: 100; negative: off).
	ClientStreams int `yaml:"client_streams"`
	// MinBodyRate (http listeners) is the least rate, in bytes per
	// second, a request body must keep after 10 s (0: 1024; negative:
	// off).
	MinBodyRate int64 `yaml:"min_body_rate"`
}

// TLSPolicyConfig is a listener's TLS policy as written: a profile and
// overrides, in the names operators use. Validate turns it into a
// TLSPolicy, which Policy returns.
type TLSPolicyConfig struct {
	// Profile is modern (default), intermediate or legacy.
	Profile      string   `yaml:"profile"`
	MinVersion   string   `yaml:"min_version"`
	MaxVersion   string   `yaml:"max_version"`
	CipherSuites []string `yaml:"cipher_suites"`
	Groups       []string `yaml:"groups"`
	// PostQuantum offers the X25519MLKEM768 hybrid; default true.
	PostQuantum *bool `yaml:"post_quantum"`

	policy TLSPolicy
}

// Policy is the policy the names stand for, once Validate has read them.
func (t TLSPolicyConfig) Policy() TLSPolicy { return t.policy }

// RouteConfig sends some of a listener's clients to their own backend.
type RouteConfig struct {
	SNI []string `yaml:"sni"`
	// Host and PathPrefix (http listeners) also match the Host header
	// and the start of the path; see HTTPRoute for precedence.
	Host       []string `yaml:"host"`
	PathPrefix string   `yaml:"path_prefix"`
	Backend    string   `yaml:"backend"`
}

// WebSocketConfig is the websocket section of an http listener.
type WebSocketConfig struct {
	PingInterval   time.Duration `yaml:"ping_interval"`
	MaxMessageSize int64         `yaml:"max_message_size"`
}

// KindSpec is everything tlsfront needs to know about one kind of
// listener. Validation, building, probing and challenge routing all read
// the table of kinds; nothing else switches on a kind.
type KindSpec struct {
	// TLS: the listener terminates TLS, so it serves the certificates,
	// is probed and can answer TLS-ALPN-01.
	TLS bool
	// Backend: the listener forwards to a backend (and routes).
	Backend bool
	// Protocols the listener may carry; the first is the default. None
	// means the protocol key is not taken.
	Protocols []string
	// ChallengePort is the port a CA connects to for this kind's ACME
	// challenge (80 for HTTP-01, 443 for TLS-ALPN-01).
	ChallengePort string

	build func(l *ListenerConfig, d ListenerDeps) (Listener, error)
}

// kinds is the table of listener kinds; kindNames lists them for errors.
var kinds = map[string]KindSpec{
	"tcp":      {TLS: true, Backend: true, Protocols: []string{"mqtt", "raw"}, ChallengePort: "443", build: (*ListenerConfig).buildTLS},
	"http":     {TLS: true, Backend: true, ChallengePort: "443", build: (*ListenerConfig).buildTLS},
	"redirect": {ChallengePort: "80", build: (*ListenerConfig).buildRedirect},
}

const kindNames = "tcp, http or redirect"

// Spec is what the listener's kind needs; the zero KindSpec for a kind
// that does not exist (Validate reports it).
func (l *ListenerConfig) Spec() KindSpec { return kinds[l.Kind] }

// RoutedNames returns every server name a route of the listeners sends
// somewhere; each must be covered by a certificate.
func RoutedNames(listeners []ListenerConfig) []string {
	var out []string
	for _, l := range listeners {
		for _, r := range l.Routes {
			out = append(out, r.SNI...)
		}
	}
	return out
}

// ValidateListeners checks the listeners section as a whole, after
// filling in each entry's defaults: every entry (see Validate), names
// unique, listen addresses host:port. It reports every problem at once,
// each naming its field, e.g. "listeners[1].name".
func ValidateListeners(listeners []ListenerConfig) error {
	var errs []error
	names := map[string]bool{}
	for i := range listeners {
		l := &listeners[i]
		at := fmt.Sprintf("listeners[%d]", i)
		l.Default(i)
		if names[l.Name] {
			errs = append(errs, fmt.Errorf("%s.name: %q is used by another listener", at, l.Name))
		}
		names[l.Name] = true
		if err := ValidHostPort(l.Listen); err != nil {
			errs = append(errs, fmt.Errorf("%s.listen: %w", at, err))
		}
		if err := l.Validate(at); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ValidHostPort checks a listen address: host:port, or :port for every
// interface.
func ValidHostPort(s string) error {
	if s == "" {
		return errors.New("missing address (host:port, or :port for all interfaces)")
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	return nil
}

// CountTLS counts the listeners that terminate TLS.
func CountTLS(listeners []ListenerConfig) int {
	n := 0
	for _, l := range listeners {
		if l.Spec().TLS {
			n++
		}
	}
	return n
}

// Default fills in the kind (tcp) and the name, from the kind and i, the
// listener's position in the section.
func (l *ListenerConfig) Default(i int) {
	if l.Kind == "" {
		l.Kind = "tcp"
	}
	if l.Name == "" {
		l.Name = fmt.Sprintf("%s-%d", l.Kind, i)
	}
}

// Validate checks l, after Default, and fills in the protocol and the TLS
// policy. It reports every problem at once, one a line, each starting
// with at (where the listener sits, e.g. "listeners[0]") and the YAML key.
// It checks neither the listen address nor rules that span sections, such
// as client_allow needing client certificates verified.
func (l *ListenerConfig) Validate(at string) error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	f := at
	if l.HandshakeTimeout < 0 || l.IdleTimeout < 0 {
		bad(f, "timeouts must not be negative")
	}
	kind, ok := kinds[l.Kind]
	if !ok {
		bad(f+".kind", "%q is not %s", l.Kind, kindNames)
		return errors.Join(errs...)
	}
	switch {
	case len(kind.Protocols) > 0 && l.Protocol == "":
		l.Protocol = kind.Protocols[0]
	case len(kind.Protocols) > 0 && !slices.Contains(kind.Protocols, l.Protocol):
		bad(f+".protocol", "%q is not %s", l.Protocol, strings.Join(kind.Protocols, " or "))
	case len(kind.Protocols) == 0 && l.Protocol != "":
		bad(f+".protocol", "a %s listener takes no protocol", l.Kind)
	}
	if l.MQTTMaxConnectSize != 0 && l.Protocol != "mqtt" {
		bad(f+".mqtt_max_connect_size", "only a tcp listener with protocol mqtt reads CONNECTs")
	} else if l.MQTTMaxConnectSize != 0 && (l.MQTTMaxConnectSize < 128 || l.MQTTMaxConnectSize > MaxMQTTPacketSize) {
		bad(f+".mqtt_max_connect_size", "%d is not between 128 and %d bytes (0: %d)", l.MQTTMaxConnectSize, MaxMQTTPacketSize, DefaultMQTTMaxConnectSize)
	}
	if l.ProxyProtocolTLS && (l.Kind != "tcp" || l.ProxyProtocol != 2) {
		bad(f+".proxy_protocol_tls", "needs a tcp listener with proxy_protocol: 2 (the SSL TLV exists only in version 2)")
	}
	if !l.ClientAllow.Empty() {
		if !kind.TLS {
			bad(f+".client_allow", "a %s listener takes no client certificates", l.Kind)
		}
		for j, u := range l.ClientAllow.URI {
			if pu, err := url.Parse(u); err != nil || pu.Scheme == "" {
				bad(fmt.Sprintf("%s.client_allow.uri[%d]", f, j), "%q is not a URI such as spiffe://example.org/ns/prod/sa/meter", u)
			}
		}
	}
	if kind.TLS {
		errs = append(errs, l.TLS.normalize(f+".tls.")...)
	} else if l.TLS.Profile != "" || l.TLS.MinVersion != "" {
		bad(f+".tls", "a %s listener does not terminate TLS", l.Kind)
	}
	if !kind.Backend {
		if l.Backend != "" {
			bad(f+".backend", "a %s listener has no backend", l.Kind)
		}
		return errors.Join(errs...)
	}
	if l.Backend == "" {
		bad(f+".backend", "missing: where should plaintext go? (host:port or unix:/path)")
	} else if _, err := ParseBackend(l.Backend); err != nil {
		bad(f+".backend", "%v", err)
	}
	if l.AcceptProxyProtocol && len(l.ProxyProtocolFrom) == 0 {
		bad(f+".proxy_protocol_from", "required with accept_proxy_protocol: list the load balancers' networks (e.g. [10.0.0.0/8]); a PROXY header from anyone else would let a client choose the address tlsfront limits and the backend sees")
	}
	if !l.AcceptProxyProtocol && len(l.ProxyProtocolFrom) > 0 {
		bad(f+".proxy_protocol_from", "set, but accept_proxy_protocol is off")
	}
	if l.ProxyProtocol != 0 && l.ProxyProtocol != 1 && l.ProxyProtocol != 2 {
		bad(f+".proxy_protocol", "%d is not 0 (off), 1 or 2", l.ProxyProtocol)
	}
	http := l.Kind == "http"
	for j, r := range l.Routes {
		rf := fmt.Sprintf("%s.routes[%d]", f, j)
		switch {
		case !http && (len(r.Host) > 0 || r.PathPrefix != ""):
			bad(rf, "host and path_prefix route http listeners only; a %s listener routes by sni", l.Kind)
		case len(r.SNI) == 0 && !http:
			bad(rf+".sni", "missing: which server names go to this backend?")
		case len(r.SNI) == 0 && len(r.Host) == 0 && r.PathPrefix == "":
			bad(rf, "missing: give sni, host or path_prefix to say which requests go to this backend")
		}
		if r.PathPrefix != "" && !strings.HasPrefix(r.PathPrefix, "/") {
			bad(rf+".path_prefix", "%q must start with /", r.PathPrefix)
		}
		if _, err := ParseBackend(r.Backend); err != nil {
			bad(rf+".backend", "%v", err)
		}
	}
	if !http && (l.PreserveHost != nil || len(l.TrustedProxies) > 0 || l.ForwardedHeader) {
		bad(f, "preserve_host, trusted_proxies and forwarded_header are for http listeners")
	}
	for j, p := range l.TrustedProxies {
		if _, err := parseTrustedProxy(p); err != nil {
			bad(fmt.Sprintf("%s.trusted_proxies[%d]", f, j), "%v", err)
		}
	}
	return errors.Join(errs...)
}

// parseTrustedProxy reads a CIDR, or a single address as its own prefix,
// in the trusted_proxies key's words.
func parseTrustedProxy(s string) (p netip.Prefix, err error) {
	if p, err = limits.ParseNetwork(s); err != nil {
		return p, fmt.Errorf("%q is not a CIDR (10.0.0.0/8) or an address", s)
	}
	return p, nil
}

// normalize turns the names into a TLSPolicy, reporting each that does
// not parse, its key after at.
func (t *TLSPolicyConfig) normalize(at string) []error {
	var errs []error
	bad := func(key string, err error) { errs = append(errs, fmt.Errorf("%s%s: %w", at, key, err)) }
	p := TLSPolicy{Profile: t.Profile, NoPostQuantum: t.PostQuantum != nil && !*t.PostQuantum}
	var err error
	if t.MinVersion != "" {
		if p.MinVersion, err = ParseTLSVersion(t.MinVersion); err != nil {
			bad("min_version", err)
		}
	}
	if t.MaxVersion != "" {
		if p.MaxVersion, err = ParseTLSVersion(t.MaxVersion); err != nil {
			bad("max_version", err)
		}
	}
	for i, s := range t.CipherSuites {
		id, err := ParseCipherSuite(s)
		if err != nil {
			bad(fmt.Sprintf("cipher_suites[%d]", i), err)
		}
		p.CipherSuites = append(p.CipherSuites, id)
	}
	for i, s := range t.Groups {
		g, err := ParseGroup(s)
		if err != nil {
			bad(fmt.Sprintf("groups[%d]", i), err)
		}
		p.Groups = append(p.Groups, g)
	}
	if err := p.Validate(); err != nil {
		bad("profile", err)
	}
	t.policy = p
	return errs
}

// ListenerDeps are what a listener built from a ListenerConfig takes from
// the rest of tlsfront.
type ListenerDeps struct {
	// TLS serves the certificates of TLS kinds; see Options.TLS.
	TLS *tls.Config
	// ClientCertsVerified: see Options.ClientCertsVerified.
	ClientCertsVerified bool
	// Limiter decides admission; nil admits everything.
	Limiter *limits.Limiter
	// Reporter receives the listener's events; nil drops them.
	Reporter report.Sink
	// KnownName: see Options.KnownName.
	KnownName func(serverName string) bool
	// WrapRedirect wraps a redirect listener's handler, e.g. to answer
	// ACME HTTP-01 challenges; nil leaves it alone.
	WrapRedirect func(http.Handler) http.Handler
	Log          *slog.Logger
}

// Build makes the listener l describes, as its kind says; l has been
// validated. It starts nothing and binds nothing.
func (l *ListenerConfig) Build(d ListenerDeps) (Listener, error) {
	kind, ok := kinds[l.Kind]
	if !ok {
		return nil, fmt.Errorf("kind %q is not %s", l.Kind, kindNames)
	}
	return kind.build(l, d)
}

func (l *ListenerConfig) buildTLS(d ListenerDeps) (Listener, error) {
	be, err := ParseBackend(l.Backend)
	if err != nil {
		return nil, err
	}
	be.ProxyProtocol = l.ProxyProtocol
	routes := map[string]Backend{}
	ho := HTTPOptions{
		PingInterval: l.WebSocket.PingInterval, MaxMessageSize: l.WebSocket.MaxMessageSize,
		RewriteHost:     l.PreserveHost != nil && !*l.PreserveHost,
		ForwardedHeader: l.ForwardedHeader,
		MaxHeaderBytes:  l.MaxHeaderBytes,
		ClientStreams:   l.ClientStreams,
		MinBodyRate:     l.MinBodyRate,
	}
	for _, p := range l.TrustedProxies {
		pf, err := parseTrustedProxy(p)
		if err != nil {
			return nil, err
		}
		ho.TrustedProxies = append(ho.TrustedProxies, pf)
	}
	for _, r := range l.Routes {
		rb, err := ParseBackend(r.Backend)
		if err != nil {
			return nil, err
		}
		rb.ProxyProtocol = l.ProxyProtocol
		if l.Kind == "http" {
			ho.Routes = append(ho.Routes, HTTPRoute{SNI: r.SNI, Host: r.Host, PathPrefix: r.PathPrefix, Backend: rb})
			continue
		}
		for _, n := range r.SNI {
			routes[strings.ToLower(n)] = rb
		}
	}
	protocol := l.Protocol
	if protocol == "raw" {
		protocol = ""
	}
	opts := Options{
		Name:                l.Name,
		Kind:                Kind(l.Kind),
		TLS:                 d.TLS,
		Backend:             be,
		Routes:              routes,
		HandshakeTimeout:    l.HandshakeTimeout,
		IdleTimeout:         l.IdleTimeout,
		ParkAfter:           l.ParkAfter,
		TLSPolicy:           l.TLS.policy,
		AcceptProxyHeader:   l.AcceptProxyProtocol,
		TrustedProxies:      l.ProxyProtocolFrom,
		Protocol:            protocol,
		MQTTMaxConnectSize:  l.MQTTMaxConnectSize,
		ProxyProtocolTLS:    l.ProxyProtocolTLS,
		ClientCertsVerified: d.ClientCertsVerified,
		Limiter:             d.Limiter,
		Reporter:            d.Reporter,
		KnownName:           d.KnownName,
		HTTP:                ho,
		Log:                 d.Log,
	}
	if ca := l.ClientAllow; !ca.Empty() {
		opts.ClientAllow = &ca
	}
	if l.TLS.policy.BelowDefault() && d.Log != nil {
		d.Log.Warn("listener accepts TLS below the default, on purpose: clients it lets in are weaker; see their JA4 fingerprints in the failed-handshake logs before and after", "listener", l.Name, "tls_profile", l.TLS.policy.Name())
	}
	return New(opts)
}

func (l *ListenerConfig) buildRedirect(d ListenerDeps) (Listener, error) {
	return NewRedirect(RedirectOptions{HTTPSPort: l.HTTPSPort, Limits: PlainLimits{Limiter: d.Limiter}, Wrap: d.WrapRedirect}), nil
}
