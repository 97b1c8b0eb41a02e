package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/caddyserver/certmagic"

	"github.com/tlsfront/tlsfront/certs/redisstore"
	"github.com/tlsfront/tlsfront/certs/tickets"
	"github.com/tlsfront/tlsfront/internal/supervise"
)

// buildFleet opens the shared storage (no I/O until it runs) and the
// session ticket keys.
func (a *app) buildFleet() error {
	if a.cfg.Redis.Enabled() {
		st, err := a.cfg.Redis.Open(a.log.With("component", "redis"))
		if err != nil {
			return fmt.Errorf("redis.%w", err)
		}
		a.redis = st
		a.components = append(a.components, supervise.Component{Name: "redis health", Run: a.watchRedis})
	}
	if !a.cfg.SessionTickets.Enabled() {
		return nil
	}
	src, err := a.cfg.SessionTickets.NewSource(a.storage())
	if err != nil {
		return fmt.Errorf("session_tickets.%w", err)
	}
	m, err := tickets.New(tickets.Options{Source: src, MaxAge: a.cfg.SessionTickets.MaxAge, Log: a.log.With("component", "tickets")})
	if err != nil {
		return fmt.Errorf("session_tickets: %w", err)
	}
	a.tickets = m
	a.components = append(a.components, supervise.Component{Name: "session tickets", Run: m.Run})
	return nil
}

// storage is where ACME state (and shared ticket keys) live: the fleet's
// Redis, else the ACME folder in the state folder.
func (a *app) storage() certmagic.Storage {
	if a.redis != nil {
		return a.redis
	}
	return &certmagic.FileStorage{Path: filepath.Clean(a.cfg.ACME.StorageDir(a.cfg.StateDir))}
}

// watchRedis checks the shared storage until ctx ends; when Redis
// returns, ACME is asked to manage its names again, since certmagic gives
// up on a name it could not load.
func (a *app) watchRedis(ctx context.Context) error {
	o := redisstore.WatchOptions{Every: a.redisCheck, Reporter: a.rep}
	if a.acme != nil && len(a.cfg.ACME.Names) > 0 {
		o.OnReturn = func(ctx context.Context) {
			if err := a.acme.Manage(ctx, a.cfg.ACME.Names); err != nil && !errors.Is(err, context.Canceled) {
				a.log.Error("acme names not managed again after redis returned", "err", err)
			}
		}
	}
	return a.redis.Watch(ctx, o)
}
