package certs

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tlsfront/tlsfront/report"
)

// pair is one certificate the Manager reads: listed in the configuration,
// or found in a folder.
type pair struct {
	FileCert
	// index is its place in ManagerOptions.Files, or -1 for a folder
	// pair; folder is then its folder's index in ManagerOptions.Folders.
	index, folder int
	// print is the files as last checked, when printed is set: files
	// that still match it are not read again.
	print   pairPrint
	printed bool
	// err is why those files were refused; nil when they serve.
	err error
	// scanned is the certificate file's stats from the folder scan
	// that found the pair, when scannedOK.
	scanned   fileStat
	scannedOK bool
	// known: no file event touched the pair since it was checked; it
	// is taken as unchanged without a stat (ReloadChanged).
	known bool
}

// where names p in errors: its YAML entry, or its folder.
func (p *pair) where(o ManagerOptions) string {
	if p.index >= 0 {
		if p.Entry != "" {
			return fmt.Sprintf("%s (%s)", p.Entry, p.ID)
		}
		return fmt.Sprintf("certificates[%d] (%s)", p.index, p.ID)
	}
	return fmt.Sprintf("%s (in %s)", p.ID, o.Folders[p.folder].Dir)
}

// checked is what checking one pair's files found.
type checked struct {
	b       *Bundle
	out     Outcome // Reloaded, Unchanged or Failed
	err     error
	print   pairPrint
	printed bool
	// same: the files are those checked last time.
	same bool
}

// check runs p's files through the pipeline, without publishing. Files
// whose stats or, failing that, content are as p.print says are Unchanged
// and cost a stat each, unless force is set (the trust store changed).
// With prove unset the self-test is left to the caller (the start runs it
// once it knows the routed names).
func (m *Manager) check(ctx context.Context, p *pair, v Verify, names []string, force, prove bool) checked {
	if p.known && !force && p.printed {
		return checked{out: Unchanged, print: p.print, printed: true, same: true}
	}
	st, statOK := statPair(p.FileCert, p.scanned, p.scannedOK)
	if statOK && !force && p.printed && p.print.sameStats(st) {
		return checked{out: Unchanged, print: p.print, printed: true, same: true}
	}
	certData, keyData, keyFile, err := readSource(p.source(nil))
	if err != nil {
		return checked{out: Failed, err: err}
	}
	st.sum = contentSum(certData, keyData)
	c := checked{print: st, printed: statOK}
	if !force && p.printed && p.print.sum == st.sum {
		c.out, c.same = Unchanged, true
		return c
	}
	b, err := parse(ctx, p.source(names), certData, keyData, v)
	if err != nil {
		c.out, c.err = Failed, err
		return c
	}
	if w := keyModeWarning(keyFile); w != "" {
		b.Warnings = append(b.Warnings, w)
	}
	m.slim(b)
	if cur := m.store.Get(p.ID); cur != nil && sameBundle(cur, b) {
		c.out = Unchanged
		return c
	}
	if prove {
		if err := m.selfTest(b, v); err != nil {
			c.out, c.err = Failed, err
			return c
		}
		b.Warnings = append(b.Warnings, keyWarnings(b)...)
	}
	c.b, c.out = b, Reloaded
	return c
}

// each runs f(i) for every i < n on at most GOMAXPROCS goroutines, and
// returns when all are done. f must be safe for concurrent use.
func each(n int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				f(i)
			}
		})
	}
	wg.Wait()
}

// scan lists the pairs to read now: the listed ones, then each folder's,
// in order. A folder that cannot be read keeps the pairs it had (prev),
// and its error is returned by folder index; a folder pair whose ID is
// taken is left out and its error returned too.
func (m *Manager) scan(prev map[string]*pair, keep func(fc FileCert, elem string) bool) (list []*pair, folderErrs map[int]error, dupErrs []Result) {
	seen := make(map[string]bool, len(prev))
	for i, f := range m.o.Files {
		list = append(list, &pair{FileCert: f, index: i, folder: -1})
		seen[f.ID] = true
	}
	for fi, fs := range m.o.Folders {
		got, err := fs.scanWith(keep)
		if err != nil {
			if folderErrs == nil {
				folderErrs = map[int]error{}
			}
			folderErrs[fi] = err
			for _, p := range prev {
				if p.index < 0 && p.folder == fi {
					// No fresh stats: statPair takes them.
					got = append(got, found{FileCert: p.FileCert})
				}
			}
			slices.SortFunc(got, func(a, b found) int { return strings.Compare(a.ID, b.ID) })
		}
		for _, f := range got {
			if seen[f.ID] {
				dupErrs = append(dupErrs, Result{ID: f.ID, Result: Failed,
					err: &FileError{f.CertFile, fmt.Errorf("the ID %q is taken by another certificate; give the folder a name (the IDs of its certificates become name/%s)", f.ID, f.ID)}})
				continue
			}
			seen[f.ID] = true
			list = append(list, &pair{FileCert: f.FileCert, index: -1, folder: fi, scanned: f.cert, scannedOK: err == nil && !f.known, known: f.known})
		}
	}
	return list, folderErrs, dupErrs
}

// Load reads the trust store, every certificate and the client CA bundle,
// proves each certificate, and serves them. A listed certificate that
// fails, a routed name no certificate covers or a folder that cannot be
// read fails the load, naming the file or key, and nothing is served: it
// is the start. A pair in a folder that fails is logged, reported and
// skipped; Reload shows it among the failures until its files change.
//
// Certificates are read and checked in parallel, on GOMAXPROCS
// goroutines, and published with a single swap.
func (m *Manager) Load(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, m.o.ReloadTimeout)
	defer cancel()
	m.mu.Lock()
	defer m.mu.Unlock()
	v, err := m.loadTrust()
	if err != nil {
		return err
	}
	list, folderErrs, dups := m.scan(nil, nil)
	var errs []error
	for fi, err := range folderErrs {
		errs = append(errs, fmt.Errorf("folder %s: %w", m.o.Folders[fi].Dir, err))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, d := range dups {
		m.dups[d.ID] = true
		m.skip(d.ID, "start", d.err)
	}
	for i, f := range m.o.Folders {
		n := 0
		for _, p := range list {
			if p.index < 0 && p.folder == i {
				n++
			}
		}
		if n == 0 {
			m.log.Warn("certificates folder holds no pair yet", "folder", f.Dir, "cert", f.Cert)
		}
	}
	res := make([]checked, len(list))
	each(len(list), func(i int) { res[i] = m.check(ctx, list[i], v, nil, true, false) })
	for i, p := range list {
		err := res[i].err
		if err == nil {
			continue
		}
		if errors.Is(err, ErrUntrusted) && m.o.Trust.CAFile == "" {
			err = fmt.Errorf("%w; if clients trust a private CA, give its root with --trust-ca FILE (trust.ca_file in the YAML)", err)
		}
		if p.index >= 0 {
			errs = append(errs, fmt.Errorf("%s: %w", p.where(m.o), err))
		}
		res[i].err = err
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Which routed names each certificate serves: a renewal that drops
	// one is refused later.
	staged := NewStore()
	var entries []Entry
	for i, p := range list {
		if res[i].b != nil {
			entries = append(entries, Entry{p.ID, res[i].b})
		}
	}
	staged.Update(entries, nil)
	ids := make(map[*Bundle]string, len(entries))
	for _, e := range entries {
		ids[e.Bundle] = e.ID
	}
	m.routed = map[string][]string{}
	for _, name := range m.o.RoutedNames {
		covering := staged.LookupAll(name)
		if len(covering) == 0 {
			if m.o.Dynamic == nil || !m.o.Dynamic.Covers(name) {
				errs = append(errs, fmt.Errorf("no certificate covers %q, which a route sends to a backend; add one whose SANs include it", name))
			}
			continue
		}
		for _, b := range covering {
			m.routed[ids[b]] = append(m.routed[ids[b]], name)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	each(len(list), func(i int) {
		b := res[i].b
		if b == nil {
			return
		}
		b.Source.Names = m.routed[list[i].ID]
		if err := m.selfTest(b, v); err != nil {
			res[i].b, res[i].out, res[i].err = nil, Failed, err
			return
		}
		b.Warnings = append(b.Warnings, keyWarnings(b)...)
	})
	entries = entries[:0]
	for i, p := range list {
		if err := res[i].err; err != nil && p.index >= 0 {
			errs = append(errs, fmt.Errorf("%s: %w", p.where(m.o), err))
		}
		if res[i].b == nil {
			// A failed self-test drops names that this pair alone
			// covered: a routed name left uncovered fails the start.
			delete(m.routed, p.ID)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, name := range m.o.RoutedNames {
		if !m.unsyncedRoutedCovered(name) && (m.o.Dynamic == nil || !m.o.Dynamic.Covers(name)) {
			return fmt.Errorf("no certificate covers %q, which a route sends to a backend: the only ones that do were refused", name)
		}
	}
	if m.clientCAs != nil {
		if _, n, err := m.clientCAs.Reload(m.o.ClientCAFile); err != nil {
			return fmt.Errorf("%s: %w", ClientCAID, err)
		} else {
			m.log.Info("client certificate verification on", "ca_file", m.o.ClientCAFile, "cas", n, "required", m.o.ClientCARequired)
		}
	}
	m.pairs = make(map[string]*pair, len(list))
	skipped := 0
	for i, p := range list {
		p.print, p.printed, p.err = res[i].print, res[i].printed, res[i].err
		m.pairs[p.ID] = p
		if p.err != nil {
			skipped++
			m.skip(p.ID, "start", fmt.Errorf("%s: %w", p.where(m.o), p.err))
			continue
		}
		entries = append(entries, Entry{p.ID, res[i].b})
	}
	m.store.Update(entries, nil)
	for _, e := range entries {
		m.logPublished(e.ID, e.Bundle, "start")
	}
	if len(m.o.Folders) > 0 {
		m.log.Info("certificates loaded", "served", len(entries), "skipped", skipped)
	}
	m.warnOverlaps()
	m.trust = printTrust(v)
	m.verify.Store(&v)
	return nil
}

// unsyncedRoutedCovered reports whether some certificate keeps serving
// name. The caller holds m.mu.
func (m *Manager) unsyncedRoutedCovered(name string) bool {
	for _, names := range m.routed {
		if slices.Contains(names, name) {
			return true
		}
	}
	return false
}

// skip logs and reports a folder pair left out.
func (m *Manager) skip(id, trigger string, err error) {
	m.log.Error("certificate skipped, the others serve", "id", id, "trigger", trigger, "err", err)
	m.rep.Reloaded(report.Reload{ID: id, Trigger: trigger, Err: err})
}

// slim drops from b what serving does not need, keeping the repairs the
// doctor made to log them, and shares the CA certificates of its chain
// with the other bundles, so that a thousand leaves from one CA hold one
// copy of its intermediate and root: together, about half of what a
// certificate costs in memory. slim is safe for concurrent use.
func (m *Manager) slim(b *Bundle) {
	if b.Diagnosis != nil {
		for _, f := range b.Diagnosis.Findings {
			if f.Severity == SeverityInfo {
				b.repairs = append(b.repairs, f.Message)
			}
		}
		b.Diagnosis = nil
	}
	m.casMu.Lock()
	defer m.casMu.Unlock()
	if m.cas == nil {
		m.cas = map[string]*x509.Certificate{}
	}
	for i, c := range b.Chain {
		if i == 0 {
			continue
		}
		if shared, ok := m.cas[string(c.Raw)]; ok {
			b.Chain[i] = shared
		} else {
			m.cas[string(c.Raw)] = c
		}
	}
	for i, der := range b.Cert.Certificate {
		if shared, ok := m.cas[string(der)]; ok && i > 0 {
			b.Cert.Certificate[i] = shared.Raw
		}
	}
}

// logPublished says b serves as id.
func (m *Manager) logPublished(id string, b *Bundle, trigger string) {
	for _, r := range b.repairs {
		m.log.Info("certificate chain repaired", "certificate", id, "detail", r)
	}
	for _, w := range b.Warnings {
		m.log.Warn("certificate warning", "certificate", id, "warning", w)
	}
	msg := "certificate reloaded"
	if trigger == "start" {
		msg = "certificate loaded"
	}
	m.log.Info(msg, "certificate", id, "trigger", trigger, "serial", b.Leaf.SerialNumber.Text(16),
		"not_after", b.Leaf.NotAfter, "names", b.Leaf.DNSNames, "chain", len(b.Cert.Certificate))
}

// Reload reads the trust store, the client CA bundle and the certificates
// again, lists the folders again, and serves what changed and passes
// every check; pairs gone from their folder stop being served. trigger
// says what asked (watch, sighup, interval, admin), for the logs and
// reports. With hold set, a certificate that looks caught mid-update (key
// not matching yet, file empty or missing) is neither logged as an error
// nor reported, and retry says to try again once the files have settled.
//
// Only the pairs whose files changed (stats, then content hash) are read
// and checked, in parallel; every pair is when the trust store changed.
// Everything that changed is published with one swap. A pair whose files
// were refused stays among the failed results, without being logged
// again, until they change.
func (m *Manager) Reload(ctx context.Context, trigger string, hold bool) (results []Result, retry bool) {
	return m.reload(ctx, trigger, hold, nil)
}

// ReloadChanged is Reload after file events at the paths in changed, for
// a file watch: a pair in a folder that no path in changed touches (its
// files, its subfolder or what is below it) is taken as unchanged without
// even a stat, so that one renewal among ten thousand pairs costs a
// listing of the folder rather than twenty thousand stats. Pairs added to
// or gone from a folder are still found; listed certificates, the trust
// store and the client CAs are read as by Reload, and a trust store that
// changed makes it a full Reload. Pairs that are symlinks in their folder
// are always checked. A nil changed (events were lost) is Reload.
//
// Paths are compared as given and, for paths under a folder's real path
// (symlinks resolved), as under the folder's configured path.
func (m *Manager) ReloadChanged(ctx context.Context, trigger string, hold bool, changed []string) (results []Result, retry bool) {
	if changed == nil {
		return m.Reload(ctx, trigger, hold)
	}
	return m.reload(ctx, trigger, hold, changed)
}

// unsyncedUntouched returns the scan's keep function for ReloadChanged: a
// pair is kept when it is known as it is, was checked, and no changed
// path is one of its files or within elem (its entry in the folder). The
// caller holds m.mu.
func (m *Manager) unsyncedUntouched(changed []string) func(fc FileCert, elem string) bool {
	var paths []string
	for _, c := range changed {
		c = filepath.Clean(c)
		paths = append(paths, c)
		for _, f := range m.o.Folders {
			dir := filepath.Clean(f.Dir)
			real, err := filepath.EvalSymlinks(dir)
			if err != nil || real == dir {
				continue
			}
			if rest, ok := strings.CutPrefix(c, real+string(filepath.Separator)); ok {
				paths = append(paths, filepath.Join(dir, rest))
			}
		}
	}
	return func(fc FileCert, elem string) bool {
		old, ok := m.pairs[fc.ID]
		if !ok || !old.printed || old.CertFile != fc.CertFile || old.KeyFile != fc.KeyFile {
			return false
		}
		for _, c := range paths {
			if c == fc.CertFile || c == fc.KeyFile || c == elem || strings.HasPrefix(c, elem+string(filepath.Separator)) {
				return false
			}
			if kd := filepath.Dir(fc.KeyFile); fc.KeyFile != "" && kd != filepath.Dir(elem) && strings.HasPrefix(c, kd+string(filepath.Separator)) {
				return false
			}
		}
		return true
	}
}

func (m *Manager) reload(ctx context.Context, trigger string, hold bool, changed []string) (results []Result, retry bool) {
	ctx, cancel := context.WithTimeout(ctx, m.o.ReloadTimeout)
	defer cancel()
	m.mu.Lock()
	defer m.mu.Unlock()
	v, err := m.loadTrust()
	if err != nil {
		// Keep checking against the trust store in force.
		v = *m.verify.Load()
		results = append(results, m.failed(TrustCAID, trigger, err, "trust store reload failed, the previous one stays in use"))
	} else {
		m.verify.Store(&v)
	}
	tp := printTrust(v)
	force := !tp.equal(m.trust)
	var keep func(FileCert, string) bool
	if changed != nil && !force {
		keep = m.unsyncedUntouched(changed)
	}
	list, folderErrs, dups := m.scan(m.pairs, keep)
	for fi := range m.o.Folders {
		if err := folderErrs[fi]; err != nil {
			f := m.o.Folders[fi]
			results = append(results, m.failed(f.ID(), trigger, err, "certificates folder unreadable, its certificates keep serving"))
		}
	}
	seenDups := map[string]bool{}
	for _, d := range dups {
		seenDups[d.ID] = true
		if !m.dups[d.ID] {
			m.skip(d.ID, trigger, d.err)
		}
		results = append(results, Result{ID: d.ID, Result: Failed, Error: d.err.Error(), err: d.err})
	}
	m.dups = seenDups

	res := make([]checked, len(list))
	each(len(list), func(i int) {
		p := list[i]
		if old := m.pairs[p.ID]; old != nil && old.CertFile == p.CertFile && old.KeyFile == p.KeyFile {
			p.print, p.printed, p.err = old.print, old.printed, old.err
		}
		if m.store.Get(p.ID) == nil {
			// Nothing served yet: its routed names come from its SANs,
			// once it is parsed.
			c := m.check(ctx, p, v, nil, force, false)
			if c.b != nil {
				c.b.Source.Names = m.routedFor(c.b)
				if err := m.selfTest(c.b, v); err != nil {
					c.b, c.out, c.err = nil, Failed, err
				} else {
					c.b.Warnings = append(c.b.Warnings, keyWarnings(c.b)...)
				}
			}
			res[i] = c
			return
		}
		res[i] = m.check(ctx, p, v, m.routed[p.ID], force, true)
	})

	var put []Entry
	var kept []*pair
	for i, p := range list {
		c := res[i]
		if hold && c.err != nil && midUpdate(c.err) {
			m.log.Debug("certificate files mid-update, retrying", "certificate", p.ID, "trigger", trigger, "err", c.err)
			retry = true
			kept = append(kept, p)
			continue
		}
		isNew := m.store.Get(p.ID) == nil
		r := Result{ID: p.ID, Result: c.out}
		switch {
		case c.out == Reloaded:
			p.err = nil
			put = append(put, Entry{p.ID, c.b})
			if isNew {
				r.Result = Added
				m.routed[p.ID] = c.b.Source.Names
			}
		case c.same && p.err != nil:
			// Still the refused files: say so, once was enough to log.
			r = Result{ID: p.ID, Result: Failed, Error: p.err.Error(), err: p.err}
		case c.out == Unchanged:
			p.err = nil
			m.log.Debug("certificate unchanged", "certificate", p.ID, "trigger", trigger)
		default:
			p.err = c.err
			msg := "certificate reload failed, previous certificate keeps serving"
			if isNew {
				msg = "certificate refused, not served"
			}
			r = m.failed(p.ID, trigger, c.err, msg)
		}
		if c.out != Failed || c.printed {
			p.print, p.printed = c.print, c.printed
		} else {
			// Unreadable: read it again next time.
			p.printed = false
		}
		kept = append(kept, p)
		results = append(results, r)
	}

	// Pairs gone from their folder stop being served, unless one is the
	// last certificate for a routed name.
	present := make(map[string]bool, len(kept))
	for _, p := range kept {
		present[p.ID] = true
	}
	var remove []string
	for id, p := range m.pairs {
		if present[id] || p.index >= 0 {
			continue
		}
		if name := m.unsyncedOnlyCover(id, put); name != "" && m.store.Get(id) != nil {
			err := fmt.Errorf("gone from %s, but it is the only certificate for %q, which a route sends to a backend: still served; add one covering it first", m.o.Folders[p.folder].Dir, name)
			results = append(results, m.failed(id, trigger, err, "certificate removal refused"))
			kept = append(kept, p)
			continue
		}
		remove = append(remove, id)
	}
	slices.Sort(remove)
	m.store.Update(put, remove)
	for _, e := range put {
		m.logPublished(e.ID, e.Bundle, trigger)
		m.rep.Reloaded(report.Reload{ID: e.ID, Trigger: trigger})
	}
	for _, id := range remove {
		p := m.pairs[id]
		m.log.Info("certificate removed, no longer served", "certificate", id, "folder", m.o.Folders[p.folder].Dir, "trigger", trigger)
		if p.err != nil {
			// Its failure is no longer anyone's problem: clear it.
			m.rep.Reloaded(report.Reload{ID: id, Trigger: trigger})
		}
		delete(m.routed, id)
		results = append(results, Result{ID: id, Result: Removed})
	}
	if len(put) > 0 || len(remove) > 0 {
		m.warnOverlaps()
	}
	m.pairs = make(map[string]*pair, len(kept))
	for _, p := range kept {
		m.pairs[p.ID] = p
	}
	if !retry {
		m.trust = tp
	}
	for i := range results {
		if cur := m.store.Get(results[i].ID); cur != nil {
			results[i].Serial = cur.Leaf.SerialNumber.Text(16)
			na := cur.Leaf.NotAfter
			results[i].NotAfter = &na
		}
	}
	if m.clientCAs != nil {
		out, n, err := m.clientCAs.Reload(m.o.ClientCAFile)
		switch {
		case err != nil && hold && midUpdate(err):
			retry = true
		case err != nil:
			results = append(results, m.failed(ClientCAID, trigger, err, "client CA bundle reload failed, previous CAs stay in use"))
		default:
			if out == Reloaded {
				m.log.Info("client CA bundle reloaded", "trigger", trigger, "ca_file", m.o.ClientCAFile, "cas", n)
				m.rep.Reloaded(report.Reload{ID: ClientCAID, Trigger: trigger})
			}
			results = append(results, Result{ID: ClientCAID, Result: out})
		}
	}
	return results, retry
}

// routedFor returns the routed names b covers, as the Store matches them.
func (m *Manager) routedFor(b *Bundle) []string {
	var out []string
	for _, name := range m.o.RoutedNames {
		if coversName(b, name) {
			out = append(out, name)
		}
	}
	return out
}

// coversName reports whether the Store would serve b for name: an exact
// SAN, or a wildcard one label deep.
func coversName(b *Bundle, name string) bool {
	n := normalName(name)
	_, parent, hasParent := strings.Cut(n, ".")
	for _, k := range sanKeys(b) {
		if k == n {
			return true
		}
		if rest, ok := strings.CutPrefix(k, "*."); ok && hasParent && rest == parent {
			return true
		}
	}
	return false
}

// unsyncedOnlyCover returns a routed name that only the certificate id
// serves, counting those about to be published in put; "" for none. The
// caller holds m.mu.
func (m *Manager) unsyncedOnlyCover(id string, put []Entry) string {
	for _, name := range m.routed[id] {
		covered := false
		for other, names := range m.routed {
			if other != id && slices.Contains(names, name) {
				covered = true
				break
			}
		}
		for _, e := range put {
			if e.ID != id && coversName(e.Bundle, name) {
				covered = true
				break
			}
		}
		if !covered && (m.o.Dynamic == nil || !m.o.Dynamic.Covers(name)) {
			return name
		}
	}
	return ""
}

// failed logs and reports a refused reload of id.
func (m *Manager) failed(id, trigger string, err error, msg string) Result {
	m.log.Error(msg, "id", id, "trigger", trigger, "err", err)
	m.rep.Reloaded(report.Reload{ID: id, Trigger: trigger, Err: err})
	return Result{ID: id, Result: Failed, Error: err.Error(), err: err}
}

// midUpdate reports a failure that a renewal still writing its files
// causes: it may go away once they settle.
func midUpdate(err error) bool {
	return errors.Is(err, ErrKeyMismatch) || errors.Is(err, ErrNoCertificate) || errors.Is(err, fs.ErrNotExist)
}

// trustPrint is what the pairs were checked against: a change means
// checking every pair again.
type trustPrint struct {
	roots       *x509.CertPool
	extra       map[string]*x509.CertPool
	bundleDir   string
	bundleFiles string // names, sizes and times of the files in bundleDir
	set         bool
}

func printTrust(v Verify) trustPrint {
	t := trustPrint{roots: v.Roots, extra: v.ExtraStores, bundleDir: v.BundleDir, set: true}
	if v.BundleDir != "" {
		var sb strings.Builder
		entries, _ := os.ReadDir(v.BundleDir)
		for _, e := range entries {
			if fi, err := e.Info(); err == nil {
				fmt.Fprintf(&sb, "%s %d %d\n", e.Name(), fi.Size(), fi.ModTime().UnixNano())
			}
		}
		t.bundleFiles = sb.String()
	}
	return t
}

// equal reports whether t and o check certificates alike.
func (t trustPrint) equal(o trustPrint) bool {
	if !t.set || !o.set || t.bundleDir != o.bundleDir || t.bundleFiles != o.bundleFiles || !poolEqual(t.roots, o.roots) || len(t.extra) != len(o.extra) {
		return false
	}
	for k, p := range t.extra {
		if q, ok := o.extra[k]; !ok || !poolEqual(p, q) {
			return false
		}
	}
	return true
}

func poolEqual(a, b *x509.CertPool) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(b)
}
