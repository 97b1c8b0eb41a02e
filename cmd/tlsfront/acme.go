package main

import (
	"context"
	"net"

	"github.com/tlsfront/tlsfront/certs"
)

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

// runACME starts certificate management once the listeners are bound,
// and stops it when ctx ends.
func (a *app) runACME(ctx context.Context) error {
	return a.acme.Run(ctx, a.challengeAddrs(), a.cfg.ACME.Names)
}

// challengeAddrs picks the bound listeners that answer challenges: the
// first redirect listener for HTTP-01 and a TLS listener, on port 443 if
// there is one, for TLS-ALPN-01.
func (a *app) challengeAddrs() certs.ChallengeAddrs {
	var ch certs.ChallengeAddrs
	for _, l := range a.listeners {
		ch.Add(l.ln.Addr(), l.kind.TLS)
	}
	return ch
}

// hasChallengePort reports whether a listener is configured where a CA
// connects: port 80 for HTTP-01, 443 for TLS-ALPN-01.
func (c *config) hasChallengePort() bool {
	for _, lc := range c.Listeners {
		if _, p, err := net.SplitHostPort(lc.Listen); err == nil && p == lc.Spec().ChallengePort {
			return true
		}
	}
	return false
}
