package certs

import (
	"crypto/tls"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
)

// Store serves certificates by SNI. Lookups are lock-free; Put replaces one
// bundle by publishing a new table with a single atomic store, so a
// handshake sees either the old certificate or the new one, never a mix.
//
// Store is safe for concurrent use.
type Store struct {
	mu  sync.Mutex // serialises writers; readers never take it
	cur atomic.Pointer[table]
	// Fallback, when set, is asked for names no bundle covers (ACME-managed
	// names). It is set once before serving.
	Fallback func(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

// table is immutable once published.
type table struct {
	order    []string // bundle IDs in configuration order; the first is the default
	bundles  map[string]*Bundle
	exact    map[string]*Bundle
	wildcard map[string]*Bundle // "example.com" for *.example.com
}

// ErrUnknownName is returned by GetCertificate when the store has no
// certificate for the asked name and no default.
var ErrUnknownName = errors.New("no certificate for server name")

// NewStore returns an empty store.
func NewStore() *Store {
	s := &Store{}
	s.cur.Store(&table{bundles: map[string]*Bundle{}, exact: map[string]*Bundle{}, wildcard: map[string]*Bundle{}})
	return s
}

// Put adds or replaces the bundle with the given ID. Open connections keep
// the certificate they negotiated; new handshakes get b at once.
func (s *Store) Put(id string, b *Bundle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cur.Load()
	next := &table{bundles: make(map[string]*Bundle, len(old.bundles)+1)}
	next.order = append(next.order, old.order...)
	for k, v := range old.bundles {
		next.bundles[k] = v
	}
	if _, ok := old.bundles[id]; !ok {
		next.order = append(next.order, id)
	}
	next.bundles[id] = b
	next.index()
	s.cur.Store(next)
}

// index builds the name maps. Earlier bundles win a name both cover.
func (t *table) index() {
	t.exact = map[string]*Bundle{}
	t.wildcard = map[string]*Bundle{}
	for i := len(t.order) - 1; i >= 0; i-- {
		b := t.bundles[t.order[i]]
		for _, n := range b.Leaf.DNSNames {
			n = strings.ToLower(n)
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				t.wildcard[rest] = b
			} else {
				t.exact[n] = b
			}
		}
		for _, ip := range b.Leaf.IPAddresses {
			t.exact[ip.String()] = b
		}
	}
}

// Get returns the bundle with the given ID, or nil.
func (s *Store) Get(id string) *Bundle { return s.cur.Load().bundles[id] }

// IDs returns the bundle IDs in configuration order.
func (s *Store) IDs() []string { return append([]string(nil), s.cur.Load().order...) }

// Lookup returns the bundle serving name, exact match first, then a
// wildcard one label deep, else nil.
func (s *Store) Lookup(name string) *Bundle {
	t := s.cur.Load()
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if b, ok := t.exact[name]; ok {
		return b
	}
	if _, parent, ok := strings.Cut(name, "."); ok {
		if b, ok := t.wildcard[parent]; ok {
			return b
		}
	}
	return nil
}

// GetCertificate is for tls.Config.GetCertificate. A client that sends no
// SNI, or one no certificate covers, gets the default (first) certificate
// so that it can at least report a clear name mismatch.
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if b := s.Lookup(hello.ServerName); b != nil {
		return b.Cert, nil
	}
	if s.Fallback != nil && hello.ServerName != "" {
		if c, err := s.Fallback(hello); err == nil && c != nil {
			return c, nil
		}
	}
	t := s.cur.Load()
	if len(t.order) == 0 {
		return nil, ErrUnknownName
	}
	return t.bundles[t.order[0]].Cert, nil
}
