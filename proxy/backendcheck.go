package proxy

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// BackendCheck tells whether the listeners' default backends can be
// reached, for a readiness check. It dials at most once every few seconds
// whatever the probe rate, so readiness checks cannot load the broker. It
// is safe for concurrent use.
type BackendCheck struct {
	// Listeners are validated listener configurations; those whose kind
	// has no backend are skipped.
	Listeners []ListenerConfig

	mu  sync.Mutex
	at  time.Time
	err error
}

// backendCheckEvery is how long a check's result stands.
const backendCheckEvery = 5 * time.Second

// Reachable dials each default backend, or returns the last result if it
// is recent, and names every listener whose backend did not answer.
func (c *BackendCheck) Reachable() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) < backendCheckEvery {
		return c.err
	}
	var errs []error
	for _, l := range c.Listeners {
		if !l.Spec().Backend {
			continue
		}
		be, err := ParseBackend(l.Backend)
		if err != nil {
			continue
		}
		conn, err := net.DialTimeout(be.Network, be.Address, 2*time.Second)
		if err != nil {
			errs = append(errs, fmt.Errorf("listener %s: backend %s unreachable: %w", l.Name, be, err))
			continue
		}
		conn.Close()
	}
	c.at, c.err = time.Now(), errors.Join(errs...)
	return c.err
}
