package tickets

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Key is one session ticket key, as tls.Config.SetSessionTicketKeys takes.
type Key = [32]byte

// Source gives the ticket keys in force at a moment.
type Source interface {
	// Keys returns the keys for now, the encrypting key first, and when
	// they should next be asked for. It must not return an empty list
	// without an error.
	Keys(ctx context.Context, now time.Time) (keys []Key, next time.Time, err error)
}

// Options configure a Manager.
type Options struct {
	// Source gives the keys; required.
	Source Source
	// MaxAge, when positive, refuses tickets issued longer ago than this
	// (see the package documentation). Zero leaves the bound to key
	// rotation.
	MaxAge time.Duration
	// RetryAfter is how long Run waits after a failed refresh before the
	// next try; zero means 10 seconds, and Run waits at least a second
	// between tries. The keys in force stay meanwhile.
	RetryAfter time.Duration
	// Now is the clock; nil means time.Now. Tests move it.
	Now func() time.Time
	// Log receives refresh failures from Run; nil discards them.
	Log *slog.Logger
}

// Manager puts shared session ticket keys on TLS configs and keeps them
// current. Apply, Refresh and Run are safe for concurrent use.
type Manager struct {
	src    Source
	maxAge time.Duration
	retry  time.Duration
	now    func() time.Time
	log    *slog.Logger

	mu      sync.Mutex
	configs []*tls.Config
	keys    []Key // the last keys fetched; nil before the first Refresh
}

// New checks o and returns a Manager. It fetches no keys: call Refresh
// (or Run) before serving, or configs use Go's own per-process keys until
// then.
func New(o Options) (*Manager, error) {
	if o.Source == nil {
		return nil, errors.New("tickets: a key source is required")
	}
	if o.MaxAge < 0 {
		return nil, errors.New("tickets: max_age must not be negative")
	}
	m := &Manager{src: o.Source, maxAge: o.MaxAge, retry: o.RetryAfter, now: o.Now, log: o.Log}
	if m.retry <= 0 {
		m.retry = 10 * time.Second
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	return m, nil
}

// Apply makes cfg use the shared keys, now and after every refresh. It
// installs cfg.WrapSession and cfg.UnwrapSession (which must not be set
// already): they encrypt and decrypt tickets with cfg's keys, stamp each
// ticket with its issue time and, with MaxAge, refuse older ones. Since
// the hooks carry over to clones, a clone of cfg made later (say by a
// GetConfigForClient) also follows refreshes; a config not cloned from
// an applied one needs its own Apply.
func (m *Manager) Apply(cfg *tls.Config) error {
	if cfg.WrapSession != nil || cfg.UnwrapSession != nil {
		return errors.New("tickets: config already has session hooks")
	}
	// Stamped even without MaxAge, so that turning it on later does not
	// refuse every ticket already out.
	cfg.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		ss.Extra = stamp(ss.Extra, m.now())
		return cfg.EncryptTicket(cs, ss)
	}
	cfg.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := cfg.DecryptTicket(identity, cs)
		if err != nil || ss == nil || m.maxAge == 0 {
			return ss, err
		}
		issued, ok := stamped(ss.Extra)
		if !ok {
			// Made by something other than a Manager: its age is
			// unknown, so refuse it.
			return nil, nil
		}
		if age := m.now().Sub(issued); age > m.maxAge || age < -time.Minute {
			// nil, nil: a full handshake, not an error.
			return nil, nil
		}
		return ss, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.configs = append(m.configs, cfg)
	if m.keys != nil {
		cfg.SetSessionTicketKeys(m.keys)
	}
	return nil
}

// Refresh fetches the keys from the Source and sets them on every
// applied config. It returns when the Source wants to be asked next. On
// error the configs keep their keys.
func (m *Manager) Refresh(ctx context.Context) (next time.Time, err error) {
	keys, next, err := m.src.Keys(ctx, m.now())
	if err != nil {
		return time.Time{}, fmt.Errorf("tickets: refresh keys: %w", err)
	}
	if len(keys) == 0 {
		return time.Time{}, errors.New("tickets: refresh keys: the source returned none")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys = keys
	for _, c := range m.configs {
		c.SetSessionTicketKeys(keys)
	}
	return next, nil
}

// Run refreshes the keys at once and then whenever the Source says the
// next ones are due, until ctx is done; it returns nil then. A failed
// refresh (Redis down, say) is logged and tried again after RetryAfter,
// the keys in force staying meanwhile; before the first success the
// configs use Go's own per-process keys, so handshakes never wait for
// the Source. Call Refresh first instead to refuse to start without
// shared keys.
func (m *Manager) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		next, err := m.Refresh(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			m.log.Warn("ticket key refresh failed", "err", err, "retry_in", m.retry)
			next = m.now().Add(m.retry)
		}
		// A Source that says "now" (a clock that jumped) must not
		// make this spin.
		timer.Reset(max(next.Sub(m.now()), time.Second))
	}
}

// stampTag starts our entry in SessionState.Extra; other entries (from
// other code) are left alone.
const stampTag = "tlsfront-issued:"

// stamp returns extra with our issue time set to t, replacing any.
func stamp(extra [][]byte, t time.Time) [][]byte {
	out := make([][]byte, 0, len(extra)+1)
	for _, e := range extra {
		if len(e) != len(stampTag)+8 || string(e[:len(stampTag)]) != stampTag {
			out = append(out, e)
		}
	}
	e := binary.BigEndian.AppendUint64([]byte(stampTag), uint64(t.Unix()))
	return append(out, e)
}

// stamped returns the issue time in extra, if any.
func stamped(extra [][]byte) (time.Time, bool) {
	for _, e := range extra {
		if len(e) == len(stampTag)+8 && string(e[:len(stampTag)]) == stampTag {
			return time.Unix(int64(binary.BigEndian.Uint64(e[len(stampTag):])), 0), true
		}
	}
	return time.Time{}, false
}
