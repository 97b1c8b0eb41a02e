package main

import (
	"flag"

	"github.com/tlsfront/tlsfront/limits"
)

// limitsSection is the limits section of the configuration: limits.Config,
// which owns the keys, their defaults and their validation, and the one
// switch that turns every limit off.
type limitsSection struct {
	Enabled       bool `yaml:"enabled"`
	limits.Config `yaml:",inline"`
}

func defaultLimits() limitsSection {
	return limitsSection{Enabled: true, Config: limits.DefaultConfig()}
}

// registerFlags binds a flag to every limit.
func (c *limitsSection) registerFlags(fs *flag.FlagSet) {
	l := &c.Config
	fs.BoolVar(&c.Enabled, "limits", c.Enabled, "admission limits; --limits=false turns every limit below off")
	fs.Float64Var(&l.ClientRate, "client-rate", l.ClientRate, "new connections per second per client address (IPv6: per /64), checked before the TLS handshake; 0 turns it off")
	fs.IntVar(&l.ClientBurst, "client-burst", l.ClientBurst, "connections a client may open at once beyond --client-rate (0: the rate, rounded up)")
	fs.IntVar(&l.ClientMaxConns, "client-max-conns", l.ClientMaxConns, "connections one client address may hold open at once; 0 turns it off")
	fs.IntVar(&l.PenaltyFailures, "penalty-failures", l.PenaltyFailures, "failed TLS handshakes within --penalty-window that put a client in the penalty box; 0 turns it off")
	fs.DurationVar(&l.PenaltyWindow, "penalty-window", l.PenaltyWindow, "window in which --penalty-failures are counted")
	fs.DurationVar(&l.PenaltyBase, "penalty-base", l.PenaltyBase, "first time in the penalty box; doubled each time the client fails again soon after release")
	fs.DurationVar(&l.PenaltyMax, "penalty-max", l.PenaltyMax, "longest time in the penalty box")
	fs.IntVar(&l.MaxClients, "max-clients", l.MaxClients, "client addresses tracked at once for per-client limits (memory: about 125 bytes each); the least recently seen idle one is forgotten beyond it, never one in its penalty box")
	fs.IntVar(&l.MaxConns, "max-conns", l.MaxConns, "open connections on all listeners; when reached, accepting pauses (default from the descriptor limit); 0 turns it off")
	fs.IntVar(&l.MaxHandshakes, "max-handshakes", l.MaxHandshakes, "TLS handshakes in flight (CPU), counted from a client's first bytes; beyond it new connections are refused; 0 turns it off")
	fs.DurationVar(&l.ClientHelloTimeout, "client-hello-timeout", l.ClientHelloTimeout, "how long a new connection may stay silent before its first bytes (0: the handshake timeout)")
	fs.DurationVar(&l.RefusalDelay, "refusal-delay", l.RefusalDelay, "hold a socket refused before its handshake open for up to this long, to slow retry loops; 0 closes at once")
	fs.IntVar(&l.MaxDelayed, "max-delayed", l.MaxDelayed, "refused sockets held open at once by --refusal-delay; beyond it they are closed at once")
	fs.IntVar(&l.BackendRate, "backend-rate", l.BackendRate, "new backend connections per second, per backend; 0 turns pacing off")
	fs.DurationVar(&l.BackendWait, "backend-wait", l.BackendWait, "longest a connection waits for its turn under --backend-rate before it is refused as busy")
	fs.IntVar(&l.BackendQueue, "backend-queue", l.BackendQueue, "connections that may wait for a turn under --backend-rate at once (0: only --backend-wait bounds it)")
	fs.IntVar(&l.BreakerFailures, "breaker-failures", l.BreakerFailures, "consecutive failed backend dials that open the circuit breaker (refuse at once for --breaker-cooldown); 0 turns it off")
	fs.DurationVar(&l.BreakerCooldown, "breaker-cooldown", l.BreakerCooldown, "how long an open circuit breaker refuses before it lets one trial dial through")
	fs.Float64Var(&l.ClientIDRate, "mqtt-client-id-rate", l.ClientIDRate, "MQTT CONNECTs per second per client ID, answered with CONNACK 0x9F beyond it; makes mqtt listeners read the CONNECT before dialling the backend; 0 (default) turns it off")
	fs.IntVar(&l.ClientIDBurst, "mqtt-client-id-burst", l.ClientIDBurst, "CONNECTs a client ID may send at once beyond --mqtt-client-id-rate (0: the rate, rounded up)")
	fs.Var(&l.Exempt, "limits-exempt", "comma-separated `networks` (CIDR or address) whose clients skip the per-client limits; \"\" exempts none")
}

// validate checks the limits unless they are off.
func (c *limitsSection) validate() error {
	if !c.Enabled {
		return nil
	}
	return c.Config.Validate()
}
