package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
	"github.com/mholt/acmez/v3/acme"
	"go.uber.org/zap"
)

// LetsEncryptProduction is the default ACME directory.
const LetsEncryptProduction = certmagic.LetsEncryptProductionCA

// Events passed to ACMEOptions.OnEvent. The obtain and renew events come
// from certmagic; EventRefused is ours and means the CA was not contacted.
const (
	EventObtaining   = "cert_obtaining"    // a new certificate is about to be ordered
	EventObtained    = "cert_obtained"     // a new certificate is in storage
	EventFailed      = "cert_failed"       // ordering a new certificate failed; err says why
	EventRenewing    = "cert_renewing"     // a renewal is about to be ordered
	EventRenewed     = "cert_renewed"      // a renewed certificate is in storage
	EventRenewFailed = "cert_renew_failed" // a renewal failed; err says why
	EventCached      = "cert_cached"       // a managed certificate was loaded from storage into memory
	EventOCSPRevoked = "cert_ocsp_revoked" // the OCSP responder says a certificate is revoked
	EventRefused     = "on_demand_refused" // on-demand issuance refused before any CA contact; err says why
)

const (
	acmeTLSALPNProto  = acmez.ACMETLS1Protocol
	dnsLookupTimeout  = 5 * time.Second
	defaultStorageDir = "acme"
)

// ErrACMENotStarted is returned by ACME.GetCertificate before Start.
var ErrACMENotStarted = errors.New("acme: not started")

// ACMEOptions configure an ACME certificate manager.
type ACMEOptions struct {
	// CA is the ACME directory URL; empty means Let's Encrypt production.
	CA string
	// Email is the account contact; optional but lets the CA warn about
	// expiring certificates and policy changes.
	Email string
	// EABKeyID and EABHMAC bind the account to an existing account at CAs
	// that require External Account Binding (ZeroSSL, Google, many
	// private CAs). EABHMAC is the base64url MAC key as the CA gives it.
	EABKeyID, EABHMAC string
	// CARoots verifies the CA's own HTTPS endpoint; nil means the system
	// roots. For private CAs (and Pebble in tests).
	CARoots *x509.CertPool
	// Storage is the folder holding the account, certificates and locks.
	// Instances that share it coordinate issuance through its lock files
	// and can answer each other's HTTP-01 and TLS-ALPN-01 challenges.
	Storage string
	// StorageBackend, when set, replaces the Storage folder: a
	// certmagic.Storage shared by a fleet (e.g. certs/redisstore), whose
	// locks coordinate issuance across hosts and whose challenge tokens
	// let any instance answer HTTP-01 for another. Storage is then unused.
	StorageBackend certmagic.Storage
	// OnDemand, when non-nil, lets a TLS handshake for a name outside the
	// managed names start obtaining a certificate in the background, if
	// OnDemand allows the name (see GetCertificate).
	OnDemand *OnDemandOptions
	// OnEvent is told about issuance and renewal (the Event constants).
	// It is called synchronously from certmagic's goroutines and from
	// handshakes: it must return quickly and must not block.
	OnEvent func(event string, names []string, err error)
	// Log receives certmagic's own log lines (see newZapLogger for the
	// level mapping). Nil discards them.
	Log *slog.Logger

	// RenewalWindowRatio is the share of a certificate's lifetime left
	// when renewal starts; zero means certmagic's default (1/3).
	RenewalWindowRatio float64
	// RenewCheckInterval is how often managed certificates are checked for
	// renewal; zero means certmagic's default (10 minutes). Tests shorten it.
	RenewCheckInterval time.Duration
	// DisableARI makes the renewal window ratio alone decide when a
	// certificate is renewed, ignoring the CA's ACME Renewal Information
	// (whose window depends on a fetch, so tests cannot rely on it).
	DisableARI bool
}

// OnDemandOptions decide which names a handshake may obtain a
// certificate for. Every refusal happens before any request to the CA.
type OnDemandOptions struct {
	// Allow lists the names that may be obtained on demand: exact names,
	// or "*.example.com" for any single label under example.com. It must
	// not be empty: on-demand without a list lets anyone who can point a
	// DNS name at this host make it order certificates.
	Allow []string
	// RequireDNSToHost refuses a name unless one of the addresses it
	// resolves to is an address of this host (HostAddrs). This keeps
	// names that moved elsewhere from failing validation at the CA (403)
	// and piling up pending authorizations (429).
	RequireDNSToHost bool
	// PublicAddrs are extra addresses clients reach this host at, for a
	// host behind NAT or a load balancer whose public address is not on
	// any interface. With several instances on one storage, list all of
	// theirs.
	PublicAddrs []netip.Addr
	// Resolve looks up a name's addresses; nil means the system resolver.
	Resolve func(ctx context.Context, name string) ([]netip.Addr, error)
	// HostAddrs returns this host's addresses; nil means the addresses of
	// its network interfaces. PublicAddrs are added to either.
	HostAddrs func() ([]netip.Addr, error)

	// Caps on issuance (issue 13), so that neither a name the CA refuses
	// nor a flood of allowed names can spend the CA's rate limits or
	// this process's attention. A handshake whose attempt a cap refuses
	// fails with ErrIssuanceLimited and is counted in
	// OnDemandStats.Refused. Zero means the default in brackets.
	//
	// MaxConcurrent attempts run at once (2); MaxPending more names wait
	// for one (100). MaxPerMinute attempts start per minute, all names
	// together, in bursts of as many (5); MaxPerDomainPerHour per
	// registered domain, e.g. example.co.uk for a.b.example.co.uk (5),
	// since CAs count certificates per registered domain (Let's Encrypt:
	// 50 a week) and one customer's names must not use up the others'
	// share.
	MaxConcurrent       int
	MaxPending          int
	MaxPerMinute        int
	MaxPerDomainPerHour int
	// RetryBackoff is how long a name whose attempt failed waits before
	// the next one, doubling with each further failure up to an hour
	// (2m: at most 5 failed attempts per name in the first hour, Let's
	// Encrypt's limit of failed validations per name and hour).
	RetryBackoff time.Duration
}

// ChallengeAddrs say where this process answers ACME challenges. They are
// known only once the listeners are bound, hence an argument to Start.
type ChallengeAddrs struct {
	// HTTP is the plain HTTP listener whose handler went through
	// HTTPChallengeHandler; nil disables HTTP-01. The CA connects to port
	// 80; a different port here must be forwarded from 80.
	HTTP net.Addr
	// TLS is a TLS listener whose tls.Config went through WrapTLSConfig;
	// nil disables TLS-ALPN-01. The CA connects to port 443; a different
	// port here must be forwarded from 443.
	TLS net.Addr
}

// Add offers a bound listener for challenges: a plain HTTP one for
// HTTP-01, where the first offered wins, or a TLS one for TLS-ALPN-01,
// where one on port 443, the CA's, wins over the first.
func (ch *ChallengeAddrs) Add(addr net.Addr, tls bool) {
	if !tls {
		if ch.HTTP == nil {
			ch.HTTP = addr
		}
		return
	}
	if ch.TLS == nil || portOfAddr(addr) == 443 {
		ch.TLS = addr
	}
}

func portOfAddr(a net.Addr) int {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.Port
	}
	return 0
}

// NotHereError is the refusal of an on-demand name that does not resolve
// to this host.
type NotHereError struct {
	Name     string
	Resolved []netip.Addr
	Err      error // the lookup error, if the lookup failed
}

func (e *NotHereError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: cannot check that it points at this host: %v", e.Name, e.Err)
	}
	return fmt.Sprintf("%s resolves to %v, none of which is an address of this host; point its DNS here (or list the address in public_addresses)", e.Name, e.Resolved)
}

func (e *NotHereError) Unwrap() error { return e.Err }

// ErrNotAllowed is the refusal of an on-demand name outside the allow-list.
var ErrNotAllowed = errors.New("name is not in the on-demand allow-list")

// ACME obtains and renews certificates from an ACME CA with certmagic.
//
// It has its own certmagic cache and configs (never certmagic.Default).
// NewACME starts nothing; Start starts certmagic's maintenance goroutine
// and Stop stops it. GetCertificate, HTTPChallengeHandler and
// WrapTLSConfig may be used before Start: until then they answer nothing
// (GetCertificate returns ErrACMENotStarted).
//
// ACME is safe for concurrent use.
type ACME struct {
	opts    ACMEOptions
	log     *slog.Logger
	allow   allowList
	managed atomic.Pointer[map[string]struct{}] // copy on write; names Manage was given
	known   sync.Map                            // names obtained or loaded into memory: what Served lists

	mu      sync.Mutex // serialises Start, Manage and Stop
	run     atomic.Pointer[acmeRun]
	stopped bool

	challengeTLS *tls.Config // answers acme-tls/1 hellos
}

// acmeRun is what Start builds; immutable once published.
type acmeRun struct {
	cache    *certmagic.Cache
	managed  *certmagic.Config // names from Manage: obtained at once, renewed by the cache
	onDemand *certmagic.Config // nil unless on-demand is on; see onDemand
	od       *onDemand         // obtains for onDemand in the background
	issuer   *certmagic.ACMEIssuer
}

// NewACME checks o and returns a manager. It does no I/O and starts no
// goroutines.
func NewACME(o ACMEOptions) (*ACME, error) {
	if o.CA == "" {
		o.CA = LetsEncryptProduction
	}
	if o.Storage == "" && o.StorageBackend == nil {
		return nil, errors.New("acme: storage folder is required")
	}
	if (o.EABKeyID == "") != (o.EABHMAC == "") {
		return nil, errors.New("acme: external account binding needs both a key ID and an HMAC key")
	}
	a := &ACME{opts: o, log: o.Log}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if od := o.OnDemand; od != nil {
		if len(od.Allow) == 0 {
			return nil, errors.New("acme: on-demand needs an allow-list")
		}
		al, err := newAllowList(od.Allow)
		if err != nil {
			return nil, fmt.Errorf("acme: on-demand allow-list: %w", err)
		}
		a.allow = al
	}
	empty := map[string]struct{}{}
	a.managed.Store(&empty)
	a.challengeTLS = &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{acmeTLSALPNProto},
		GetCertificate: a.GetCertificate,
	}
	return a, nil
}

// DefaultACMEStorage is the storage folder under a state folder.
func DefaultACMEStorage(stateDir string) string { return filepath.Join(stateDir, defaultStorageDir) }

// Start builds the certmagic cache and configs and starts the cache's
// maintenance goroutine, which renews managed certificates until Stop.
// It contacts no CA: that happens in Manage and in handshakes.
func (a *ACME) Start(ch ChallengeAddrs) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return errors.New("acme: already stopped")
	}
	if a.run.Load() != nil {
		return errors.New("acme: already started")
	}
	if ch.HTTP == nil && ch.TLS == nil {
		return errors.New("acme: no listener can answer challenges; add a redirect listener (HTTP-01 on port 80) or a TLS listener (TLS-ALPN-01 on port 443)")
	}
	zl := newZapLogger(a.log)
	r := &acmeRun{}
	// The cache asks which config manages a certificate whenever it
	// renews one; names from Manage belong to the managed config, all
	// others were obtained on demand.
	r.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(c certmagic.Certificate) (*certmagic.Config, error) {
			if r.onDemand != nil && !a.allManaged(c.Names) {
				return r.onDemand, nil
			}
			return r.managed, nil
		},
		RenewCheckInterval: a.opts.RenewCheckInterval,
		Logger:             zl,
	})
	var storage certmagic.Storage = &certmagic.FileStorage{Path: a.opts.Storage}
	if a.opts.StorageBackend != nil {
		storage = a.opts.StorageBackend
	}
	base := certmagic.Config{
		RenewalWindowRatio: a.opts.RenewalWindowRatio,
		DisableARI:         a.opts.DisableARI,
		Storage:            storage,
		Logger:             zl,
		OnEvent:            a.onEvent,
		// Only the events we forward are built; tls_get_certificate in
		// particular would otherwise cost an allocation per handshake.
		ShouldEmitFunc: func(ev string) bool {
			switch ev {
			case "cert_obtaining", "cert_obtained", "cert_failed", "cached_managed_cert", "cert_ocsp_revoked":
				return true
			}
			return false
		},
	}
	mk := func(onDemand *certmagic.OnDemandConfig) (*certmagic.Config, *certmagic.ACMEIssuer) {
		c := base
		c.OnDemand = onDemand
		cfg := certmagic.New(r.cache, c)
		iss := certmagic.NewACMEIssuer(cfg, a.issuerTemplate(ch, zl))
		cfg.Issuers = []certmagic.Issuer{iss}
		return cfg, iss
	}
	r.managed, r.issuer = mk(nil)
	if a.opts.OnDemand != nil {
		// No certmagic OnDemandConfig: with one, a handshake for a name
		// without a certificate obtains it inside the handshake, and
		// every handshake for a name the CA refuses waits out certmagic's
		// backoff, holding a handshake slot; a thousand visitors of one
		// blocked name then fail every other domain's clients. Our
		// onDemand obtains in the background instead, and certificates
		// it has obtained are renewed by the cache's maintenance like
		// managed ones, also outside handshakes.
		r.onDemand, _ = mk(nil)
		r.od = newOnDemand(a, r.onDemand, a.opts.OnDemand)
		r.od.start()
	}
	a.run.Store(r)
	return nil
}

func (a *ACME) issuerTemplate(ch ChallengeAddrs, zl *zap.Logger) certmagic.ACMEIssuer {
	t := certmagic.ACMEIssuer{
		CA:           a.opts.CA,
		TestCA:       a.opts.CA, // never silently switch to a staging CA
		Email:        a.opts.Email,
		Agreed:       true, // enabling ACME is agreeing to the CA's terms
		TrustedRoots: a.opts.CARoots,
		Logger:       zl,
	}
	if a.opts.EABKeyID != "" {
		t.ExternalAccount = &acme.EAB{KeyID: a.opts.EABKeyID, MACKey: a.opts.EABHMAC}
	}
	// certmagic starts its own challenge server when it can bind the
	// challenge port. Pointing it at our own bound listeners makes that
	// bind fail, so it relies on our handlers and never opens a socket.
	host := ""
	if ch.HTTP != nil {
		host, t.AltHTTPPort = splitAddr(ch.HTTP)
	} else {
		t.DisableHTTPChallenge = true
	}
	if ch.TLS != nil {
		var h string
		h, t.AltTLSALPNPort = splitAddr(ch.TLS)
		if host == "" {
			host = h
		}
	} else {
		t.DisableTLSALPNChallenge = true
	}
	t.ListenHost = host
	return t
}

func splitAddr(a net.Addr) (string, int) {
	h, p, err := net.SplitHostPort(a.String())
	if err != nil {
		return "", 0
	}
	n, _ := strconv.Atoi(p)
	if ip, err := netip.ParseAddr(h); err == nil && ip.IsUnspecified() {
		h = ""
	}
	return h, n
}

// Manage has certificates obtained (or loaded from storage) and renewed
// for names. It returns once management has begun: obtaining runs in the
// background and retries with backoff, so a slow or failing CA never
// holds up the start; watch OnEvent (or the logs) for the outcome.
// Cancelling ctx stops those background obtains and their retries.
func (a *ACME) Manage(ctx context.Context, names []string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.run.Load()
	if r == nil || a.stopped {
		return errors.New("acme: manage before start or after stop")
	}
	next := map[string]struct{}{}
	for n := range *a.managed.Load() {
		next[n] = struct{}{}
	}
	for _, n := range names {
		next[normalizeName(n)] = struct{}{}
	}
	// Publish first: a handshake for a name being obtained must be routed
	// to the managed config, not to on-demand.
	a.managed.Store(&next)
	if err := r.managed.ManageAsync(ctx, names); err != nil {
		return fmt.Errorf("acme: manage: %w", err)
	}
	return nil
}

// Run starts management with the challenge listeners in ch, manages
// names, and stops when ctx ends. Not starting is an error, so that the
// owner does not go on serving without the certificates it was asked to
// obtain.
func (a *ACME) Run(ctx context.Context, ch ChallengeAddrs, names []string) error {
	if err := a.Start(ch); err != nil {
		return err
	}
	defer a.Stop()
	if err := a.Manage(ctx, names); err != nil {
		return fmt.Errorf("names %v not managed: %w", names, err)
	}
	<-ctx.Done()
	return nil
}

// Stop stops certificate maintenance and waits for its goroutine, and
// cancels on-demand attempts under way and waits for their workers.
// Certificates already in memory are still served. Background obtains
// started by Manage end when its ctx is cancelled. Stop may be called
// more than once, and before Start.
func (a *ACME) Stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return
	}
	a.stopped = true
	if r := a.run.Load(); r != nil {
		r.cache.Stop()
		if r.od != nil {
			r.od.stop()
		}
	}
}

// GetCertificate serves managed and on-demand certificates and answers
// TLS-ALPN-01 challenge hellos. It suits tls.Config.GetCertificate and
// Store.Fallback. For a name it has nothing for, it returns an error at
// once: it never waits on the CA or on DNS, so a name that cannot get a
// certificate cannot hold handshakes (and their slots) while others wait.
//
// For an on-demand name outside the allow-list the error wraps
// ErrNotAllowed. For an allowed name with no certificate in memory or
// storage it is an *IssuanceError: ErrIssuancePending when an attempt
// has been started (by this handshake, in the background) or is under
// way, ErrIssuanceFailing while the name is in its backoff after a failed
// attempt (the cause wrapped, e.g. a *NotHereError), ErrIssuanceLimited
// when a cap refused to start one. The trade-off: the first handshake for
// a brand-new name fails, and a retry seconds later (once issued) succeeds;
// MQTT clients and browsers retry. The proxy should report these as
// their own handshake failure reasons, and not count them against the
// client in the penalty box (limits' Ticket.HandshakeEnded): they are
// not the client's fault.
func (a *ACME) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	r := a.run.Load()
	if r == nil {
		return nil, ErrACMENotStarted
	}
	name := normalizeName(hello.ServerName)
	if r.od != nil && name != "" && !IsChallengeHello(hello) && !a.isManaged(name) {
		return r.od.getCertificate(hello, name)
	}
	return r.managed.GetCertificate(hello)
}

// OnDemandStats returns a snapshot of on-demand issuance; zero before
// Start or without on-demand. It is safe to call at any time.
func (a *ACME) OnDemandStats() OnDemandStats {
	if r := a.run.Load(); r != nil && r.od != nil {
		return r.od.stats()
	}
	s := OnDemandStats{Refused: map[string]uint64{}}
	for _, n := range capNames {
		s.Refused[n] = 0
	}
	return s
}

// IsChallengeHello reports whether hello is a TLS-ALPN-01 validation
// connection from a CA (RFC 8737: SNI set, ALPN exactly "acme-tls/1").
func IsChallengeHello(hello *tls.ClientHelloInfo) bool {
	return hello.ServerName != "" && len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acmeTLSALPNProto
}

// WrapTLSConfig makes cfg answer TLS-ALPN-01 challenges: a challenge hello
// gets a config of its own that offers only "acme-tls/1" and serves the
// challenge certificate; every other hello goes to cfg's existing
// GetConfigForClient, if any. This keeps "acme-tls/1" out of cfg's
// NextProtos: a server whose NextProtos lists it would refuse clients
// whose ALPN offer it does not overlap (e.g. MQTT clients sending
// "mqtt"), since Go fails such handshakes.
func (a *ACME) WrapTLSConfig(cfg *tls.Config) {
	inner := cfg.GetConfigForClient
	cfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		if IsChallengeHello(h) {
			return a.challengeTLS, nil
		}
		if inner != nil {
			return inner(h)
		}
		return nil, nil
	}
}

// HTTPChallengeHandler answers HTTP-01 challenges (this instance's, and
// those of instances sharing the storage) and passes every other request
// to next.
func (a *ACME) HTTPChallengeHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r := a.run.Load(); r != nil && r.issuer.HandleHTTPChallenge(w, req) {
			return
		}
		next.ServeHTTP(w, req)
	})
}

// Decide is the on-demand decision: nil lets name be obtained. It refuses
// names outside the allow-list and, with RequireDNSToHost, names that do
// not resolve to this host. It never contacts the CA, but may wait for
// DNS; GetCertificate calls it in the background, never in a handshake.
// Refusals are reported as EventRefused.
func (a *ACME) Decide(ctx context.Context, name string) error {
	err := a.decide(ctx, name)
	if err != nil {
		a.emit(EventRefused, []string{name}, err)
	}
	return err
}

func (a *ACME) decide(ctx context.Context, name string) error {
	od := a.opts.OnDemand
	if od == nil {
		return errors.New("on-demand issuance is off")
	}
	name = normalizeName(name)
	if !a.allow.match(name) {
		return fmt.Errorf("%s: %w", name, ErrNotAllowed)
	}
	if !od.RequireDNSToHost {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, dnsLookupTimeout)
	defer cancel()
	resolve := od.Resolve
	if resolve == nil {
		resolve = systemResolve
	}
	got, err := resolve(ctx, name)
	if err != nil {
		return &NotHereError{Name: name, Err: err}
	}
	hostAddrs := od.HostAddrs
	if hostAddrs == nil {
		hostAddrs = interfaceAddrs
	}
	mine, err := hostAddrs()
	if err != nil {
		return &NotHereError{Name: name, Err: fmt.Errorf("list this host's addresses: %w", err)}
	}
	mine = append(mine, od.PublicAddrs...)
	for _, g := range got {
		for _, m := range mine {
			if g.Unmap() == m.Unmap() {
				return nil
			}
		}
	}
	return &NotHereError{Name: name, Resolved: got}
}

func systemResolve(ctx context.Context, name string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", name)
}

func interfaceAddrs() ([]netip.Addr, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range as {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr())
		}
	}
	return out, nil
}

// onEvent forwards certmagic's events, renamed for renewals, to OnEvent.
func (a *ACME) onEvent(_ context.Context, event string, data map[string]any) error {
	renewal, _ := data["renewal"].(bool)
	var names []string
	if id, ok := data["identifier"].(string); ok {
		names = []string{id}
	} else if sans, ok := data["sans"].([]string); ok {
		names = sans
	}
	err, _ := data["error"].(error)
	switch event {
	case "cert_obtaining":
		event = pick(renewal, EventRenewing, EventObtaining)
	case "cert_obtained":
		event = pick(renewal, EventRenewed, EventObtained)
	case "cert_failed":
		event = pick(renewal, EventRenewFailed, EventFailed)
	case "cached_managed_cert":
		event = EventCached
	case "cert_ocsp_revoked":
		event = EventOCSPRevoked
	default:
		return nil
	}
	a.emit(event, names, err)
	return nil
}

func pick(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}

func (a *ACME) emit(event string, names []string, err error) {
	switch event {
	case EventObtained, EventRenewed, EventCached:
		for _, n := range names {
			a.known.Store(normalizeName(n), struct{}{})
		}
	}
	if a.opts.OnEvent != nil {
		a.opts.OnEvent(event, names, err)
	}
}

func (a *ACME) isManaged(name string) bool {
	_, ok := (*a.managed.Load())[name]
	return ok
}

func (a *ACME) allManaged(names []string) bool {
	m := *a.managed.Load()
	for _, n := range names {
		if _, ok := m[normalizeName(n)]; !ok {
			return false
		}
	}
	return len(names) > 0
}

func normalizeName(n string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(n), "."))
}

// allowList matches exact names and one-label wildcards.
type allowList struct {
	exact    map[string]bool
	wildcard map[string]bool // "example.com" for *.example.com
}

func newAllowList(patterns []string) (allowList, error) {
	al := allowList{exact: map[string]bool{}, wildcard: map[string]bool{}}
	for _, p := range patterns {
		if err := ValidAllowPattern(p); err != nil {
			return al, err
		}
		p = normalizeName(p)
		if rest, ok := strings.CutPrefix(p, "*."); ok {
			al.wildcard[rest] = true
		} else {
			al.exact[p] = true
		}
	}
	return al, nil
}

// ValidAllowPattern checks one on-demand allow-list entry: a DNS name, or
// "*." followed by one (e.g. *.example.com).
func ValidAllowPattern(p string) error {
	if rest, ok := strings.CutPrefix(p, "*."); ok {
		p = rest
	}
	return ValidACMEName(p)
}

// ValidACMEName checks that name is a DNS name a public ACME CA could
// issue for with HTTP-01 or TLS-ALPN-01: ASCII (punycode for IDNs), at
// least two labels, no wildcard (those need DNS-01).
func ValidACMEName(name string) error {
	n := normalizeName(name)
	if n == "" || !strings.Contains(n, ".") || len(n) > 253 {
		return fmt.Errorf("%q is not a DNS name with at least two labels", name)
	}
	if strings.Contains(n, "*") {
		return fmt.Errorf("%q: wildcard certificates need the DNS-01 challenge, which tlsfront does not do", name)
	}
	if _, err := netip.ParseAddr(n); err == nil {
		return fmt.Errorf("%q is an IP address; give a DNS name", name)
	}
	for _, l := range strings.Split(n, ".") {
		if l == "" || len(l) > 63 || strings.HasPrefix(l, "-") || strings.HasSuffix(l, "-") ||
			strings.IndexFunc(l, func(r rune) bool { return !(r == '-' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') }) >= 0 {
			return fmt.Errorf("%q has an invalid label %q (use punycode for international names)", name, l)
		}
	}
	return nil
}

func (al allowList) match(name string) bool {
	if al.exact[name] {
		return true
	}
	_, parent, ok := strings.Cut(name, ".")
	return ok && al.wildcard[parent]
}
