package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"

	"github.com/tlsfront/tlsfront/certs"
)

// setupACME adds the acme part to the app: certificates for the names no
// configured file covers are obtained and renewed from the CA. It starts
// nothing; the task it adds does, once the listeners are bound.
func (a *app) setupACME() error {
	c := &a.cfg.ACME
	if !c.enabled() {
		return nil
	}
	opts, err := a.acmeOptions()
	if err != nil {
		return err
	}
	am, err := certs.NewACME(opts)
	if err != nil {
		return err
	}
	a.store.Fallback = am.GetCertificate
	a.tlsHooks = append(a.tlsHooks, am.WrapTLSConfig)
	if prev := a.redirectWrap; prev != nil {
		a.redirectWrap = func(h http.Handler) http.Handler { return am.HTTPChallengeHandler(prev(h)) }
	} else {
		a.redirectWrap = am.HTTPChallengeHandler
	}
	if !a.hasChallengePort() {
		a.log.Warn("acme: no redirect listener on port 80 and no TLS listener on port 443; challenges succeed only if the CA's connections to those ports are forwarded to tlsfront's listeners")
	}
	names := c.Names
	a.tasks = append(a.tasks, func(ctx context.Context) {
		if err := am.Start(a.challengeAddrs()); err != nil {
			a.log.Error("acme not started", "err", err)
			return
		}
		defer am.Stop()
		if err := am.Manage(ctx, names); err != nil {
			a.log.Error("acme names not managed", "names", names, "err", err)
		}
		<-ctx.Done()
	})
	return nil
}

// acmeOptions turns the acme section into certs.ACMEOptions.
func (a *app) acmeOptions() (certs.ACMEOptions, error) {
	c := &a.cfg.ACME
	o := certs.ACMEOptions{
		CA:       c.CA,
		Email:    c.Email,
		EABKeyID: c.EABKeyID,
		EABHMAC:  c.EABHMAC,
		Storage:  c.Storage,
		OnEvent:  a.acmeEvent,
		Log:      a.log.With("component", "acme"),
	}
	if o.Storage == "" {
		o.Storage = certs.DefaultACMEStorage(a.cfg.StateDir)
	}
	if c.CARoot != "" {
		pem, err := os.ReadFile(c.CARoot)
		if err != nil {
			return o, fmt.Errorf("acme.ca_root: %w", err)
		}
		o.CARoots = x509.NewCertPool()
		if !o.CARoots.AppendCertsFromPEM(pem) {
			return o, fmt.Errorf("acme.ca_root: %s holds no PEM certificate", c.CARoot)
		}
	}
	if od := &c.OnDemand; od.Enabled {
		o.OnDemand = &certs.OnDemandOptions{Allow: od.Allow, RequireDNSToHost: od.requireDNS()}
		for _, s := range od.PublicAddresses {
			ip, err := netip.ParseAddr(s)
			if err != nil {
				return o, fmt.Errorf("acme.on_demand.public_addresses: %w", err)
			}
			o.OnDemand.PublicAddrs = append(o.OnDemand.PublicAddrs, ip)
		}
	}
	return o, nil
}

// acmeEvent logs an ACME event and passes it to the onACME hooks (which
// setups after this one may still add to, so the slice is read per call).
func (a *app) acmeEvent(event string, names []string, err error) {
	switch event {
	case certs.EventFailed, certs.EventRenewFailed:
		a.log.Error("acme "+event, "names", names, "err", err)
	case certs.EventRefused:
		// Scanners trying random names would flood the log at info.
		a.log.Debug("acme "+event, "names", names, "err", err)
	case certs.EventOCSPRevoked:
		a.log.Warn("acme "+event, "names", names)
	default:
		a.log.Info("acme "+event, "names", names)
	}
	for _, h := range a.onACME {
		h(event, names, err)
	}
}

// challengeAddrs picks the bound listeners that answer challenges: the
// first redirect listener for HTTP-01 and a TLS listener, on port 443 if
// there is one, for TLS-ALPN-01. Called once the listeners are bound.
func (a *app) challengeAddrs() certs.ChallengeAddrs {
	var ch certs.ChallengeAddrs
	for _, lc := range a.cfg.Listeners {
		addr := a.addrs[lc.Name]
		if addr == nil {
			continue
		}
		if lc.Kind == "redirect" {
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
// connects: a redirect listener on 80 or a TLS listener on 443.
func (a *app) hasChallengePort() bool {
	for _, lc := range a.cfg.Listeners {
		_, p, err := net.SplitHostPort(lc.Listen)
		if err != nil {
			continue
		}
		if (lc.Kind == "redirect" && p == "80") || (lc.Kind != "redirect" && p == "443") {
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
