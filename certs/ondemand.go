package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/tlsfront/tlsfront/limits"
	"golang.org/x/net/publicsuffix"
)

// Why a handshake for an on-demand name got no certificate although the name
// is allowed. The proxy classifies handshake failures with errors.Is on
// them; the handshake error is an *IssuanceError wrapping one.
var (
	// ErrIssuancePending: a certificate for the name is being obtained
	// (queued or at the CA). Retrying in a few seconds should succeed.
	ErrIssuancePending = errors.New("certificate is being obtained")
	// ErrIssuanceFailing: the last attempt for the name failed (the CA
	// refused, validation failed, the name does not point here); no new
	// attempt is made until the name's backoff ends.
	ErrIssuanceFailing = errors.New("obtaining a certificate failed recently")
	// ErrIssuanceLimited: a cap on on-demand issuance (see
	// OnDemandOptions) refused to start an attempt for the name now.
	ErrIssuanceLimited = errors.New("on-demand issuance is at a cap")
)

// IssuanceError is the handshake error for an allowed on-demand name that
// has no certificate yet. Err is ErrIssuancePending, ErrIssuanceFailing or
// ErrIssuanceLimited; Cause is the last failure or the cap that refused.
type IssuanceError struct {
	Name string
	Err  error
	// Cause says more: the error of the last attempt for a failing name,
	// or, for a limited one, an error naming the cap.
	Cause error
	// RetryAfter is roughly when a handshake could succeed or start a new
	// attempt; zero when unknown.
	RetryAfter time.Duration
}

func (e *IssuanceError) Error() string {
	var b strings.Builder
	b.WriteString(e.Name + ": " + e.Err.Error())
	if e.Cause != nil {
		b.WriteString(": " + e.Cause.Error())
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry in %v)", e.RetryAfter.Round(time.Second))
	}
	return b.String()
}

// Unwrap lets errors.Is match both the sentinel and the cause (for
// instance ErrNotAllowed or a *NotHereError from the DNS check).
func (e *IssuanceError) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Err}
	}
	return []error{e.Err, e.Cause}
}

// Caps on on-demand issuance, as OnDemandStats.Refused names them.
const (
	CapPending   = "pending"    // OnDemandOptions.MaxPending names already waiting
	CapRate      = "rate"       // OnDemandOptions.MaxPerMinute orders started in the last minute
	CapDomain    = "domain"     // OnDemandOptions.MaxPerDomainPerHour for the name's registered domain
	CapNameTable = "name_table" // too many names remembered (in flight or failing)
)

// Defaults of the on-demand caps; see OnDemandOptions for why.
const (
	defaultODConcurrent   = 2
	defaultODPending      = 100
	defaultODPerMinute    = 5
	defaultODDomainPerH   = 5
	defaultODRetryBackoff = 2 * time.Minute
	maxODRetryBackoff     = time.Hour
	// maxODNames bounds the names remembered at once (queued, running,
	// failing) and maxODDomains the registered domains with a rate
	// bucket. The rate caps keep both far below this in practice.
	maxODNames   = 4096
	maxODDomains = 4096
	// odObtainTimeout bounds one attempt; certmagic uses the same for
	// its own on-demand obtains.
	odObtainTimeout = 3 * time.Minute
)

// OnDemandStats is a snapshot of on-demand issuance.
type OnDemandStats struct {
	// Queued names wait for a worker; Running ones are being obtained;
	// Failing ones are in their backoff after a failed attempt.
	Queued, Running, Failing int
	// Started counts attempts begun (including ones the DNS check
	// refused before any order); Obtained and Failed their outcomes.
	Started, Obtained, Failed uint64
	// Refused counts handshakes whose name could not start an attempt,
	// by cap (the Cap constants), every cap present.
	Refused map[string]uint64
}

// odState is one name's place in on-demand issuance.
type odState struct {
	phase    int // odQueued, odRunning, odFailing
	retryAt  time.Time
	failures int   // consecutive failed attempts: the backoff doubles
	err      error // the last failure
}

const (
	odQueued = iota
	odRunning
	odFailing
)

// onDemand obtains certificates for on-demand names in the background, so
// that no handshake ever waits on the CA. It is built by Start; its workers
// are stopped and waited for by Stop.
type onDemand struct {
	a      *ACME
	cfg    *certmagic.Config
	now    func() time.Time
	queue  chan string
	wg     sync.WaitGroup
	cancel context.CancelFunc

	concurrent, pending, perMinute, perDomain int
	backoff                                   time.Duration

	mu    sync.Mutex
	names map[string]*odState
	// limits.GCRA buckets, as Unix nanoseconds: over all orders, and per
	// registered domain.
	rateTAT int64
	domains map[string]int64

	started, obtained, failed atomic.Uint64
	refused                   [4]atomic.Uint64 // by capIndex
}

var capNames = [...]string{CapPending, CapRate, CapDomain, CapNameTable}

func capIndex(name string) int {
	for i, n := range capNames {
		if n == name {
			return i
		}
	}
	panic("unknown cap " + name)
}

func newOnDemand(a *ACME, cfg *certmagic.Config, o *OnDemandOptions) *onDemand {
	or := func(v, d int) int {
		if v > 0 {
			return v
		}
		return d
	}
	od := &onDemand{
		a:          a,
		cfg:        cfg,
		now:        time.Now,
		concurrent: or(o.MaxConcurrent, defaultODConcurrent),
		pending:    or(o.MaxPending, defaultODPending),
		perMinute:  or(o.MaxPerMinute, defaultODPerMinute),
		perDomain:  or(o.MaxPerDomainPerHour, defaultODDomainPerH),
		backoff:    o.RetryBackoff,
		names:      map[string]*odState{},
		domains:    map[string]int64{},
	}
	if od.backoff <= 0 {
		od.backoff = defaultODRetryBackoff
	}
	od.queue = make(chan string, od.pending)
	return od
}

// start runs the workers until stop.
func (od *onDemand) start() {
	ctx, cancel := context.WithCancel(context.Background())
	od.cancel = cancel
	for range od.concurrent {
		od.wg.Go(func() { od.work(ctx) })
	}
}

// stop cancels attempts under way and waits for the workers.
func (od *onDemand) stop() {
	od.cancel()
	od.wg.Wait()
}

// getCertificate serves name from memory or storage, or fails at once:
// it never waits on the CA or on DNS. A name with nothing to serve starts
// an attempt in the background, within the caps.
func (od *onDemand) getCertificate(hello *tls.ClientHelloInfo, name string) (*tls.Certificate, error) {
	// od.cfg has no OnDemand settings, so this looks in the cache only (and
	// in storage when the cache is nearly full); it never obtains.
	if c, err := od.cfg.GetCertificate(hello); err == nil {
		return c, nil
	}
	if !od.a.allow.match(name) {
		err := fmt.Errorf("%s: %w", name, ErrNotAllowed)
		od.a.emit(EventRefused, []string{name}, err)
		return nil, err
	}
	now := od.now()
	od.mu.Lock()
	if st, ok := od.names[name]; ok {
		if err := st.unsyncedRefusal(name, now); err != nil {
			od.mu.Unlock()
			return nil, err
		}
	}
	od.mu.Unlock()

	// A certificate obtained earlier (by this process before a restart,
	// or by another instance on the same storage) is loaded here: a
	// local read, which a restart should not turn into failed handshakes.
	ctx := hello.Context()
	if ctx == nil { // a ClientHelloInfo not made by crypto/tls
		ctx = context.Background()
	}
	// Bounded: loading may fetch an OCSP staple when none is stored.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	c, err := od.cfg.CacheManagedCertificate(ctx, name)
	cancel()
	if err == nil && !c.Expired() {
		return &c.Certificate, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		od.a.log.Warn("on-demand certificate in storage unusable", "name", name, "error", err)
	}
	return nil, od.enqueue(name, now)
}

// unsyncedRefusal is the handshake error for a name with state st, or nil
// when the name may start a new attempt. The caller holds od.mu.
func (st *odState) unsyncedRefusal(name string, now time.Time) error {
	switch st.phase {
	case odQueued, odRunning:
		return &IssuanceError{Name: name, Err: ErrIssuancePending}
	}
	if now.Before(st.retryAt) {
		return &IssuanceError{Name: name, Err: ErrIssuanceFailing, Cause: st.err, RetryAfter: st.retryAt.Sub(now)}
	}
	return nil
}

// enqueue starts an attempt for name if no cap forbids it, and returns the
// handshake's error either way.
func (od *onDemand) enqueue(name string, now time.Time) error {
	od.mu.Lock()
	defer od.mu.Unlock()
	st, ok := od.names[name]
	if ok {
		// Another handshake may have got here first.
		if err := st.unsyncedRefusal(name, now); err != nil {
			return err
		}
	} else if len(od.names) >= maxODNames && !od.unsyncedPrune(now) {
		return od.unsyncedLimited(name, CapNameTable, 0)
	}
	if len(od.queue) >= cap(od.queue) {
		return od.unsyncedLimited(name, CapPending, 0)
	}
	// The rate caps are spent when an attempt is queued, not when it
	// reaches the CA: a flood of allowed names must cost no more than
	// the caps allow in DNS lookups and storage reads too.
	n := now.UnixNano()
	minute := int64(time.Minute) / int64(od.perMinute)
	rateTAT := od.rateTAT
	if wait, ok := limits.GCRA(&rateTAT, n, minute, int64(od.perMinute-1)*minute); !ok {
		return od.unsyncedLimited(name, CapRate, time.Duration(wait))
	}
	dom := registeredDomain(name)
	if _, known := od.domains[dom]; !known && len(od.domains) >= maxODDomains {
		od.unsyncedPruneDomains(now)
		if len(od.domains) >= maxODDomains {
			return od.unsyncedLimited(name, CapNameTable, 0)
		}
	}
	hour := int64(time.Hour) / int64(od.perDomain)
	domTAT := od.domains[dom]
	if wait, ok := limits.GCRA(&domTAT, n, hour, int64(od.perDomain-1)*hour); !ok {
		return od.unsyncedLimited(name, CapDomain, time.Duration(wait))
	}
	select {
	case od.queue <- name:
	default:
		return od.unsyncedLimited(name, CapPending, 0)
	}
	od.rateTAT, od.domains[dom] = rateTAT, domTAT
	if st == nil {
		st = &odState{}
		od.names[name] = st
	}
	st.phase = odQueued
	return &IssuanceError{Name: name, Err: ErrIssuancePending}
}

func (od *onDemand) unsyncedLimited(name, capName string, wait time.Duration) error {
	od.refused[capIndex(capName)].Add(1)
	return &IssuanceError{Name: name, Err: ErrIssuanceLimited, Cause: fmt.Errorf("cap %s", capName), RetryAfter: wait}
}

// unsyncedPrune forgets failing names whose backoff has ended and reports
// whether any was. The caller holds od.mu.
func (od *onDemand) unsyncedPrune(now time.Time) bool {
	n := len(od.names)
	for name, st := range od.names {
		if st.phase == odFailing && !now.Before(st.retryAt) {
			delete(od.names, name)
		}
	}
	return len(od.names) < n
}

// unsyncedPruneDomains forgets registered domains whose bucket is full
// again. The caller holds od.mu.
func (od *onDemand) unsyncedPruneDomains(now time.Time) {
	for d, tat := range od.domains {
		if tat <= now.UnixNano() {
			delete(od.domains, d)
		}
	}
}

// registeredDomain is name's registrable domain (eTLD+1), which is what
// CAs count certificates by; a name that is itself a public suffix (or
// unknown to the list) counts as its own.
func registeredDomain(name string) string {
	if d, err := publicsuffix.EffectiveTLDPlusOne(name); err == nil {
		return d
	}
	return name
}

// work runs attempts from the queue until ctx ends.
func (od *onDemand) work(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case name := <-od.queue:
			od.attempt(ctx, name)
		}
	}
}

// attempt obtains a certificate for name and puts it in the cache, or
// records the failure and the backoff before the next attempt.
func (od *onDemand) attempt(ctx context.Context, name string) {
	od.mu.Lock()
	if st := od.names[name]; st != nil {
		st.phase = odRunning
	}
	od.mu.Unlock()
	od.started.Add(1)
	err := od.obtain(ctx, name)
	od.mu.Lock()
	defer od.mu.Unlock()
	st := od.names[name]
	if st == nil {
		st = &odState{}
		od.names[name] = st
	}
	if err == nil {
		od.obtained.Add(1)
		delete(od.names, name)
		return
	}
	od.failed.Add(1)
	st.failures++
	st.phase, st.err = odFailing, err
	// Doubling per consecutive failure: with the 2 minute default a name
	// fails at the CA at most 5 times in its first hour, which is Let's
	// Encrypt's limit of failed validations per name and hour.
	d := od.backoff
	for i := 1; i < st.failures && d < maxODRetryBackoff; i++ {
		d *= 2
	}
	st.retryAt = od.now().Add(min(d, max(maxODRetryBackoff, od.backoff)))
}

func (od *onDemand) obtain(ctx context.Context, name string) error {
	// Decide repeats the allow-list check and does the DNS check here,
	// out of the handshake: a lookup can take seconds.
	if err := od.a.Decide(ctx, name); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, odObtainTimeout)
	defer cancel()
	// Sync: one try, no retry loop, so that a failing name frees its
	// worker at once; the backoff above decides when to try again.
	if err := od.cfg.ObtainCertSync(ctx, name); err != nil {
		return err
	}
	c, err := od.cfg.CacheManagedCertificate(ctx, name)
	if err != nil {
		return fmt.Errorf("load the obtained certificate: %w", err)
	}
	if !c.NeedsRenewal(od.cfg) {
		return nil
	}
	// ObtainCertSync does nothing when storage holds a certificate, even
	// an expired one (found after a long downtime): renew it here rather
	// than wait for the next maintenance run.
	if err := od.cfg.RenewCertSync(ctx, name, false); err != nil {
		return fmt.Errorf("renew the stored certificate: %w", err)
	}
	if _, err := od.cfg.CacheManagedCertificate(ctx, name); err != nil {
		return fmt.Errorf("load the renewed certificate: %w", err)
	}
	return nil
}

func (od *onDemand) stats() OnDemandStats {
	s := OnDemandStats{Refused: make(map[string]uint64, len(capNames))}
	for i, n := range capNames {
		s.Refused[n] = od.refused[i].Load()
	}
	s.Started, s.Obtained, s.Failed = od.started.Load(), od.obtained.Load(), od.failed.Load()
	now := od.now()
	od.mu.Lock()
	for _, st := range od.names {
		switch {
		case st.phase == odQueued:
			s.Queued++
		case st.phase == odRunning:
			s.Running++
		case now.Before(st.retryAt):
			s.Failing++
		}
	}
	od.mu.Unlock()
	return s
}
