package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tlsfront/tlsfront/report"
)

// Sources of a served certificate.
const (
	SourceFile = "file"
	SourceACME = "acme"
)

// Served is one certificate being served, wherever it came from.
type Served struct {
	ID     string
	Source string // SourceFile or SourceACME
	// Chain is the verified path, leaf first, up to and including the
	// root when known.
	Chain []*x509.Certificate
	// CertFile and KeyFile are where a file certificate is read from.
	CertFile, KeyFile string
	LoadedAt          time.Time
}

// Dynamic is a source of certificates obtained while serving (ACME).
type Dynamic interface {
	// GetCertificate serves the names the files do not cover.
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// WrapTLSConfig adds what the source needs to the listeners' TLS
	// configuration (TLS-ALPN-01 challenges).
	WrapTLSConfig(*tls.Config)
	// Covers reports whether the source serves or may obtain name.
	Covers(name string) bool
	// Served lists the certificates it holds in memory.
	Served() []Served
}

// FileCert is a certificate read from files.
type FileCert struct {
	// ID names it in logs, metrics and reload results.
	ID       string
	CertFile string
	// KeyFile defaults to CertFile (a combined PEM).
	KeyFile string
}

// TrustOptions say what served chains are checked against and how a chain
// missing intermediates is completed: the trust section of the
// configuration. The files are read again on every reload.
type TrustOptions struct {
	// CAFile is a PEM bundle of the roots clients trust. Served chains
	// are verified against it; empty means the system roots.
	CAFile string `yaml:"ca_file"`
	// BundleDir is a folder of PEM/DER/PKCS#7 intermediates used to
	// complete chains whose file lacks them.
	BundleDir string `yaml:"bundle_dir"`
	// FetchAIA lets tlsfront fetch a missing intermediate from the
	// caIssuers URL of the certificate that lacks it, once, and keep it
	// in CacheDir. Default true.
	FetchAIA bool `yaml:"fetch_aia"`
	// ExpiryWarning is how long before a leaf expires to warn; default
	// 21 days.
	ExpiryWarning time.Duration `yaml:"expiry_warning"`
	// ExtraStores maps a name to a PEM file of the roots some clients
	// trust (e.g. old devices that get no updates). A chain one of them
	// cannot verify is a warning naming the store.
	ExtraStores map[string]string `yaml:"extra_stores"`
	// CacheDir keeps fetched intermediates, so that a restart needs no
	// network; "" for none. It is derived from the state folder.
	CacheDir string `yaml:"-"`
}

// DefaultTrust is the trust section's defaults: the system roots, and
// missing intermediates fetched from their AIA URL.
func DefaultTrust() TrustOptions { return TrustOptions{FetchAIA: true} }

// Validate checks t without reading any file; errors name the YAML keys
// under trust.
func (t TrustOptions) Validate() error {
	var errs []error
	if t.ExpiryWarning < 0 {
		errs = append(errs, errors.New("trust.expiry_warning: must not be negative"))
	}
	for _, name := range slices.Sorted(maps.Keys(t.ExtraStores)) {
		if name == "" {
			errs = append(errs, errors.New("trust.extra_stores: a store has an empty name"))
		}
		if t.ExtraStores[name] == "" {
			errs = append(errs, fmt.Errorf("trust.extra_stores.%s: missing the PEM file of its roots", name))
		}
	}
	return errors.Join(errs...)
}

// ManagerOptions configure a Manager.
type ManagerOptions struct {
	Files []FileCert
	Trust TrustOptions
	// ClientCAFile turns on client certificate verification (mTLS)
	// against the CAs in it; ClientCARequired refuses clients without a
	// certificate.
	ClientCAFile     string
	ClientCARequired bool
	// RoutedNames are the server names routes send to a backend; each
	// must be covered, at start and after every renewal.
	RoutedNames []string
	// Dynamic serves what the files do not; nil for none.
	Dynamic Dynamic
	// Reporter receives every reload result that changed or failed.
	Reporter report.Sink
	Log      *slog.Logger
	// ReloadTimeout bounds one load or reload, AIA fetches included;
	// default 30 s.
	ReloadTimeout time.Duration
}

// IDs of the CA bundles among reload results, named by their YAML keys.
const (
	ClientCAID = "client_auth.ca_file"
	TrustCAID  = "trust.ca_file"
)

// Result is what one load or reload did to one certificate or CA bundle.
// Serial and NotAfter describe the certificate serving afterwards: after a
// failure, the previous one.
type Result struct {
	ID       string     `json:"id"`
	Result   Outcome    `json:"result"`
	Error    string     `json:"error,omitempty"`
	Serial   string     `json:"serial,omitempty"`
	NotAfter *time.Time `json:"not_after,omitempty"`
	// err is the error itself, for errors.Is.
	err error
}

// Err returns the failure, nil unless Result is Failed.
func (r Result) Err() error { return r.err }

// Manager owns every certificate tlsfront serves: the files, the dynamic
// source (ACME), the trust store they are checked against, the client CA
// bundle and the Store that serves them. Start and every reload go through
// one pipeline: candidate, chain doctor, in-memory handshake, key warnings,
// publish; a candidate that fails any step is refused and the last good
// certificate keeps serving.
//
// Manager is safe for concurrent use; loads are serialised.
type Manager struct {
	o         ManagerOptions
	log       *slog.Logger
	rep       report.Sink
	store     *Store
	clientCAs *ClientCAs
	verify    atomic.Pointer[Verify]
	routed    map[string][]string // certificate ID -> routed names it serves
	// selfTest proves a candidate; tests replace it to count calls.
	selfTest func(*Bundle, Verify) error

	mu sync.Mutex
}

// NewManager checks o and returns a Manager with nothing loaded. It does no
// I/O: Load does.
func NewManager(o ManagerOptions) (*Manager, error) {
	seen := map[string]bool{}
	for i, f := range o.Files {
		if f.CertFile == "" {
			return nil, fmt.Errorf("certificates[%d]: no certificate file", i)
		}
		if seen[f.ID] {
			return nil, fmt.Errorf("certificates[%d]: the name %q is used twice", i, f.ID)
		}
		seen[f.ID] = true
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.ReloadTimeout <= 0 {
		o.ReloadTimeout = 30 * time.Second
	}
	m := &Manager{o: o, log: o.Log, rep: report.OrDiscard(o.Reporter), store: NewStore(), selfTest: SelfTest}
	if o.Dynamic != nil {
		m.store.Fallback = o.Dynamic.GetCertificate
	}
	if o.ClientCAFile != "" {
		m.clientCAs = NewClientCAs(o.ClientCARequired)
	}
	m.verify.Store(&Verify{})
	return m, nil
}

// Load reads the trust store, every certificate and the client CA bundle,
// proves each certificate with a handshake for the names routed to it, and
// serves them. Any failure fails the load, naming the file or key, and
// nothing is served: it is the start.
func (m *Manager) Load(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, m.o.ReloadTimeout)
	defer cancel()
	m.mu.Lock()
	defer m.mu.Unlock()
	v, err := m.loadTrust()
	if err != nil {
		return err
	}
	var errs []error
	cands := make([]*Bundle, len(m.o.Files))
	for i, f := range m.o.Files {
		b, err := LoadFileContext(ctx, f.source(nil), v)
		if err != nil {
			if errors.Is(err, ErrUntrusted) && m.o.Trust.CAFile == "" {
				err = fmt.Errorf("%w; if clients trust a private CA, give its root with --trust-ca FILE (trust.ca_file in the YAML)", err)
			}
			errs = append(errs, fmt.Errorf("certificates[%d] (%s): %w", i, f.ID, err))
			continue
		}
		cands[i] = b
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Which routed names each certificate serves: a renewal that drops
	// one is refused later.
	staged := NewStore()
	for i, f := range m.o.Files {
		staged.Put(f.ID, cands[i])
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
		for i, f := range m.o.Files {
			if slices.Contains(covering, cands[i]) {
				m.routed[f.ID] = append(m.routed[f.ID], name)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i, f := range m.o.Files {
		b := cands[i]
		b.Source.Names = m.routed[f.ID]
		if err := m.selfTest(b, v); err != nil {
			return fmt.Errorf("certificates[%d] (%s): %w", i, f.ID, err)
		}
		b.Warnings = append(b.Warnings, keyWarnings(b)...)
	}
	if m.clientCAs != nil {
		if _, n, err := m.clientCAs.Reload(m.o.ClientCAFile); err != nil {
			return fmt.Errorf("%s: %w", ClientCAID, err)
		} else {
			m.log.Info("client certificate verification on", "ca_file", m.o.ClientCAFile, "cas", n, "required", m.o.ClientCARequired)
		}
	}
	for i, f := range m.o.Files {
		m.publish(f.ID, cands[i], "start")
	}
	m.warnOverlaps()
	m.verify.Store(&v)
	return nil
}

// warnOverlaps logs every name two certificates of the same key type
// cover: the later one is never served for it, which is rarely meant (an
// RSA certificate beside an ECDSA one is, and is not warned about).
func (m *Manager) warnOverlaps() {
	for _, o := range m.store.Overlaps() {
		m.log.Warn("certificate not served for a name", "certificate", o.Shadowed, "name", o.Name, "key_type", o.KeyType, "served", o.Served,
			"detail", "an earlier certificate with the same key type covers this name; remove the name from one of them, or give this one another key type")
	}
}

func (f FileCert) source(names []string) Source {
	return Source{CertFile: f.CertFile, KeyFile: f.KeyFile, Names: names}
}

func (m *Manager) loadTrust() (Verify, error) { return LoadTrust(m.o.Trust) }

// LoadTrust reads the trust store's files into a Verify, naming the YAML
// key of a file that cannot be used.
func LoadTrust(t TrustOptions) (Verify, error) {
	v := Verify{BundleDir: t.BundleDir, FetchAIA: t.FetchAIA, CacheDir: t.CacheDir, ExpiryWarning: t.ExpiryWarning}
	if t.CAFile != "" {
		pool, err := ReadPool(t.CAFile)
		if err != nil {
			return v, fmt.Errorf("%s: %w", TrustCAID, err)
		}
		v.Roots, v.RootsName = pool, t.CAFile
	}
	for _, name := range slices.Sorted(maps.Keys(t.ExtraStores)) {
		pool, err := ReadPool(t.ExtraStores[name])
		if err != nil {
			return v, fmt.Errorf("trust.extra_stores.%s: %w", name, err)
		}
		if v.ExtraStores == nil {
			v.ExtraStores = map[string]*x509.CertPool{}
		}
		v.ExtraStores[name] = pool
	}
	if t.BundleDir != "" {
		fi, err := os.Stat(t.BundleDir)
		if err != nil {
			return v, fmt.Errorf("trust.bundle_dir: %w", err)
		}
		if !fi.IsDir() {
			return v, fmt.Errorf("trust.bundle_dir: %s is not a folder", t.BundleDir)
		}
	}
	return v, nil
}

// ReadPool reads a PEM file of CA certificates, refusing anything but a
// regular file of at most MaxFileBytes.
func ReadPool(path string) (*x509.CertPool, error) {
	data, err := ReadFile(path, MaxFileBytes)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// publish serves b as id and says so.
func (m *Manager) publish(id string, b *Bundle, trigger string) {
	m.store.Put(id, b)
	if b.Diagnosis != nil {
		for _, f := range b.Diagnosis.Findings {
			if f.Severity == SeverityInfo {
				m.log.Info("certificate chain repaired", "certificate", id, "detail", f.Message)
			}
		}
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

// Reload reads the trust store, every certificate and the client CA bundle
// again, and serves what changed and passes every check. trigger says what
// asked (watch, sighup, interval, admin), for the logs and reports. With
// hold set, a certificate that looks caught mid-update (key not matching
// yet, file empty or missing) is neither logged as an error nor reported,
// and retry says to try again once the files have settled.
func (m *Manager) Reload(ctx context.Context, trigger string, hold bool) (results []Result, retry bool) {
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
	published := false
	for _, f := range m.o.Files {
		b, out, err := m.reloadOne(ctx, f, v)
		if hold && err != nil && midUpdate(err) {
			m.log.Debug("certificate files mid-update, retrying", "certificate", f.ID, "trigger", trigger, "err", err)
			retry = true
			continue
		}
		res := Result{ID: f.ID, Result: out}
		switch out {
		case Reloaded:
			m.publish(f.ID, b, trigger)
			published = true
			m.rep.Reloaded(report.Reload{ID: f.ID, Trigger: trigger})
		case Unchanged:
			m.log.Debug("certificate unchanged", "certificate", f.ID, "trigger", trigger)
		default:
			res = m.failed(f.ID, trigger, err, "certificate reload failed, previous certificate keeps serving")
		}
		if cur := m.store.Get(f.ID); cur != nil {
			res.Serial = cur.Leaf.SerialNumber.Text(16)
			na := cur.Leaf.NotAfter
			res.NotAfter = &na
		}
		results = append(results, res)
	}
	if published {
		m.warnOverlaps()
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

// failed logs and reports a refused reload of id.
func (m *Manager) failed(id, trigger string, err error, msg string) Result {
	m.log.Error(msg, "id", id, "trigger", trigger, "err", err)
	m.rep.Reloaded(report.Reload{ID: id, Trigger: trigger, Err: err})
	return Result{ID: id, Result: Failed, Error: err.Error(), err: err}
}

// reloadOne runs f through the pipeline without publishing.
func (m *Manager) reloadOne(ctx context.Context, f FileCert, v Verify) (*Bundle, Outcome, error) {
	b, err := LoadFileContext(ctx, f.source(m.routed[f.ID]), v)
	if err != nil {
		return nil, Failed, err
	}
	if cur := m.store.Get(f.ID); cur != nil && sameBundle(cur, b) {
		return cur, Unchanged, nil
	}
	if err := m.selfTest(b, v); err != nil {
		return nil, Failed, err
	}
	b.Warnings = append(b.Warnings, keyWarnings(b)...)
	return b, Reloaded, nil
}

// midUpdate reports a failure that a renewal still writing its files
// causes: it may go away once they settle.
func midUpdate(err error) bool {
	return errors.Is(err, ErrKeyMismatch) || errors.Is(err, ErrNoCertificate) || errors.Is(err, fs.ErrNotExist)
}

// TLSConfig returns the base TLS configuration of every listener: the
// served certificates by SNI, client certificate verification when on, and
// what the dynamic source adds. Listeners clone it.
func (m *Manager) TLSConfig() *tls.Config {
	cfg := &tls.Config{GetCertificate: m.store.GetCertificate}
	if m.clientCAs != nil {
		m.clientCAs.Configure(cfg)
	}
	if m.o.Dynamic != nil {
		m.o.Dynamic.WrapTLSConfig(cfg)
	}
	return cfg
}

// Served returns every certificate served now, files first in
// configuration order, then the dynamic source's.
func (m *Manager) Served() []Served {
	var out []Served
	for _, id := range m.store.IDs() {
		b := m.store.Get(id)
		if b == nil || b.Leaf == nil {
			continue
		}
		chain := b.Chain
		if len(chain) == 0 {
			chain = []*x509.Certificate{b.Leaf}
		}
		out = append(out, Served{ID: id, Source: SourceFile, Chain: chain, CertFile: b.Source.CertFile, KeyFile: keyFileOf(b.Source), LoadedAt: b.LoadedAt})
	}
	if m.o.Dynamic != nil {
		out = append(out, m.o.Dynamic.Served()...)
	}
	return out
}

// Covers reports whether a certificate is served, or may be obtained, for
// name.
func (m *Manager) Covers(name string) bool {
	if m.store.Lookup(name) != nil {
		return true
	}
	return m.o.Dynamic != nil && m.o.Dynamic.Covers(name)
}

// Files returns every file a reload reads: certificates, keys and CA
// bundles, for a file watch.
func (m *Manager) Files() []string {
	var out []string
	for _, f := range m.o.Files {
		out = append(out, f.CertFile)
		if f.KeyFile != "" {
			out = append(out, f.KeyFile)
		}
	}
	if m.o.ClientCAFile != "" {
		out = append(out, m.o.ClientCAFile)
	}
	if m.o.Trust.CAFile != "" {
		out = append(out, m.o.Trust.CAFile)
	}
	for _, f := range m.o.Trust.ExtraStores {
		out = append(out, f)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Verify returns what certificates are checked against now.
func (m *Manager) Verify() Verify { return *m.verify.Load() }

// Store returns the store serving the file certificates.
func (m *Manager) Store() *Store { return m.store }
