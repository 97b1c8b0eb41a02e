package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tlsfront/tlsfront/proxy"
)

// validate checks cfg and fills in derived defaults (listener names). It
// reports every problem at once, each naming its field.
func (c *config) validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if err := validHostPort(c.Admin); err != nil && c.Admin != "" {
		bad("admin", "%v", err)
	}
	if err := validHostPort(c.AdminGuard.Metrics); err != nil && c.AdminGuard.Metrics != "" {
		bad("admin_guard.metrics", "%v", err)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format", "%q is not text or json", c.Log.Format)
	}
	if _, err := parseLevel(c.Log.Level); err != nil {
		bad("log.level", "%v", err)
	}
	if c.ShutdownGrace < 0 {
		bad("shutdown_grace", "must not be negative")
	}
	if c.ShutdownDelay < 0 || c.ShutdownDelay > 5*time.Minute {
		bad("shutdown_delay", "%v is not between 0 and 5m (typical: 5s)", c.ShutdownDelay)
	}
	if len(c.Listeners) == 0 {
		bad("listeners", "none configured; give --listen and --backend, or a listeners section in --config")
	}
	names := map[string]bool{}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		f := fmt.Sprintf("listeners[%d]", i)
		if l.Kind == "" {
			l.Kind = "tcp"
		}
		if l.Name == "" {
			l.Name = fmt.Sprintf("%s-%d", l.Kind, i)
		}
		if names[l.Name] {
			bad(f+".name", "%q is used by another listener", l.Name)
		}
		names[l.Name] = true
		if err := validHostPort(l.Listen); err != nil {
			bad(f+".listen", "%v", err)
		}
		if l.HandshakeTimeout < 0 || l.IdleTimeout < 0 {
			bad(f, "timeouts must not be negative")
		}
		kind, ok := listenerKinds[l.Kind]
		if !ok {
			bad(f+".kind", "%q is not %s", l.Kind, kindNames())
			continue
		}
		switch {
		case len(kind.protocols) > 0 && l.Protocol == "":
			l.Protocol = kind.protocols[0]
		case len(kind.protocols) > 0 && !slices.Contains(kind.protocols, l.Protocol):
			bad(f+".protocol", "%q is not %s", l.Protocol, strings.Join(kind.protocols, " or "))
		case len(kind.protocols) == 0 && l.Protocol != "":
			bad(f+".protocol", "a %s listener takes no protocol", l.Kind)
		}
		if l.MQTTMaxConnectSize != 0 && l.Protocol != "mqtt" {
			bad(f+".mqtt_max_connect_size", "only a tcp listener with protocol mqtt reads CONNECTs")
		} else if l.MQTTMaxConnectSize != 0 && (l.MQTTMaxConnectSize < 128 || l.MQTTMaxConnectSize > proxy.MaxMQTTPacketSize) {
			bad(f+".mqtt_max_connect_size", "%d is not between 128 and %d bytes (0: %d)", l.MQTTMaxConnectSize, proxy.MaxMQTTPacketSize, proxy.DefaultMQTTMaxConnectSize)
		}
		if l.ProxyProtocolTLS && (l.Kind != "tcp" || l.ProxyProtocol != 2) {
			bad(f+".proxy_protocol_tls", "needs a tcp listener with proxy_protocol: 2 (the SSL TLV exists only in version 2)")
		}
		if !l.ClientAllow.empty() {
			if !kind.tls {
				bad(f+".client_allow", "a %s listener takes no client certificates", l.Kind)
			}
			if !c.ClientAuth.enabled() {
				bad(f+".client_allow", "needs client_auth.ca_file (--client-ca): only certificates that verify are checked against the list")
			}
			for j, u := range l.ClientAllow.URI {
				if pu, err := url.Parse(u); err != nil || pu.Scheme == "" {
					bad(fmt.Sprintf("%s.client_allow.uri[%d]", f, j), "%q is not a URI such as spiffe://example.org/ns/prod/sa/meter", u)
				}
			}
		}
		if kind.tls {
			for _, err := range l.TLS.normalize() {
				bad(f+".tls."+err.key, "%v", err.err)
			}
		} else if l.TLS.Profile != "" || l.TLS.MinVersion != "" {
			bad(f+".tls", "a %s listener does not terminate TLS", l.Kind)
		}
		if !kind.backend {
			if l.Backend != "" {
				bad(f+".backend", "a %s listener has no backend", l.Kind)
			}
			continue
		}
		if l.Backend == "" {
			bad(f+".backend", "missing: where should plaintext go? (host:port or unix:/path)")
		} else if _, err := proxy.ParseBackend(l.Backend); err != nil {
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
			if _, err := proxy.ParseBackend(r.Backend); err != nil {
				bad(rf+".backend", "%v", err)
			}
		}
		if !http && (l.PreserveHost != nil || len(l.TrustedProxies) > 0 || l.ForwardedHeader) {
			bad(f, "preserve_host, trusted_proxies and forwarded_header are for http listeners")
		}
		for j, p := range l.TrustedProxies {
			if _, err := parsePrefix(p); err != nil {
				bad(fmt.Sprintf("%s.trusted_proxies[%d]", f, j), "%v", err)
			}
		}
	}
	if len(c.Certificates) == 0 && !c.ACME.On() && c.hasTLSListener() {
		bad("certificates", "none configured; give --cert and --key, a certificates section, or acme")
	}
	for i, cc := range c.Certificates {
		if f, ok := cc.folder(); ok {
			if err := f.Validate(); err != nil {
				bad(fmt.Sprintf("certificates[%d]", i), "%v", strings.ReplaceAll(err.Error(), "\n", "; "))
			}
			continue
		}
		if cc.Cert == "" {
			bad(fmt.Sprintf("certificates[%d].cert", i), "missing: path of the PEM certificate (leaf first), or dir: a folder of them")
		}
	}
	if err := c.Trust.Validate(); err != nil {
		errs = append(errs, err)
	}
	for _, sec := range []struct {
		key string
		err error
	}{{"redis", c.Redis.Validate()}, {"session_tickets", c.SessionTickets.Validate()}} {
		if sec.err != nil {
			errs = append(errs, prefixErrors(sec.key, sec.err))
		}
	}
	if err := c.ACME.Validate(); err != nil {
		errs = append(errs, err)
	}
	for _, v := range []interface{ validate() error }{&c.Limits, &c.Monitor, &c.Reload, &c.ClientAuth} {
		if err := v.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (c *config) hasTLSListener() bool {
	for _, l := range c.Listeners {
		if listenerKinds[l.Kind].tls {
			return true
		}
	}
	return false
}

// routedNames returns every server name a route sends somewhere; each must
// be covered by a certificate.
func (c *config) routedNames() []string {
	var out []string
	for _, l := range c.Listeners {
		for _, r := range l.Routes {
			out = append(out, r.SNI...)
		}
	}
	return out
}

// parsePrefix reads a CIDR, or a single address as its own prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR (10.0.0.0/8) or an address", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

func validHostPort(s string) error {
	if s == "" {
		return errors.New("missing address (host:port, or :port for all interfaces)")
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	return nil
}

func parseLevel(s string) (level int, err error) {
	switch strings.ToLower(s) {
	case "debug":
		return -4, nil
	case "info", "":
		return 0, nil
	case "warn":
		return 4, nil
	case "error":
		return 8, nil
	}
	return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
}

// prefixErrors puts section. before each of err's lines, for a package
// whose Validate names keys within its section.
func prefixErrors(section string, err error) error {
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		lines[i] = section + "." + l
	}
	return errors.New(strings.Join(lines, "\n"))
}

type keyError struct {
	key string
	err error
}

// normalize turns the names into a proxy.TLSPolicy, reporting each that
// does not parse.
func (t *tlsConfig) normalize() []keyError {
	var errs []keyError
	p := proxy.TLSPolicy{Profile: t.Profile, NoPostQuantum: t.PostQuantum != nil && !*t.PostQuantum}
	var err error
	if t.MinVersion != "" {
		if p.MinVersion, err = proxy.ParseTLSVersion(t.MinVersion); err != nil {
			errs = append(errs, keyError{"min_version", err})
		}
	}
	if t.MaxVersion != "" {
		if p.MaxVersion, err = proxy.ParseTLSVersion(t.MaxVersion); err != nil {
			errs = append(errs, keyError{"max_version", err})
		}
	}
	for i, s := range t.CipherSuites {
		id, err := proxy.ParseCipherSuite(s)
		if err != nil {
			errs = append(errs, keyError{fmt.Sprintf("cipher_suites[%d]", i), err})
		}
		p.CipherSuites = append(p.CipherSuites, id)
	}
	for i, s := range t.Groups {
		g, err := proxy.ParseGroup(s)
		if err != nil {
			errs = append(errs, keyError{fmt.Sprintf("groups[%d]", i), err})
		}
		p.Groups = append(p.Groups, g)
	}
	if err := p.Validate(); err != nil {
		errs = append(errs, keyError{"profile", err})
	}
	t.policy = p
	return errs
}
