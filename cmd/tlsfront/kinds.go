package main

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/tlsfront/tlsfront/certs"
	"github.com/tlsfront/tlsfront/proxy"
)

// listenerKind is everything tlsfront needs to know about one kind of
// listener. Validation, building, probing and challenge routing all read
// this table; nothing else switches on a kind.
type listenerKind struct {
	// tls: the listener terminates TLS, so it serves the certificates,
	// is probed and can answer TLS-ALPN-01.
	tls bool
	// backend: the listener forwards to a backend (and routes).
	backend bool
	// protocols the listener may carry; the first is the default. None
	// means the protocol key is not taken.
	protocols []string
	// challengePort is the port a CA connects to for this kind's ACME
	// challenge (80 for HTTP-01, 443 for TLS-ALPN-01).
	challengePort string
	build         func(a *app, lc listenerConfig) (proxy.Listener, error)
}

var listenerKinds = map[string]listenerKind{
	"tcp":      {tls: true, backend: true, protocols: []string{"mqtt", "raw"}, challengePort: "443", build: (*app).buildTLSListener},
	"http":     {tls: true, backend: true, challengePort: "443", build: (*app).buildTLSListener},
	"redirect": {challengePort: "80", build: (*app).buildRedirect},
}

// kindNames lists the kinds for error messages.
func kindNames() string { return "tcp, http or redirect" }

func (a *app) buildTLSListener(lc listenerConfig) (proxy.Listener, error) {
	be, err := proxy.ParseBackend(lc.Backend)
	if err != nil {
		return nil, err
	}
	be.ProxyProtocol = lc.ProxyProtocol
	routes := map[string]proxy.Backend{}
	ho := proxy.HTTPOptions{
		PingInterval: lc.WebSocket.PingInterval, MaxMessageSize: lc.WebSocket.MaxMessageSize,
		RewriteHost:     lc.PreserveHost != nil && !*lc.PreserveHost,
		ForwardedHeader: lc.ForwardedHeader,
		MaxHeaderBytes:  lc.MaxHeaderBytes,
		ClientStreams:   lc.ClientStreams,
		MinBodyRate:     lc.MinBodyRate,
	}
	for _, p := range lc.TrustedProxies {
		pf, err := parsePrefix(p)
		if err != nil {
			return nil, err
		}
		ho.TrustedProxies = append(ho.TrustedProxies, pf)
	}
	for _, r := range lc.Routes {
		rb, err := proxy.ParseBackend(r.Backend)
		if err != nil {
			return nil, err
		}
		rb.ProxyProtocol = lc.ProxyProtocol
		if lc.Kind == "http" {
			ho.Routes = append(ho.Routes, proxy.HTTPRoute{SNI: r.SNI, Host: r.Host, PathPrefix: r.PathPrefix, Backend: rb})
			continue
		}
		for _, n := range r.SNI {
			routes[strings.ToLower(n)] = rb
		}
	}
	protocol := lc.Protocol
	if protocol == "raw" {
		protocol = ""
	}
	opts := proxy.Options{
		Name:              lc.Name,
		Kind:              proxy.Kind(lc.Kind),
		TLS:               a.certs.TLSConfig(),
		Backend:           be,
		Routes:            routes,
		HandshakeTimeout:  lc.HandshakeTimeout,
		IdleTimeout:       lc.IdleTimeout,
		ParkAfter:         lc.ParkAfter,
		TLSPolicy:         lc.TLS.policy,
		AcceptProxyHeader: lc.AcceptProxyProtocol,
		TrustedProxies:    lc.ProxyProtocolFrom,
		Protocol:          protocol,
		Limiter:           a.limiter,
		Reporter:          a.rep,
		KnownName:         a.certs.Covers,
		HTTP:              ho,
		Log:               a.log,
	}
	opts.MQTTMaxConnectSize = lc.MQTTMaxConnectSize
	opts.ProxyProtocolTLS = lc.ProxyProtocolTLS
	opts.ClientCertsVerified = a.cfg.ClientAuth.enabled()
	if ca := lc.ClientAllow; !ca.empty() {
		opts.ClientAllow = &proxy.ClientAllow{CN: ca.CN, OU: ca.OU, DNS: ca.DNS, URI: ca.URI}
	}
	if lc.TLS.policy.BelowDefault() {
		a.log.Warn("listener accepts TLS below the default, on purpose: clients it lets in are weaker; see their JA4 fingerprints in the failed-handshake logs before and after", "listener", lc.Name, "tls_profile", lc.TLS.policy.Name())
	}
	if a.tickets != nil {
		// Every instance encrypts and decrypts tickets with the same
		// keys, so a client resumes wherever it lands.
		if err := a.tickets.Apply(opts.TLS); err != nil {
			return nil, fmt.Errorf("session tickets: %w", err)
		}
	}
	return proxy.New(opts)
}

func (a *app) buildRedirect(lc listenerConfig) (proxy.Listener, error) {
	o := proxy.RedirectOptions{HTTPSPort: lc.HTTPSPort, Limits: proxy.PlainLimits{Limiter: a.limiter}}
	if a.acme != nil {
		o.Wrap = a.acme.HTTPChallengeHandler
	}
	return proxy.NewRedirect(o), nil
}

// acmeOptions is the acme section as certs.ACMEOptions, reporting its
// events.
func (a *app) acmeOptions() (certs.ACMEOptions, error) {
	o, err := a.cfg.ACME.Options(a.cfg.StateDir)
	if err != nil {
		return o, err
	}
	o.OnEvent = certs.ReportACME(a.rep, a.log)
	o.Log = a.log.With("component", "acme")
	if a.redis != nil {
		o.StorageBackend = a.redis
	}
	if !a.cfg.hasChallengePort() {
		a.log.Warn("acme: no redirect listener on port 80 and no TLS listener on port 443; challenges succeed only if the CA's connections to those ports are forwarded to tlsfront's listeners")
	}
	return o, nil
}

// runACME starts certificate management once the listeners are bound, and
// stops it when ctx ends. Not starting fails tlsfront: it would otherwise
// serve without the certificates it was asked to obtain.
func (a *app) runACME(ctx context.Context) error {
	if err := a.acme.Start(a.challengeAddrs()); err != nil {
		return err
	}
	defer a.acme.Stop()
	if err := a.acme.Manage(ctx, a.cfg.ACME.Names); err != nil {
		return fmt.Errorf("names %v not managed: %w", a.cfg.ACME.Names, err)
	}
	<-ctx.Done()
	return nil
}

// challengeAddrs picks the bound listeners that answer challenges: the
// first redirect listener for HTTP-01 and a TLS listener, on port 443 if
// there is one, for TLS-ALPN-01.
func (a *app) challengeAddrs() certs.ChallengeAddrs {
	var ch certs.ChallengeAddrs
	for _, l := range a.listeners {
		addr := l.ln.Addr()
		if !l.kind.tls {
			if ch.HTTP == nil {
				ch.HTTP = addr
			}
			continue
		}
		if ch.TLS == nil || portOfAddr(addr) == 443 {
			ch.TLS = addr
		}
	}
	return ch
}

// hasChallengePort reports whether a listener is configured where a CA
// connects: port 80 for HTTP-01, 443 for TLS-ALPN-01.
func (c *config) hasChallengePort() bool {
	for _, lc := range c.Listeners {
		if _, p, err := net.SplitHostPort(lc.Listen); err == nil && p == listenerKinds[lc.Kind].challengePort {
			return true
		}
	}
	return false
}

func portOfAddr(a net.Addr) int {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.Port
	}
	return 0
}
