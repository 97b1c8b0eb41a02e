package monitor

import (
	"fmt"
	"sort"
	"time"
)

// BackendState is one backend's shield state as the limiter reports it
// (limits.BackendStats, passed through by the wiring).
type BackendState struct {
	// Backend is the backend's name as the proxy reports it to
	// BackendDial (its address); "" is the limiter's default backend.
	Backend string `json:"backend"`
	// Breaker is the circuit breaker's state: "closed" (healthy), "open"
	// or "half_open".
	Breaker string `json:"breaker"`
	// Waiting is how many callers wait for the backend's pace.
	Waiting int64 `json:"waiting"`
}

// BackendStatus is one backend, as /status shows it.
type BackendStatus struct {
	Backend string `json:"backend"`
	// Up is false while the breaker is not closed or the last dial
	// failed.
	Up      bool   `json:"up"`
	Breaker string `json:"breaker"`
	Waiting int64  `json:"waiting"`
	// Dials and DialErrors count connection attempts since start;
	// Resets counts connections the backend ended before its first byte.
	Dials        uint64    `json:"dials"`
	DialErrors   uint64    `json:"dial_errors"`
	Resets       uint64    `json:"resets"`
	LastError    string    `json:"last_error,omitempty"`
	LastErrorAt  time.Time `json:"last_error_at,omitzero"`
	LastDialOK   bool      `json:"last_dial_ok"`
	LastDialAt   time.Time `json:"last_dial_at,omitzero"`
	BreakerSince time.Time `json:"breaker_since,omitzero"`
}

// backendDials is what BackendDial and BackendReset saw of one backend.
type backendDials struct {
	dials, errors, resets uint64
	lastOK                bool
	lastAt, lastErrAt     time.Time
	lastErr               string
}

// maxBackends bounds the backends tracked, like the limiter's 256.
const maxBackends = 256

// unsyncedBackend returns the tracking entry for backend, or nil past the
// cap. The caller holds m.mu.
func (m *Monitor) unsyncedBackend(backend string) *backendDials {
	d := m.dials[backend]
	if d == nil && len(m.dials) < maxBackends {
		d = &backendDials{}
		m.dials[backend] = d
	}
	return d
}

// BackendReset records a backend connection that the backend closed or
// reset before sending its first byte back: a broker that accepts and
// then drops connections (overloaded, or refusing clients at the
// protocol level).
func (m *Monitor) BackendReset(listener, backend string, err error) {
	m.met.resets.WithLabelValues(listener, backend).Inc()
	now := m.now()
	m.mu.Lock()
	if d := m.unsyncedBackend(backend); d != nil {
		d.resets++
		d.lastOK, d.lastAt = false, now
		d.lastErr, d.lastErrAt = err.Error(), now
	}
	m.mu.Unlock()
}

// backends merges the limiter's view (Options.Backends) with the dials
// seen, sorted by name.
func (m *Monitor) backends() []BackendStatus {
	var states []BackendState
	if m.o.Backends != nil {
		states = m.o.Backends()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	byName := map[string]*BackendStatus{}
	get := func(name string) *BackendStatus {
		b := byName[name]
		if b == nil {
			b = &BackendStatus{Backend: name, Breaker: "closed", LastDialOK: true}
			byName[name] = b
		}
		return b
	}
	for _, s := range states {
		b := get(s.Backend)
		b.Breaker, b.Waiting = s.Breaker, s.Waiting
		if b.Breaker == "" {
			b.Breaker = "closed"
		}
		if t, ok := m.breakerSince[s.Backend]; ok {
			b.BreakerSince = t
		}
	}
	for name, d := range m.dials {
		b := get(name)
		b.Dials, b.DialErrors, b.Resets = d.dials, d.errors, d.resets
		b.LastDialOK, b.LastDialAt, b.LastError, b.LastErrorAt = d.lastOK, d.lastAt, d.lastErr, d.lastErrAt
	}
	out := make([]BackendStatus, 0, len(byName))
	for _, b := range byName {
		if b.Backend == "" && b.Dials == 0 && b.Waiting == 0 && b.Breaker == "closed" {
			// The limiter's unnamed shield, shared only past its
			// 256 named backends: not a backend until something uses it.
			continue
		}
		b.Up = b.Breaker == "closed" && b.LastDialOK
		out = append(out, *b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Backend < out[j].Backend })
	return out
}

// evaluateBackends logs breaker state changes and raises one alert
// listing the backends whose breaker is not closed.
func (m *Monitor) evaluateBackends(now time.Time) {
	if m.o.Backends == nil {
		return
	}
	states := m.o.Backends()
	type change struct{ backend, from, to string }
	var changes []change
	var open []string
	m.mu.Lock()
	seen := map[string]bool{}
	for _, s := range states {
		st := s.Breaker
		if st == "" {
			st = "closed"
		}
		seen[s.Backend] = true
		prev, ok := m.breakers[s.Backend]
		if !ok {
			prev = "closed"
		}
		if prev != st && (ok || len(m.breakers) < maxBackends) {
			changes = append(changes, change{s.Backend, prev, st})
			m.breakers[s.Backend] = st
			m.breakerSince[s.Backend] = now
		}
		if st != "closed" {
			open = append(open, backendName(s.Backend))
		}
	}
	for name := range m.breakers {
		if !seen[name] {
			delete(m.breakers, name)
			delete(m.breakerSince, name)
		}
	}
	m.mu.Unlock()

	for _, c := range changes {
		switch {
		case c.from == "closed":
			m.log.Warn("backend breaker opened", "backend", backendName(c.backend), "state", c.to,
				"detail", "new clients of this backend are refused until it answers again")
		case c.to == "closed":
			m.log.Info("backend breaker closed", "backend", backendName(c.backend), "was", c.from)
		default:
			m.log.Info("backend breaker changed", "backend", backendName(c.backend), "state", c.to, "was", c.from)
		}
	}
	const key = "backend/breaker_open"
	if len(open) == 0 {
		m.alerts.resolve(key)
		return
	}
	sort.Strings(open)
	m.alerts.raise(Alert{Key: key, Severity: "critical",
		Summary: fmt.Sprintf("circuit breaker open for %d backend(s): %s; their new clients are refused; check the broker, not tlsfront",
			len(open), listNames(open, summaryNames))})
}

// backendName shows the limiter's unnamed backend as "default".
func backendName(s string) string {
	if s == "" {
		return "default"
	}
	return s
}
