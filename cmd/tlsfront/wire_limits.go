package main

import (
	"fmt"

	"github.com/tlsfront/tlsfront/limits"
)

// setupLimits builds the limiter every listener shares and, when limits
// are on, adds its sweeper (which frees idle clients' state) to the tasks.
// With limits off a.limiter stays nil, which admits everything.
func (a *app) setupLimits() error {
	c := a.cfg.Limits
	if !c.Enabled {
		a.log.Info("limits off")
		return nil
	}
	l, err := limits.New(c.limiterConfig())
	if err != nil {
		return fmt.Errorf("limits: %w", err)
	}
	a.limiter = l
	a.tasks = append(a.tasks, l.Run)
	eff := l.Config()
	a.log.Info("limits on",
		"client_rate", eff.ClientRate, "client_burst", eff.ClientBurst, "client_max_conns", eff.ClientMaxConns,
		"penalty_failures", eff.PenaltyFailures, "penalty_window", eff.PenaltyWindow,
		"max_conns", eff.MaxConns, "max_handshakes", eff.MaxHandshakes, "refusal_delay", eff.RefusalDelay,
		"backend_rate", eff.BackendRate, "backend_wait", eff.BackendWait, "breaker_failures", eff.BreakerFailures,
		"mqtt_client_id_rate", eff.ClientIDRate, "max_clients", eff.MaxClients)
	return nil
}
