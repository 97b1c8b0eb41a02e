package certs

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// Severity grades a Finding.
type Severity string

// Severities, from good news to a problem that makes clients fail.
const (
	SeverityOK    Severity = "ok"
	SeverityInfo  Severity = "info"  // a repair the doctor made, or a fact worth knowing
	SeverityWarn  Severity = "warn"  // clients connect today, but some may not, or not for long
	SeverityError Severity = "error" // clients fail
)

// Finding is one thing the doctor checked, repaired or found wrong, in
// plain words.
type Finding struct {
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
	// File is the file the finding is about when it is not the
	// certificate file (the key file, for a key mismatch).
	File string `json:"file,omitempty"`
	// Err is set on errors and wraps one of the ErrX sentinels.
	Err error `json:"-"`
}

// Mode says whose chain the doctor looks at.
type Mode string

const (
	// ModeFile is a certificate file tlsfront will serve: the doctor
	// orders, completes and trims the chain and reports its repairs.
	ModeFile Mode = "file"
	// ModeServed is what a live server sent: nothing can be repaired, so
	// every flaw in what it sends is reported.
	ModeServed Mode = "served"
)

// Input is what the doctor examines.
type Input struct {
	Mode Mode
	// Certs are the certificates in the order found: file order, or the
	// order the server sent them.
	Certs []*x509.Certificate
	// Key is the private key; nil skips the key check.
	Key crypto.Signer
	// Names must each be covered by the leaf.
	Names []string
	// CertFile names where Certs came from (a file, or a server address
	// in ModeServed); KeyFile where Key came from.
	CertFile, KeyFile string
}

// ChainCert summarises one certificate of a chain.
type ChainCert struct {
	// Role is leaf, intermediate or root.
	Role      string    `json:"role"`
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// DaysLeft is whole days until NotAfter; negative once expired.
	DaysLeft int    `json:"days_left"`
	SHA256   string `json:"sha256"`
	// From says where the doctor got it: the file, a bundle file, an AIA
	// URL or the AIA cache.
	From string            `json:"from,omitempty"`
	Cert *x509.Certificate `json:"-"`
}

// Diagnosis is the doctor's report on one certificate chain.
type Diagnosis struct {
	// Source is the certificate file, or the server address.
	Source string `json:"source"`
	Mode   Mode   `json:"mode"`
	// OK says no finding is an error: clients trusting the main store
	// can connect.
	OK       bool      `json:"ok"`
	Findings []Finding `json:"findings"`
	// Chain is what clients get, leaf first: what tlsfront serves
	// (ModeFile) or what the server sent, in its order (ModeServed).
	Chain []ChainCert `json:"chain"`
	// Root anchors the verified path. Clients must already hold it, so it
	// is not served. Nil when no path verifies.
	Root *ChainCert `json:"root,omitempty"`
	// ShouldServe is, in ModeServed, the chain the server should send
	// when it differs from what it sends.
	ShouldServe []ChainCert `json:"should_serve,omitempty"`
	CheckedAt   time.Time   `json:"checked_at"`

	leaf   *x509.Certificate
	served []*x509.Certificate
	path   []*x509.Certificate
}

// Err returns nil when OK, else a *FileError (ModeFile) naming the file
// of the first error finding and wrapping its sentinel.
func (d *Diagnosis) Err() error {
	var first *Finding
	n := 0
	for i := range d.Findings {
		if d.Findings[i].Severity == SeverityError {
			if first == nil {
				first = &d.Findings[i]
			}
			n++
		}
	}
	if first == nil {
		return nil
	}
	err := first.Err
	if err == nil {
		err = errors.New(first.Message)
	}
	if d.Mode == ModeServed {
		if n > 1 {
			err = fmt.Errorf("%w (and %d more problems; run 'tlsfront check --connect %s' to see all)", err, n-1, d.Source)
		}
		return fmt.Errorf("%s: %w", d.Source, err)
	}
	if n > 1 {
		err = fmt.Errorf("%w (and %d more problems; run 'tlsfront check --cert %s' to see all)", err, n-1, d.Source)
	}
	file := first.File
	if file == "" {
		file = d.Source
	}
	return &FileError{File: file, Err: err}
}

func (d *Diagnosis) add(s Severity, format string, a ...any) {
	d.Findings = append(d.Findings, Finding{Severity: s, Message: fmt.Sprintf(format, a...)})
}

func (d *Diagnosis) addErr(file string, err error) {
	d.OK = false
	d.Findings = append(d.Findings, Finding{Severity: SeverityError, Message: err.Error(), File: file, Err: err})
}

// maxAIAFetches bounds the network work of one diagnosis: a chain is
// rarely more than two intermediates deep.
const maxAIAFetches = 4

// maxBundleFiles bounds how many files of the bundle folder are read.
const maxBundleFiles = 4096

// Diagnose builds the chain clients need from in.Certs and checks it
// against v, reporting every repair and every problem as a Finding.
//
// The leaf is the certificate matching in.Key (else the first non-CA one;
// in ModeServed the first sent). Missing issuers are completed from the
// other certificates, then v.BundleDir, then (with v.FetchAIA) the
// caIssuers URL of the certificate that lacks its issuer, through
// v.CacheDir. Of the paths that verify now, the shortest is served, so an
// expired cross-signed root left in a file is dropped when a valid path
// exists without it. The root and anything not on the path are dropped.
//
// Diagnose does not log and never puts key material in its report. It is
// safe to call concurrently with separate inputs.
func Diagnose(ctx context.Context, in Input, v Verify) *Diagnosis {
	dr := &doctor{ctx: ctx, in: in, v: v, now: v.now(), from: map[[32]byte]string{}}
	dr.d = &Diagnosis{Source: in.CertFile, Mode: in.Mode, OK: true, CheckedAt: dr.now}
	if dr.d.Mode == "" {
		dr.d.Mode = ModeFile
		dr.in.Mode = ModeFile
	}
	dr.aia = newAIAResolver(v, dr.now)
	dr.run()
	return dr.d
}

type doctor struct {
	ctx   context.Context
	in    Input
	v     Verify
	now   time.Time
	d     *Diagnosis
	aia   *aiaResolver
	leaf  *x509.Certificate
	given []*x509.Certificate // the non-leaf input certificates, deduplicated, in order
	cands []*x509.Certificate // given, then bundle folder, then fetched
	from  map[[32]byte]string
	at    time.Time // when paths are built: now, or within the leaf's validity
	// verified remembers the last verification: checking what clients
	// get usually repeats the path search exactly, and each costs two
	// signature checks or more.
	verified *verification
}

type verification struct {
	inter  []*x509.Certificate
	roots  *x509.CertPool
	at     time.Time
	chains [][]*x509.Certificate
	err    error
}

func fingerprint(c *x509.Certificate) [32]byte { return sha256.Sum256(c.Raw) }

func (dr *doctor) run() {
	d := dr.d
	if len(dr.in.Certs) == 0 {
		d.addErr("", fmt.Errorf("%w: the input holds no certificate", ErrNoCertificate))
		return
	}
	leaf, leafIdx := dr.pickLeaf()
	dr.leaf = leaf
	d.leaf = leaf
	givenLabel := "the file"
	if dr.in.Mode == ModeServed {
		givenLabel = "the server"
	}
	dr.from[fingerprint(leaf)] = givenLabel
	seen := map[[32]byte]bool{fingerprint(leaf): true}
	for _, c := range dr.in.Certs {
		fp := fingerprint(c)
		if seen[fp] {
			if c != leaf {
				d.add(SeverityInfo, "%s appears more than once in %s; it is used once", certName(c), givenLabel)
			}
			continue
		}
		seen[fp] = true
		dr.given = append(dr.given, c)
		dr.addCand(c, givenLabel)
	}

	dr.checkLeaf()
	if leafIdx != 0 {
		d.add(SeverityInfo, "the leaf %s was certificate %d of %d in the file; serving it first", certName(leaf), leafIdx+1, len(dr.in.Certs))
	}
	if dr.v.BundleDir != "" {
		dr.loadBundleDir()
	}

	path := dr.buildPath()
	if dr.aia.cacheErr != nil {
		d.add(SeverityWarn, "could not keep fetched intermediates in %s: %v; the next start will need the network again", dr.v.CacheDir, dr.aia.cacheErr)
	}
	var want []*x509.Certificate
	if path != nil {
		want = path[:max(1, len(path)-1)]
		d.path = path
		root := dr.summary(path[len(path)-1], "root")
		d.Root = &root
	}
	served := want
	if dr.in.Mode == ModeServed || path == nil {
		served = append([]*x509.Certificate{leaf}, dr.given...)
	}
	d.served = served
	for i, c := range served {
		d.Chain = append(d.Chain, dr.summary(c, roleOf(i, c)))
	}
	if path != nil {
		if dr.in.Mode == ModeFile {
			dr.reportRepairs(want, path[len(path)-1])
		} else {
			dr.reportServedFlaws(want, path[len(path)-1])
		}
	}
	dr.checkClients(served, want, path)
	dr.checkExpiry(served, path)
}

func roleOf(i int, c *x509.Certificate) string {
	switch {
	case i == 0:
		return "leaf"
	case isSelfSigned(c):
		return "root"
	default:
		return "intermediate"
	}
}

func (dr *doctor) summary(c *x509.Certificate, role string) ChainCert {
	fp := fingerprint(c)
	return ChainCert{
		Role:      role,
		Subject:   c.Subject.String(),
		Issuer:    c.Issuer.String(),
		NotBefore: c.NotBefore.UTC(),
		NotAfter:  c.NotAfter.UTC(),
		DaysLeft:  daysUntil(dr.now, c.NotAfter),
		SHA256:    hex.EncodeToString(fp[:]),
		From:      dr.from[fp],
		Cert:      c,
	}
}

func daysUntil(now, t time.Time) int { return int(math.Floor(t.Sub(now).Hours() / 24)) }

// ago says how long a past duration is, in the unit a person would use.
func ago(d time.Duration) string {
	switch {
	case d < 2*time.Hour:
		return fmt.Sprintf("%d minutes", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d hours", int(d.Hours()))
	default:
		return fmt.Sprintf("%d days", int(d.Hours()/24))
	}
}

func day(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 MST") }

// certName is how findings name a certificate: its common name, or its
// whole subject when it has none.
func certName(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return fmt.Sprintf("%q", c.Subject.CommonName)
	}
	return fmt.Sprintf("%q", c.Subject.String())
}

func issuerName(c *x509.Certificate) string {
	if c.Issuer.CommonName != "" {
		return fmt.Sprintf("%q", c.Issuer.CommonName)
	}
	return fmt.Sprintf("%q", c.Issuer.String())
}

func (dr *doctor) addCand(c *x509.Certificate, from string) bool {
	fp := fingerprint(c)
	if _, ok := dr.from[fp]; ok {
		return false
	}
	dr.from[fp] = from
	dr.cands = append(dr.cands, c)
	return true
}

func (dr *doctor) pickLeaf() (*x509.Certificate, int) {
	certs := dr.in.Certs
	if dr.in.Mode == ModeServed {
		return certs[0], 0
	}
	if dr.in.Key != nil {
		pub := dr.in.Key.Public()
		for i, c := range certs {
			if k, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); ok && k.Equal(pub) {
				dr.d.add(SeverityOK, "the private key matches the certificate %s", certName(c))
				return c, i
			}
		}
		leaf, i := guessLeaf(certs)
		dr.d.addErr(dr.in.KeyFile, fmt.Errorf("%w in %s: the key matches none of its %d certificate(s) (leaf %s); a renewal probably wrote a new certificate but not its key (or the reverse): install the matching pair", ErrKeyMismatch, dr.in.CertFile, len(certs), certName(leaf)))
		return leaf, i
	}
	return guessLeaf(certs)
}

// guessLeaf picks the first certificate that is not a CA, else the first
// that issued none of the others.
func guessLeaf(certs []*x509.Certificate) (*x509.Certificate, int) {
	for i, c := range certs {
		if !c.IsCA {
			return c, i
		}
	}
	for i, c := range certs {
		issuer := false
		for _, o := range certs {
			if o != c && issuedBy(o, c) {
				issuer = true
				break
			}
		}
		if !issuer {
			return c, i
		}
	}
	return certs[0], 0
}

func issuedBy(child, parent *x509.Certificate) bool {
	return bytes.Equal(child.RawIssuer, parent.RawSubject) && child.CheckSignatureFrom(parent) == nil
}

func validAt(c *x509.Certificate, t time.Time) bool {
	return !t.Before(c.NotBefore) && !t.After(c.NotAfter)
}

func (dr *doctor) checkLeaf() {
	d, leaf, now := dr.d, dr.leaf, dr.now
	dr.at = now
	switch {
	case now.After(leaf.NotAfter):
		d.addErr("", fmt.Errorf("%w: the leaf %s expired on %s (%s ago); renew it", ErrExpired, certName(leaf), day(leaf.NotAfter), ago(now.Sub(leaf.NotAfter))))
		// Paths are still built, at a moment the leaf was valid, so the
		// report can show the rest of the chain.
		dr.at = leaf.NotAfter.Add(-time.Second)
	case now.Before(leaf.NotBefore):
		d.addErr("", fmt.Errorf("%w: the leaf %s starts on %s; check the clock or wait", ErrNotYetValid, certName(leaf), day(leaf.NotBefore)))
		dr.at = leaf.NotBefore.Add(time.Second)
	default:
		d.add(SeverityOK, "the leaf %s is valid until %s (%d days left)", certName(leaf), day(leaf.NotAfter), daysUntil(now, leaf.NotAfter))
	}
	var bad []string
	for _, name := range dr.in.Names {
		if err := leaf.VerifyHostname(name); err != nil {
			bad = append(bad, name)
		}
	}
	for _, name := range bad {
		what := "is routed here"
		if dr.in.Mode == ModeServed {
			what = "was asked for"
		}
		d.addErr("", fmt.Errorf("%w: %q %s but the certificate covers only %s; get one whose SANs include it", ErrNameMismatch, name, what, strings.Join(leafNames(leaf), ", ")))
	}
	if len(bad) == 0 && len(dr.in.Names) > 0 {
		d.add(SeverityOK, "the leaf covers %s", strings.Join(dr.in.Names, ", "))
	}
}

func (dr *doctor) loadBundleDir() {
	dir := dr.v.BundleDir
	entries, err := os.ReadDir(dir)
	if err != nil {
		dr.d.add(SeverityWarn, "cannot read the bundle folder: %v", err)
		return
	}
	if len(entries) > maxBundleFiles {
		dr.d.add(SeverityWarn, "the bundle folder %s has %d entries; only the first %d are read", dir, len(entries), maxBundleFiles)
		entries = entries[:maxBundleFiles]
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		fi, err := os.Stat(p) // follows symlinks, as c_rehash folders use them
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if fi.Size() > maxBundleBytes {
			dr.d.add(SeverityInfo, "skipped %s in the bundle folder: larger than %d bytes", p, maxBundleBytes)
			continue
		}
		data, err := ReadFile(p, MaxFileBytes) // the stat above can be raced
		if err != nil {
			dr.d.add(SeverityInfo, "skipped %s in the bundle folder: %v", p, err)
			continue
		}
		cs, err := parseBundle(data)
		if err != nil {
			dr.d.add(SeverityInfo, "skipped %s in the bundle folder: %v", p, err)
			continue
		}
		for _, c := range cs {
			if !c.Equal(dr.leaf) {
				dr.addCand(c, "the bundle file "+p)
			}
		}
	}
}

func (dr *doctor) pool(cs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range cs {
		p.AddCert(c)
	}
	return p
}

func (dr *doctor) verifyWith(inter []*x509.Certificate, roots *x509.CertPool) ([][]*x509.Certificate, error) {
	if v := dr.verified; v != nil && v.roots == roots && v.at.Equal(dr.at) &&
		slices.EqualFunc(v.inter, inter, func(a, b *x509.Certificate) bool { return a.Equal(b) }) {
		return v.chains, v.err
	}
	chains, err := dr.leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: dr.pool(inter),
		CurrentTime:   dr.at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	dr.verified = &verification{inter: slices.Clone(inter), roots: roots, at: dr.at, chains: chains, err: err}
	return chains, err
}

// buildPath returns the best verified path from the leaf to a root of
// v.Roots, fetching missing issuers from AIA URLs as needed, or nil.
func (dr *doctor) buildPath() []*x509.Certificate {
	chains, _ := dr.verifyWith(dr.cands, dr.v.Roots)
	// The AIA cache is read even with fetching off: it holds what an
	// earlier run fetched, and reading it needs no network.
	for fetches := 0; len(chains) == 0 && (dr.v.FetchAIA || dr.v.CacheDir != "") && fetches < maxAIAFetches; {
		urls := dr.missingIssuerURLs()
		added := false
		for _, u := range urls {
			if fetches >= maxAIAFetches {
				break
			}
			fetches++
			res := dr.aia.resolve(dr.ctx, u)
			if res.err != nil {
				continue
			}
			from := "its AIA URL " + u
			if strings.HasPrefix(res.from, "AIA cache") {
				from = "the AIA cache " + strings.TrimPrefix(res.from, "AIA cache ") + " (fetched earlier from " + u + ")"
			}
			for _, c := range res.certs {
				if dr.addCand(c, from) {
					added = true
				}
			}
		}
		if !added {
			break
		}
		chains, _ = dr.verifyWith(dr.cands, dr.v.Roots)
	}
	if len(chains) == 0 {
		return nil
	}
	// Shortest first; then the one using most of what was given; then the
	// one whose served part lasts longest.
	given := map[[32]byte]bool{}
	for _, c := range dr.given {
		given[fingerprint(c)] = true
	}
	notGiven := func(ch []*x509.Certificate) int {
		n := 0
		if len(ch) < 3 {
			return 0
		}
		for _, c := range ch[1 : len(ch)-1] {
			if !given[fingerprint(c)] {
				n++
			}
		}
		return n
	}
	minAfter := func(ch []*x509.Certificate) time.Time {
		t := ch[0].NotAfter
		for _, c := range ch[:max(1, len(ch)-1)] {
			if c.NotAfter.Before(t) {
				t = c.NotAfter
			}
		}
		return t
	}
	sort.SliceStable(chains, func(i, j int) bool {
		a, b := chains[i], chains[j]
		if len(a) != len(b) {
			return len(a) < len(b)
		}
		if na, nb := notGiven(a), notGiven(b); na != nb {
			return na < nb
		}
		return minAfter(a).After(minAfter(b))
	})
	return chains[0]
}

// issuersOf returns the candidates that issued c.
func (dr *doctor) issuersOf(c *x509.Certificate, cands []*x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, p := range cands {
		if p != c && !p.Equal(c) && issuedBy(c, p) {
			out = append(out, p)
		}
	}
	return out
}

// chainsToRoots says whether c verifies directly against v.Roots.
func (dr *doctor) chainsToRoots(c *x509.Certificate) error {
	_, err := c.Verify(x509.VerifyOptions{Roots: dr.v.Roots, CurrentTime: dr.at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

// missingIssuerURLs returns the caIssuers URLs, not yet tried, of the
// certificates reachable from the leaf that have no valid issuer among the
// candidates and do not chain to a trusted root by themselves.
func (dr *doctor) missingIssuerURLs() []string {
	var urls []string
	seen := map[[32]byte]bool{fingerprint(dr.leaf): true}
	queue := []*x509.Certificate{dr.leaf}
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		if isSelfSigned(c) {
			continue
		}
		issuers := dr.issuersOf(c, dr.cands)
		if !slices.ContainsFunc(issuers, func(p *x509.Certificate) bool { return validAt(p, dr.at) }) && dr.chainsToRoots(c) != nil {
			for _, u := range c.IssuingCertificateURL {
				if _, tried := dr.aia.results[u]; !tried && !slices.Contains(urls, u) {
					urls = append(urls, u)
				}
			}
		}
		for _, p := range issuers {
			if fp := fingerprint(p); !seen[fp] {
				seen[fp] = true
				queue = append(queue, p)
			}
		}
	}
	return urls
}

// crossOf says whether c certifies the same subject and key as root
// under another issuer: a cross-signature.
func crossOf(c, root *x509.Certificate) bool {
	return !c.Equal(root) && bytes.Equal(c.RawSubject, root.RawSubject) && bytes.Equal(c.RawSubjectPublicKeyInfo, root.RawSubjectPublicKeyInfo)
}

func expiredNote(c *x509.Certificate, now time.Time) string {
	if now.After(c.NotAfter) {
		return ", which expired on " + day(c.NotAfter)
	}
	return ""
}

func contains(cs []*x509.Certificate, c *x509.Certificate) bool {
	return slices.ContainsFunc(cs, c.Equal)
}

func names(cs []*x509.Certificate) string {
	var out []string
	for _, c := range cs {
		out = append(out, certName(c))
	}
	return strings.Join(out, ", ")
}

// givenOrder compares the order of what was given (a file, or what a
// server sent) with the wanted chain: the given certificates that are on
// it, in their given order; the intermediates of want that were given, in
// the wanted order; and whether the two orders agree.
func (dr *doctor) givenOrder(want []*x509.Certificate) (given, wanted []*x509.Certificate, inOrder bool) {
	for _, c := range dr.given {
		if contains(want, c) {
			given = append(given, c)
		}
	}
	for _, c := range want[1:] {
		if contains(dr.given, c) {
			wanted = append(wanted, c)
		}
	}
	return given, wanted, slices.EqualFunc(given, wanted, func(a, b *x509.Certificate) bool { return a.Equal(b) })
}

// reportRepairs says how the served chain differs from the file.
func (dr *doctor) reportRepairs(want []*x509.Certificate, anchor *x509.Certificate) {
	d := dr.d
	repaired := false
	inFile, wantGiven, inOrder := dr.givenOrder(want)
	if !inOrder {
		repaired = true
		d.add(SeverityInfo, "the intermediates in the file were out of order (%s); serving each followed by its issuer (%s)", names(inFile), names(wantGiven))
	}
	for i, c := range want[1:] {
		if !contains(dr.given, c) {
			repaired = true
			d.add(SeverityInfo, "completed the chain: added %s, the issuer of %s, from %s", certName(c), certName(want[i]), dr.from[fingerprint(c)])
		}
	}
	for _, c := range dr.given {
		if contains(want, c) {
			continue
		}
		repaired = true
		switch {
		case c.Equal(anchor):
			d.add(SeverityInfo, "dropped the root %s from the served chain: clients must already trust it, and a root in the chain costs bytes and, once expired, can break old clients", certName(c))
		case crossOf(c, anchor):
			d.add(SeverityInfo, "dropped %s, a cross-signed copy of the root %s issued by %s%s: clients trusting the root do not need it, and old clients that follow it fail once it or its issuer expires (as with DST Root CA X3)", certName(c), certName(anchor), issuerName(c), expiredNote(c, dr.now))
		case dr.now.After(c.NotAfter):
			d.add(SeverityInfo, "dropped %s (issued by %s), which expired on %s: a valid path to the root %s exists without it; served, an expired cross-signed root breaks old clients (as DST Root CA X3 did)", certName(c), issuerName(c), day(c.NotAfter), certName(anchor))
		default:
			d.add(SeverityInfo, "dropped %s (issued by %s): it is not on the path from the leaf to the root %s", certName(c), issuerName(c), certName(anchor))
		}
	}
	if !repaired {
		d.add(SeverityOK, "the file holds the chain in order, nothing missing or extra")
	}
}

// reportServedFlaws says what a server sends that it should not, or in
// the wrong order. Missing intermediates are reported by checkClients.
func (dr *doctor) reportServedFlaws(want []*x509.Certificate, anchor *x509.Certificate) {
	d := dr.d
	sent, wantSent, inOrder := dr.givenOrder(want)
	if !inOrder {
		d.add(SeverityWarn, "the server sends the intermediates out of order (%s; should be %s, each followed by its issuer); strict clients reject this", names(sent), names(wantSent))
	}
	for _, c := range dr.given {
		if contains(want, c) {
			continue
		}
		switch {
		case c.Equal(anchor):
			d.add(SeverityWarn, "the server sends the root %s: clients ignore it (it only costs bytes), but once it expires old clients can break (as with DST Root CA X3); remove it from the served chain", certName(c))
		case crossOf(c, anchor):
			d.add(SeverityWarn, "the server sends %s, a cross-signed copy of the root %s issued by %s%s; old clients that follow it fail once it or its issuer expires (as with DST Root CA X3): remove it unless old clients need it and it is valid", certName(c), certName(anchor), issuerName(c), expiredNote(c, dr.now))
		case dr.now.After(c.NotAfter):
			d.add(SeverityWarn, "the server sends %s (issued by %s), which expired on %s; old clients that build their path through it fail (as with DST Root CA X3): remove it", certName(c), issuerName(c), day(c.NotAfter))
		default:
			d.add(SeverityWarn, "the server sends %s (issued by %s), which is not on the path to the root %s: remove it", certName(c), issuerName(c), certName(anchor))
		}
	}
	if !slices.EqualFunc(d.served, want, func(a, b *x509.Certificate) bool { return a.Equal(b) }) {
		for i, c := range want {
			d.ShouldServe = append(d.ShouldServe, dr.summary(c, roleOf(i, c)))
		}
	}
}

// checkClients verifies exactly what is served, as a client that fetches
// nothing does, against the main store (an error) and each extra store (a
// warning).
func (dr *doctor) checkClients(served, want, path []*x509.Certificate) {
	d := dr.d
	_, err := dr.verifyWith(served[1:], dr.v.Roots)
	if err != nil {
		var cands []*x509.Certificate
		if path == nil && dr.in.Mode == ModeFile {
			cands = dr.cands
		} else {
			cands = served[1:]
		}
		msg, expired := dr.explain(cands, want, dr.v.Roots, dr.v.rootsName(), err)
		switch {
		case !validAt(dr.leaf, dr.now):
			// Clients already fail on the leaf; the rest of the chain was
			// checked as of a moment the leaf was valid, which is worth
			// knowing for the renewal but is not a second failure.
			d.add(SeverityWarn, "also, checked as of %s (while the leaf was valid), the chain does not verify: %s", day(dr.at), msg)
		case expired:
			d.addErr("", fmt.Errorf("%w: %w: %s", ErrUntrusted, ErrExpired, msg))
		default:
			d.addErr("", fmt.Errorf("%w: %s", ErrUntrusted, msg))
		}
	} else {
		d.add(SeverityOK, "clients trusting %s can verify the chain (%s)", dr.v.rootsName(), names(path))
	}
	stores := make([]string, 0, len(dr.v.ExtraStores))
	for name := range dr.v.ExtraStores {
		stores = append(stores, name)
	}
	sort.Strings(stores)
	for _, name := range stores {
		pool := dr.v.ExtraStores[name]
		if pool == nil {
			continue
		}
		if _, err := dr.verifyWith(served[1:], pool); err != nil {
			msg, _ := dr.explain(served[1:], nil, pool, fmt.Sprintf("the %q store", name), err)
			d.add(SeverityWarn, "clients that trust only the %q store cannot verify the chain: %s", name, msg)
		} else {
			d.add(SeverityOK, "clients that trust the %q store can verify the chain", name)
		}
	}
}

// explain says in plain words why the leaf does not verify with cands
// against roots, by walking up from the leaf. elsewhere holds
// certificates the doctor found that are not in cands (a server's missing
// intermediates). expired reports an expired certificate on the way.
func (dr *doctor) explain(cands, elsewhere []*x509.Certificate, roots *x509.CertPool, rootsName string, verr error) (msg string, expired bool) {
	cur := dr.leaf
	seen := map[[32]byte]bool{fingerprint(cur): true}
	for range 10 {
		if isSelfSigned(cur) {
			if cur == dr.leaf {
				return fmt.Sprintf("the leaf %s is self-signed and %s does not hold it; use a certificate from a CA the clients trust, or add it to their trust store", certName(cur), rootsName), false
			}
			return fmt.Sprintf("the chain ends at the root %s, which %s does not hold; use a certificate from a CA the clients trust, or trust that root (--trust-ca)", certName(cur), rootsName), false
		}
		_, err := cur.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: dr.at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if err == nil {
			break // the rest of the way is fine: the problem is below
		}
		var cie x509.CertificateInvalidError
		if errors.As(err, &cie) && cie.Reason == x509.Expired && cie.Cert != nil && cie.Cert != cur {
			return fmt.Sprintf("the root %s, issuer of %s, expired on %s", certName(cie.Cert), certName(cur), day(cie.Cert.NotAfter)), true
		}
		var issuers []*x509.Certificate
		for _, p := range dr.issuersOf(cur, cands) {
			if !seen[fingerprint(p)] {
				issuers = append(issuers, p)
			}
		}
		if len(issuers) == 0 {
			return dr.missingIssuer(cur, elsewhere, rootsName), false
		}
		next := issuers[0]
		for _, p := range issuers {
			if validAt(p, dr.at) {
				next = p
				break
			}
		}
		if !validAt(next, dr.at) {
			if dr.at.After(next.NotAfter) {
				return fmt.Sprintf("%s, the issuer of %s, expired on %s and no valid replacement was found; serve the CA's current intermediate instead", certName(next), certName(cur), day(next.NotAfter)), true
			}
			return fmt.Sprintf("%s, the issuer of %s, is not valid before %s", certName(next), certName(cur), day(next.NotBefore)), false
		}
		seen[fingerprint(next)] = true
		cur = next
	}
	var cie x509.CertificateInvalidError
	if errors.As(verr, &cie) && cie.Reason == x509.IncompatibleUsage {
		return fmt.Sprintf("the leaf %s is not for TLS servers: its extended key usage lacks serverAuth; get a server certificate", certName(dr.leaf)), false
	}
	return verr.Error(), false
}

func (dr *doctor) missingIssuer(c *x509.Certificate, elsewhere []*x509.Certificate, rootsName string) string {
	// The issuer may be known even though the checked chain lacks it: a
	// root the store does not hold, or an intermediate a server omits.
	known := slices.Concat(elsewhere, dr.cands)
	if len(dr.d.path) > 0 {
		known = append(known, dr.d.path[len(dr.d.path)-1])
	}
	for _, p := range known {
		if !issuedBy(c, p) {
			continue
		}
		if isSelfSigned(p) {
			return fmt.Sprintf("the chain ends at the root %s, which %s does not hold; clients trusting only it cannot connect", certName(p), rootsName)
		}
		if contains(elsewhere, p) {
			return fmt.Sprintf("the server does not send the intermediate %s, the issuer of %s; tlsfront found it in %s, but clients that cannot fetch missing intermediates (most non-browser and MQTT clients) fail with \"certificate unknown\" or \"unable to get local issuer certificate\": configure the server to send it after the leaf", certName(p), certName(c), dr.from[fingerprint(p)])
		}
	}
	var where []string
	fix := "add it after the leaf in the certificate file"
	if dr.in.Mode == ModeServed {
		where = append(where, "what the server sends")
		fix = "configure the server to send it after the leaf"
	} else {
		where = append(where, "the file")
	}
	if dr.v.BundleDir != "" {
		where = append(where, "the bundle folder "+dr.v.BundleDir)
		if dr.in.Mode == ModeFile {
			fix += " or put it in the bundle folder"
		}
	}
	msg := fmt.Sprintf("the chain is incomplete: the issuer %s of %s is not in %s", issuerName(c), certName(c), strings.Join(where, " nor "))
	switch {
	case len(c.IssuingCertificateURL) == 0:
		msg += fmt.Sprintf(", and %s names no AIA URL to fetch it from", certName(c))
	case !dr.v.FetchAIA:
		msg += fmt.Sprintf(", and fetching it from its AIA URL %s is turned off", c.IssuingCertificateURL[0])
	default:
		for _, u := range c.IssuingCertificateURL {
			res, ok := dr.aia.results[u]
			switch {
			case !ok:
				msg += fmt.Sprintf(", and its AIA URL %s was not tried", u)
			case res.err != nil:
				msg += fmt.Sprintf(", and fetching its AIA URL %s failed: %v", u, res.err)
			default:
				msg += fmt.Sprintf(", and its AIA URL %s did not give it", u)
			}
		}
	}
	return fmt.Sprintf("%s; %s (if %s is a root, it is missing from %s)", msg, fix, issuerName(c), rootsName)
}

// checkExpiry warns about a leaf that expires soon and about any served
// certificate (or the root) that expires before the leaf.
func (dr *doctor) checkExpiry(served, path []*x509.Certificate) {
	d, leaf, now := dr.d, dr.leaf, dr.now
	if validAt(leaf, now) && leaf.NotAfter.Sub(now) < dr.v.expiryWarning() {
		d.add(SeverityWarn, "the leaf expires in %d days (%s); renew it", daysUntil(now, leaf.NotAfter), day(leaf.NotAfter))
	}
	check := slices.Clone(served[1:])
	if len(path) > 1 && !contains(check, path[len(path)-1]) {
		check = append(check, path[len(path)-1])
	}
	for _, c := range check {
		if !c.NotAfter.Before(leaf.NotAfter) || now.After(c.NotAfter) || !(contains(path, c)) {
			continue
		}
		role := "the intermediate"
		if isSelfSigned(c) {
			role = "the root"
		}
		d.add(SeverityWarn, "%s %s expires on %s, before the leaf (%s): from then on clients cannot verify the chain; renew or switch to the CA's current chain before then", role, certName(c), day(c.NotAfter), day(leaf.NotAfter))
	}
}
