package limits

import (
	"sync/atomic"
	"time"
)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	base time.Time
	off  atomic.Int64
}

func newFakeClock() *fakeClock { return &fakeClock{base: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time { return c.base.Add(time.Duration(c.off.Load())) }

func (c *fakeClock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// Sleep makes fakeClock a ratelimit.Clock whose sleeps pass at once,
// moving the clock on.
func (c *fakeClock) Sleep(d time.Duration) { c.Advance(d) }

// gateClock is a ratelimit.Clock whose sleeps block until the test lets
// them go, so that callers can be held in the waiting room.
type gateClock struct {
	*fakeClock
	sleeping chan time.Duration
	release  chan struct{}
}

func (c *gateClock) Sleep(d time.Duration) {
	c.sleeping <- d
	<-c.release
	c.Advance(d)
}
