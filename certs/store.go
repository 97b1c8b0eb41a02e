package certs

import (
	"cmp"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Store serves certificates by SNI. Lookups are lock-free; Put and Update
// publish a new table with a single atomic store, so a handshake sees
// either the old certificates or the new ones, never a mix. Each write
// rebuilds the name index, O(certificates): publish many changes with one
// Update, not one Put each.
//
// Several certificates may cover one name, typically an ECDSA one and an
// RSA one for old clients. Each handshake gets the first the client can
// use, ECDSA before Ed25519 before RSA, configuration order among those
// of one key type (see GetCertificate).
//
// Store is safe for concurrent use.
type Store struct {
	mu  sync.Mutex // serialises writers; readers never take it
	cur atomic.Pointer[table]
	// Fallback, when set, is asked for names no bundle covers (ACME-managed
	// names). It is set once before serving.
	Fallback func(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

// table is immutable once published. Every candidate list is sorted by
// key type preference (keyRank), then configuration order.
type table struct {
	order    []string // bundle IDs in configuration order; the first is the default
	bundles  map[string]*Bundle
	ids      map[*Bundle]string
	exact    map[string][]*Bundle
	wildcard map[string][]*Bundle // "example.com" for *.example.com
	// def serves clients without SNI or with a name nothing covers: the
	// first bundle and those of other key types covering its first name.
	def []*Bundle
}

// ErrUnknownName is returned by GetCertificate when the store has no
// certificate for the asked name and no default.
var ErrUnknownName = errors.New("no certificate for server name")

// NewStore returns an empty store.
func NewStore() *Store {
	s := &Store{}
	s.cur.Store(&table{bundles: map[string]*Bundle{}, ids: map[*Bundle]string{}, exact: map[string][]*Bundle{}, wildcard: map[string][]*Bundle{}})
	return s
}

// Put adds or replaces the bundle with the given ID. Open connections keep
// the certificate they negotiated; new handshakes get b at once.
func (s *Store) Put(id string, b *Bundle) { s.Update([]Entry{{ID: id, Bundle: b}}, nil) }

// Entry is one bundle and the ID it is served as.
type Entry struct {
	ID     string
	Bundle *Bundle
}

// Update adds or replaces every bundle in put and removes the IDs in
// remove, then publishes the result with a single atomic store: the name
// index is rebuilt once whatever the number of changes, so publishing a
// thousand renewals costs what publishing one does. New IDs go last, in
// the order given. Removing an ID that is not there does nothing.
func (s *Store) Update(put []Entry, remove []string) {
	if len(put) == 0 && len(remove) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cur.Load()
	next := &table{bundles: make(map[string]*Bundle, len(old.bundles)+len(put))}
	for k, v := range old.bundles {
		next.bundles[k] = v
	}
	gone := make(map[string]bool, len(remove))
	for _, id := range remove {
		if _, ok := next.bundles[id]; ok {
			gone[id] = true
			delete(next.bundles, id)
		}
	}
	next.order = make([]string, 0, len(old.order)+len(put))
	for _, id := range old.order {
		if !gone[id] {
			next.order = append(next.order, id)
		}
	}
	for _, e := range put {
		if _, ok := next.bundles[e.ID]; !ok {
			next.order = append(next.order, e.ID)
		}
		next.bundles[e.ID] = e.Bundle
	}
	next.index()
	s.cur.Store(next)
}

// Delete stops serving the bundles with the given IDs.
func (s *Store) Delete(ids ...string) { s.Update(nil, ids) }

// Key types in order of preference: ECDSA is small and fast and every
// current client takes it; RSA is for those that do not.
const (
	rankECDSA = iota
	rankEd25519
	rankRSA
	rankOther
)

// keyRank orders a certificate by its key type.
func keyRank(c *tls.Certificate) int {
	s, ok := c.PrivateKey.(crypto.Signer)
	if !ok {
		return rankOther
	}
	switch s.Public().(type) {
	case *ecdsa.PublicKey:
		return rankECDSA
	case ed25519.PublicKey:
		return rankEd25519
	case *rsa.PublicKey:
		return rankRSA
	}
	return rankOther
}

func rankName(r int) string {
	return [...]string{"ECDSA", "Ed25519", "RSA", "other"}[r]
}

// sanKeys returns the lower-case SANs of b: DNS names (wildcards as
// "*.parent") and IP addresses.
func sanKeys(b *Bundle) []string {
	var out []string
	for _, n := range b.Leaf.DNSNames {
		out = append(out, strings.ToLower(n))
	}
	for _, ip := range b.Leaf.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

// index builds the name maps. Within a key type, earlier bundles win a
// name both cover.
func (t *table) index() {
	t.ids = make(map[*Bundle]string, len(t.order))
	t.exact = map[string][]*Bundle{}
	t.wildcard = map[string][]*Bundle{}
	pos := make(map[*Bundle]int, len(t.order))
	add := func(m map[string][]*Bundle, k string, b *Bundle) {
		if l := m[k]; len(l) == 0 || l[len(l)-1] != b {
			m[k] = append(l, b)
		}
	}
	for i, id := range t.order {
		b := t.bundles[id]
		t.ids[b], pos[b] = id, i
		for _, n := range sanKeys(b) {
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				add(t.wildcard, rest, b)
			} else {
				add(t.exact, n, b)
			}
		}
	}
	byPreference := func(a, b *Bundle) int {
		return cmp.Or(cmp.Compare(keyRank(a.Cert), keyRank(b.Cert)), cmp.Compare(pos[a], pos[b]))
	}
	for _, m := range []map[string][]*Bundle{t.exact, t.wildcard} {
		for _, l := range m {
			slices.SortStableFunc(l, byPreference)
		}
	}
	t.def = nil
	if len(t.order) > 0 {
		first := t.bundles[t.order[0]]
		t.def = []*Bundle{first}
		if ns := sanKeys(first); len(ns) > 0 {
			m, k := t.exact, ns[0]
			if rest, ok := strings.CutPrefix(k, "*."); ok {
				m, k = t.wildcard, rest
			}
			for _, b := range m[k] {
				if b != first && keyRank(b.Cert) != keyRank(first.Cert) {
					t.def = append(t.def, b)
				}
			}
			slices.SortStableFunc(t.def, byPreference)
		}
	}
}

// Get returns the bundle with the given ID, or nil.
func (s *Store) Get(id string) *Bundle { return s.cur.Load().bundles[id] }

// IDs returns the bundle IDs in configuration order.
func (s *Store) IDs() []string { return append([]string(nil), s.cur.Load().order...) }

// normalName is how names are keyed: lower case, without the trailing dot
// of a fully qualified name.
func normalName(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

// candidates returns the bundles covering name: exact matches, then
// wildcards one label deep, each in order of preference.
func (t *table) candidates(name string) (exact, wild []*Bundle) {
	exact = t.exact[name]
	if _, parent, ok := strings.Cut(name, "."); ok {
		wild = t.wildcard[parent]
	}
	return exact, wild
}

// Lookup returns the preferred bundle serving name, exact match first,
// then a wildcard one label deep, else nil.
func (s *Store) Lookup(name string) *Bundle {
	exact, wild := s.cur.Load().candidates(normalName(name))
	if len(exact) > 0 {
		return exact[0]
	}
	if len(wild) > 0 {
		return wild[0]
	}
	return nil
}

// LookupAll returns every bundle covering name, in the order
// GetCertificate tries them.
func (s *Store) LookupAll(name string) []*Bundle {
	exact, wild := s.cur.Load().candidates(normalName(name))
	return slices.Concat(exact, wild)
}

// GetCertificate is for tls.Config.GetCertificate. Of the certificates
// covering the asked name it returns the first the client supports
// (tls.ClientHelloInfo.SupportsCertificate: signature schemes, and in TLS
// 1.2 cipher suites and curves), exact names before wildcards; when the
// client supports none, the first, so that it fails as clearly as it can.
// A client that sends no SNI, or one no certificate covers, gets the
// default: the first certificate, or another covering its first name that
// the client supports better, so that it can at least report a clear name
// mismatch.
//
// With one certificate for the name, nothing is checked and nothing is
// allocated.
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	t := s.cur.Load()
	exact, wild := t.candidates(normalName(hello.ServerName))
	if len(exact)+len(wild) > 0 {
		return pickFor(hello, exact, wild).Cert, nil
	}
	if s.Fallback != nil && hello.ServerName != "" {
		if c, err := s.Fallback(hello); err == nil && c != nil {
			return c, nil
		}
	}
	if len(t.def) == 0 {
		return nil, ErrUnknownName
	}
	return pickFor(hello, t.def, nil).Cert, nil
}

// pickFor returns the first bundle of lists the client supports, or the
// first of all. lists must not all be empty.
func pickFor(hello *tls.ClientHelloInfo, lists ...[]*Bundle) *Bundle {
	var first *Bundle
	n := 0
	for _, l := range lists {
		if first == nil && len(l) > 0 {
			first = l[0]
		}
		n += len(l)
	}
	if n == 1 {
		return first
	}
	// The name was matched against the SANs already; without it
	// SupportsCertificate checks only what the key can negotiate, and
	// skips a costly hostname verification per candidate.
	h := *hello
	h.ServerName = ""
	for _, l := range lists {
		for _, b := range l {
			if h.SupportsCertificate(b.Cert) == nil {
				return b
			}
		}
	}
	return first
}

// Overlap is a certificate never served for a name because another of the
// same key type, earlier in the configuration, covers it too.
type Overlap struct {
	// Name is the SAN both cover, e.g. "broker.example.com" or
	// "*.example.com".
	Name string
	// KeyType is ECDSA, Ed25519, RSA or other.
	KeyType string
	// Served is the ID of the certificate served for Name; Shadowed the
	// one that is not.
	Served, Shadowed string
}

// Overlaps lists every name two certificates of the same key type cover,
// sorted by name: one of them is never served for it. One ECDSA and one
// RSA certificate for a name is not an overlap.
func (s *Store) Overlaps() []Overlap {
	t := s.cur.Load()
	var out []Overlap
	scan := func(m map[string][]*Bundle, prefix string) {
		for name, l := range m {
			for i := 1; i < len(l); i++ {
				// Sorted by rank: the served one of a key type comes
				// first among its kind.
				if r := keyRank(l[i].Cert); r == keyRank(l[i-1].Cert) {
					served := l[i-1]
					for j := i - 1; j > 0 && keyRank(l[j-1].Cert) == r; j-- {
						served = l[j-1]
					}
					out = append(out, Overlap{Name: prefix + name, KeyType: rankName(r), Served: t.ids[served], Shadowed: t.ids[l[i]]})
				}
			}
		}
	}
	scan(t.exact, "")
	scan(t.wildcard, "*.")
	slices.SortFunc(out, func(a, b Overlap) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.Shadowed, b.Shadowed))
	})
	return out
}
