package supervise

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// Component is one part that runs while the program serves.
type Component struct {
	// Name prefixes the component's error.
	Name string
	// Run returns when ctx ends, or early with an error, which Group
	// reports as a failure.
	Run func(ctx context.Context) error
	// Stop, when set, ends Run gracefully before its ctx is cancelled,
	// e.g. a listener's drain; it returns when ctx ends at the latest.
	Stop func(ctx context.Context) error
}

// Group is a set of running components; Start makes one.
type Group struct {
	comps    []Component
	cancels  []context.CancelFunc
	dones    []chan struct{}
	errc     chan error
	stopping atomic.Bool
}

// Start runs every component in its own goroutine, with a context of its
// own that Stop cancels. It does not wait for any to be ready.
func Start(comps []Component) *Group {
	g := &Group{
		comps:   comps,
		cancels: make([]context.CancelFunc, len(comps)),
		dones:   make([]chan struct{}, len(comps)),
		// One slot each, so no component ever blocks on reporting.
		errc: make(chan error, len(comps)),
	}
	for i, c := range comps {
		ctx, cancel := context.WithCancel(context.Background())
		g.cancels[i], g.dones[i] = cancel, make(chan struct{})
		go func() {
			defer close(g.dones[i])
			// Once stopping, a component returning an error (a server's
			// "closed") is the stop working, not a failure.
			if err := c.Run(ctx); err != nil && !g.stopping.Load() {
				g.errc <- fmt.Errorf("%s: %w", c.Name, err)
			}
		}()
	}
	return g
}

// Failed delivers the errors of components that failed before Stop, the
// first failure first.
func (g *Group) Failed() <-chan error { return g.errc }

// Stop ends the group: it calls every component's Stop at once, so that
// they drain together rather than one grace period after another, and
// waits for them or for ctx; then it cancels each component's context in
// reverse order of start and waits for its Run to return. Call it once.
func (g *Group) Stop(ctx context.Context) {
	g.stopping.Store(true)
	var wg sync.WaitGroup
	for _, c := range g.comps {
		if c.Stop != nil {
			wg.Go(func() { c.Stop(ctx) })
		}
	}
	wg.Wait()
	for i := len(g.comps) - 1; i >= 0; i-- {
		g.cancels[i]()
		<-g.dones[i]
	}
}
