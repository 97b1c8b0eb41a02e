package redisstore

import (
	"context"
	"log/slog"
	"time"

	"github.com/tlsfront/tlsfront/report"
)

// DefaultWatchEvery is how often Watch pings by default, so that an
// outage is alerted within a probe-like interval and what depends on
// Redis catches up soon after it returns.
const DefaultWatchEvery = 10 * time.Second

// WatchOptions configure Watch.
type WatchOptions struct {
	// Every is how often Redis is pinged; zero means DefaultWatchEvery.
	Every time.Duration
	// Reporter receives the redis dependency's state after every ping;
	// nil drops it.
	Reporter report.Sink
	// OnReturn, when set, runs when Redis answers again after an outage,
	// e.g. to have ACME manage again names certmagic gave up on.
	OnReturn func(ctx context.Context)
}

// Watch pings Redis until ctx ends, then closes s. An outage is logged
// and reported once, and its end once, while the caller goes on serving
// what it has in memory. It returns nil: an unreachable Redis never
// stops its owner.
func (s *Storage) Watch(ctx context.Context, o WatchOptions) error {
	every := o.Every
	if every <= 0 {
		every = DefaultWatchEvery
	}
	log := s.log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rep := report.OrDiscard(o.Reporter)
	t := time.NewTicker(every)
	defer t.Stop()
	defer s.Close()
	up := true
	for {
		pctx, cancel := context.WithTimeout(ctx, every/2)
		err := s.Ping(pctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && up:
			up = false
			log.Error("redis unreachable; serving what is in memory", "err", err)
			rep.Dependency(report.Dependency{Name: "redis", Err: err})
		case err == nil && !up:
			up = true
			log.Info("redis reachable again")
			rep.Dependency(report.Dependency{Name: "redis"})
			if o.OnReturn != nil {
				o.OnReturn(ctx)
			}
		case err == nil && up:
			rep.Dependency(report.Dependency{Name: "redis"})
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
