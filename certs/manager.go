package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
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
	// Entry names where it is configured, in errors: default
	// "certificates[i]", i its place in ManagerOptions.Files.
	Entry string
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
	// Files are the certificates listed one by one. Each must load at
	// the start.
	Files []FileCert
	// Folders are folders of pairs, listed again on every reload. At the
	// start a pair that fails is logged, reported and skipped, and the
	// others serve; only a folder that cannot be read fails the start.
	Folders []FolderSource
	Trust   TrustOptions
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
	// selfTest proves a candidate; tests replace it to count calls.
	selfTest func(*Bundle, Verify) error
	prover   keyProver

	mu sync.Mutex // serialises loads; guards what follows
	// routed maps a certificate ID to the routed names it serves.
	routed map[string][]string
	// pairs are the certificates read, by ID: listed ones, and those
	// found in folders at the last scan.
	pairs map[string]*pair
	// trust fingerprints what the pairs were last checked against.
	trust trustPrint
	// dups are the folder pairs already said to clash with another ID.
	dups map[string]bool
	// cas are the CA certificates of checked chains, by DER, shared
	// between bundles.
	casMu sync.Mutex
	cas   map[string]*x509.Certificate
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
	for i, f := range o.Folders {
		if err := f.Validate(); err != nil {
			return nil, fmt.Errorf("folder %s: %w", f.Dir, err)
		}
		for _, g := range o.Folders[:i] {
			if filepath.Clean(g.Dir) == filepath.Clean(f.Dir) && g.Cert == f.Cert && g.Prefix == f.Prefix {
				return nil, fmt.Errorf("folder %s: listed twice", f.Dir)
			}
		}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.ReloadTimeout <= 0 {
		o.ReloadTimeout = 30 * time.Second
	}
	m := &Manager{o: o, log: o.Log, rep: report.OrDiscard(o.Reporter), store: NewStore(), pairs: map[string]*pair{}, dups: map[string]bool{}}
	m.selfTest = m.prover.selfTest
	if o.Dynamic != nil {
		m.store.Fallback = o.Dynamic.GetCertificate
	}
	if o.ClientCAFile != "" {
		m.clientCAs = NewClientCAs(o.ClientCARequired)
	}
	m.verify.Store(&Verify{})
	return m, nil
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

// Files returns every file a reload reads, for a file watch: listed
// certificates and keys, and CA bundles. The pairs of folders are not
// among them: see Folders.
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

// Folders returns the certificate folders, for a file watch: a change in
// one or in its subfolders calls for a reload, which works out what
// changed.
func (m *Manager) Folders() []string {
	var out []string
	for _, f := range m.o.Folders {
		out = append(out, f.Dir)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Verify returns what certificates are checked against now.
func (m *Manager) Verify() Verify { return *m.verify.Load() }

// Store returns the store serving the file certificates.
func (m *Manager) Store() *Store { return m.store }
