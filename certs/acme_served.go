package certs

import (
	"context"
	"crypto/x509"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/tlsfront/tlsfront/report"
)

// Covers reports whether name is one ACME serves or may obtain: a managed
// name, or one the on-demand allow-list admits. A failed handshake for such
// a name is not an unknown server name.
func (a *ACME) Covers(name string) bool {
	name = normalizeName(name)
	if a.isManaged(name) {
		return true
	}
	return a.opts.OnDemand != nil && a.allow.match(name)
}

// Served returns the certificates ACME holds in memory now, one entry per
// certificate, for status, metrics and probes. It parses intermediates,
// so it is for scrape and probe time, not the handshake path.
func (a *ACME) Served() []Served {
	var out []Served
	a.eachCached(func(n string, c certmagic.Certificate) {
		leaf := leafOf(c)
		if leaf == nil {
			return
		}
		chain := []*x509.Certificate{leaf}
		for _, der := range c.Certificate.Certificate[1:] {
			if x, err := x509.ParseCertificate(der); err == nil {
				chain = append(chain, x)
			}
		}
		out = append(out, Served{ID: "acme/" + n, Source: SourceACME, Chain: chain, LoadedAt: leaf.NotBefore})
	})
	return out
}

// eachCached calls fn once per certificate ACME holds in memory, with the
// first name, in order, it was found under.
func (a *ACME) eachCached(fn func(name string, c certmagic.Certificate)) {
	r := a.run.Load()
	if r == nil {
		return
	}
	var names []string
	a.known.Range(func(k, _ any) bool {
		names = append(names, k.(string))
		return true
	})
	for n := range *a.managed.Load() {
		names = append(names, n)
	}
	sort.Strings(names)
	names = slices.Compact(names)
	seen := map[string]bool{}
	for _, n := range names {
		for _, c := range r.cache.AllMatchingCertificates(n) {
			if len(c.Certificate.Certificate) == 0 || seen[string(c.Certificate.Certificate[0])] {
				continue
			}
			seen[string(c.Certificate.Certificate[0])] = true
			fn(n, c)
		}
	}
}

// leafOf is the parsed leaf certmagic keeps, or parses it when it does
// not (certificates it made itself); nil when it does not parse.
func leafOf(c certmagic.Certificate) *x509.Certificate {
	if c.Leaf != nil {
		return c.Leaf
	}
	x, err := x509.ParseCertificate(c.Certificate.Certificate[0])
	if err != nil {
		return nil
	}
	return x
}

// maxTimedOrders bounds the issuances timed at once; beyond it a burst of
// names goes untimed rather than grow memory.
const maxTimedOrders = 4096

// Overdue counts the certificates ACME holds that are past their renewal
// point by more than a day and not renewed yet: renewals that keep
// failing, found before the certificates expire.
func (a *ACME) Overdue() int {
	ratio := a.opts.RenewalWindowRatio
	if ratio <= 0 {
		ratio = 1.0 / 3 // certmagic's default: renew with a third of the lifetime left
	}
	n := 0
	now := time.Now()
	a.eachCached(func(_ string, c certmagic.Certificate) {
		leaf := leafOf(c)
		if leaf == nil {
			return
		}
		window := time.Duration(float64(leaf.NotAfter.Sub(leaf.NotBefore)) * ratio)
		if now.After(leaf.NotAfter.Add(-window).Add(24 * time.Hour)) {
			n++
		}
	})
	return n
}

// ReportACME returns an ACMEOptions.OnEvent that logs each event at the
// level an operator needs and passes it to rep, with how long each
// issuance took.
func ReportACME(rep report.Sink, log *slog.Logger) func(event string, names []string, err error) {
	rep = report.OrDiscard(rep)
	var mu sync.Mutex
	started := map[string]time.Time{}
	took := func(event string, names []string) time.Duration {
		if len(names) == 0 {
			return 0
		}
		key := strings.Join(names, ",")
		mu.Lock()
		defer mu.Unlock()
		switch event {
		case EventObtaining, EventRenewing:
			if len(started) < maxTimedOrders {
				started[key] = time.Now()
			}
		case EventObtained, EventRenewed, EventFailed, EventRenewFailed:
			if t, ok := started[key]; ok {
				delete(started, key)
				return time.Since(t)
			}
		}
		return 0
	}
	return func(event string, names []string, err error) {
		kind, level := report.ACMECached, slog.LevelInfo
		switch event {
		case EventFailed, EventRenewFailed:
			kind, level = report.ACMEFailed, slog.LevelError
		case EventRefused:
			// Scanners trying random names would flood the log at info.
			kind, level = report.ACMERefused, slog.LevelDebug
		case EventOCSPRevoked:
			kind, level = report.ACMERevoked, slog.LevelWarn
		case EventObtaining, EventRenewing:
			kind = report.ACMEObtaining
		case EventObtained:
			kind = report.ACMEObtained
		case EventRenewed:
			kind = report.ACMERenewed
		}
		attrs := []any{"names", names}
		if err != nil {
			attrs = append(attrs, "err", err)
		}
		log.Log(context.Background(), level, "acme "+event, attrs...)
		rep.ACME(report.ACME{Event: kind, Names: names, Err: err, Took: took(event, names)})
	}
}
