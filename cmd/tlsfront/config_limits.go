package main

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tlsfront/tlsfront/limits"
)

// limitsConfig is the limits section of the configuration: who gets in,
// before any crypto is spent. Every limit is on by default with values a
// well-behaved client never meets (see limits.DefaultConfig for why each
// is safe); a key set to 0 turns its limit off, and `enabled: false` (or
// --limits=false) turns them all off.
type limitsConfig struct {
	Enabled bool `yaml:"enabled"`

	// Per client: an IPv4 address or an IPv6 /64.
	ClientRate      float64       `yaml:"client_rate"`      // new connections/s; 0 off
	ClientBurst     int           `yaml:"client_burst"`     // 0: ceil(client_rate)
	ClientMaxConns  int           `yaml:"client_max_conns"` // open at once; 0 off
	PenaltyFailures int           `yaml:"penalty_failures"` // failed handshakes; 0 off
	PenaltyWindow   time.Duration `yaml:"penalty_window"`
	PenaltyBase     time.Duration `yaml:"penalty_base"`
	PenaltyMax      time.Duration `yaml:"penalty_max"`
	MaxClients      int           `yaml:"max_clients"` // tracked at once; 0: 100000

	// Global.
	MaxConns      int           `yaml:"max_conns"`      // 0 off
	MaxHandshakes int           `yaml:"max_handshakes"` // 0 off
	RefusalDelay  time.Duration `yaml:"refusal_delay"`  // 0 off
	MaxDelayed    int           `yaml:"max_delayed"`    // 0: 1024

	// Backend shield.
	BackendRate     int           `yaml:"backend_rate"` // new connections/s per backend; 0 off
	BackendWait     time.Duration `yaml:"backend_wait"`
	BackendQueue    int           `yaml:"backend_queue"`
	BreakerFailures int           `yaml:"breaker_failures"` // 0 off
	BreakerCooldown time.Duration `yaml:"breaker_cooldown"`

	// MQTT.
	MQTTClientIDRate  float64 `yaml:"mqtt_client_id_rate"` // CONNECTs/s per client ID; 0 off
	MQTTClientIDBurst int     `yaml:"mqtt_client_id_burst"`

	// Exempt lists networks (CIDR prefixes or addresses) whose clients
	// skip the per-client limits; default loopback.
	Exempt []string `yaml:"exempt"`

	// defaulted is set once the recommended values are in, so that a
	// later step (the file, then flags) only overrides what it names.
	defaulted bool
}

// defaultLimitsConfig is limits.DefaultConfig as configuration.
func defaultLimitsConfig() limitsConfig {
	d := limits.DefaultConfig()
	c := limitsConfig{
		Enabled:           true,
		ClientRate:        d.ClientRate,
		ClientBurst:       d.ClientBurst,
		ClientMaxConns:    d.ClientMaxConns,
		PenaltyFailures:   d.PenaltyFailures,
		PenaltyWindow:     d.PenaltyWindow,
		PenaltyBase:       d.PenaltyBase,
		PenaltyMax:        d.PenaltyMax,
		MaxClients:        d.MaxClients,
		MaxConns:          d.MaxConns,
		MaxHandshakes:     d.MaxHandshakes,
		RefusalDelay:      d.RefusalDelay,
		MaxDelayed:        d.MaxDelayed,
		BackendRate:       d.BackendRate,
		BackendWait:       d.BackendWait,
		BackendQueue:      d.BackendQueue,
		BreakerFailures:   d.BreakerFailures,
		BreakerCooldown:   d.BreakerCooldown,
		MQTTClientIDRate:  d.ClientIDRate,
		MQTTClientIDBurst: d.ClientIDBurst,
		defaulted:         true,
	}
	for _, p := range d.Exempt {
		c.Exempt = append(c.Exempt, p.String())
	}
	return c
}

func (c *limitsConfig) applyDefaults() {
	if !c.defaulted {
		*c = defaultLimitsConfig()
	}
}

// UnmarshalYAML decodes the limits section over the recommended values,
// so that a file naming one key keeps the defaults of the others. Unknown
// keys are errors, as in the rest of the file.
func (c *limitsConfig) UnmarshalYAML(n *yaml.Node) error {
	c.applyDefaults()
	if n.Kind == yaml.MappingNode {
		known := limitsKeys()
		var errs []error
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if !known[k.Value] {
				errs = append(errs, fmt.Errorf("line %d: unknown key %q in limits (check its spelling and indentation; known: %s)", k.Line, k.Value, strings.Join(slices.Sorted(maps.Keys(known)), ", ")))
			}
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}
	type plain limitsConfig // without this method, to decode the fields
	return n.Decode((*plain)(c))
}

func limitsKeys() map[string]bool {
	keys := map[string]bool{}
	t := reflect.TypeFor[limitsConfig]()
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); tag != "" {
			keys[tag] = true
		}
	}
	return keys
}

func (c *limitsConfig) registerFlags(fs *flag.FlagSet) {
	c.applyDefaults()
	fs.BoolVar(&c.Enabled, "limits", c.Enabled, "admission limits; --limits=false turns every limit below off")
	fs.Float64Var(&c.ClientRate, "client-rate", c.ClientRate, "new connections per second per client address (IPv6: per /64), checked before the TLS handshake; 0 turns it off")
	fs.IntVar(&c.ClientBurst, "client-burst", c.ClientBurst, "connections a client may open at once beyond --client-rate (0: the rate, rounded up)")
	fs.IntVar(&c.ClientMaxConns, "client-max-conns", c.ClientMaxConns, "connections one client address may hold open at once; 0 turns it off")
	fs.IntVar(&c.PenaltyFailures, "penalty-failures", c.PenaltyFailures, "failed TLS handshakes within --penalty-window that put a client in the penalty box; 0 turns it off")
	fs.DurationVar(&c.PenaltyWindow, "penalty-window", c.PenaltyWindow, "window in which --penalty-failures are counted")
	fs.DurationVar(&c.PenaltyBase, "penalty-base", c.PenaltyBase, "first time in the penalty box; doubled each time the client fails again soon after release")
	fs.DurationVar(&c.PenaltyMax, "penalty-max", c.PenaltyMax, "longest time in the penalty box")
	fs.IntVar(&c.MaxClients, "max-clients", c.MaxClients, "client addresses tracked at once for per-client limits (memory: about 125 bytes each); the least recently seen idle one is forgotten beyond it")
	fs.IntVar(&c.MaxConns, "max-conns", c.MaxConns, "open connections on all listeners; when reached, accepting pauses (default from the descriptor limit); 0 turns it off")
	fs.IntVar(&c.MaxHandshakes, "max-handshakes", c.MaxHandshakes, "TLS handshakes in flight (CPU); beyond it new connections are refused; 0 turns it off")
	fs.DurationVar(&c.RefusalDelay, "refusal-delay", c.RefusalDelay, "hold a socket refused before its handshake open for up to this long, to slow retry loops; 0 closes at once")
	fs.IntVar(&c.MaxDelayed, "max-delayed", c.MaxDelayed, "refused sockets held open at once by --refusal-delay; beyond it they are closed at once")
	fs.IntVar(&c.BackendRate, "backend-rate", c.BackendRate, "new backend connections per second, per backend; 0 turns pacing off")
	fs.DurationVar(&c.BackendWait, "backend-wait", c.BackendWait, "longest a connection waits for its turn under --backend-rate before it is refused as busy")
	fs.IntVar(&c.BackendQueue, "backend-queue", c.BackendQueue, "connections that may wait for a turn under --backend-rate at once (0: only --backend-wait bounds it)")
	fs.IntVar(&c.BreakerFailures, "breaker-failures", c.BreakerFailures, "consecutive failed backend dials that open the circuit breaker (refuse at once for --breaker-cooldown); 0 turns it off")
	fs.DurationVar(&c.BreakerCooldown, "breaker-cooldown", c.BreakerCooldown, "how long an open circuit breaker refuses before it lets one trial dial through")
	fs.Float64Var(&c.MQTTClientIDRate, "mqtt-client-id-rate", c.MQTTClientIDRate, "MQTT CONNECTs per second per client ID, answered with CONNACK 0x9F beyond it; makes mqtt listeners read the CONNECT before dialling the backend; 0 (default) turns it off")
	fs.Var((*exemptList)(&c.Exempt), "limits-exempt", "comma-separated `networks` (CIDR or address) whose clients skip the per-client limits; \"\" exempts none")
	fs.IntVar(&c.MQTTClientIDBurst, "mqtt-client-id-burst", c.MQTTClientIDBurst, "CONNECTs a client ID may send at once beyond --mqtt-client-id-rate (0: the rate, rounded up)")
}

// validate checks every limit; each error names its key.
func (c *limitsConfig) validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("limits.%s: %s", key, fmt.Sprintf(format, a...)))
	}
	nonNeg := func(key string, v float64, off string) {
		if v < 0 {
			bad(key, "%v is negative; %s", v, off)
		}
	}
	const off, dflt = "use 0 to turn it off", "use 0 for the default"
	nonNeg("client_rate", c.ClientRate, off)
	nonNeg("client_burst", float64(c.ClientBurst), dflt)
	nonNeg("client_max_conns", float64(c.ClientMaxConns), off)
	nonNeg("penalty_failures", float64(c.PenaltyFailures), off)
	nonNeg("penalty_window", float64(c.PenaltyWindow), dflt)
	nonNeg("penalty_base", float64(c.PenaltyBase), dflt)
	nonNeg("penalty_max", float64(c.PenaltyMax), dflt)
	nonNeg("max_clients", float64(c.MaxClients), dflt)
	nonNeg("max_conns", float64(c.MaxConns), off)
	nonNeg("max_handshakes", float64(c.MaxHandshakes), off)
	nonNeg("refusal_delay", float64(c.RefusalDelay), off)
	nonNeg("max_delayed", float64(c.MaxDelayed), dflt)
	nonNeg("backend_rate", float64(c.BackendRate), off)
	nonNeg("backend_wait", float64(c.BackendWait), dflt)
	nonNeg("backend_queue", float64(c.BackendQueue), "use 0 for no bound beyond backend_wait")
	nonNeg("breaker_failures", float64(c.BreakerFailures), off)
	nonNeg("breaker_cooldown", float64(c.BreakerCooldown), dflt)
	nonNeg("mqtt_client_id_rate", c.MQTTClientIDRate, off)
	nonNeg("mqtt_client_id_burst", float64(c.MQTTClientIDBurst), dflt)
	if c.PenaltyMax > 0 && c.PenaltyBase > c.PenaltyMax {
		bad("penalty_base", "%v is longer than penalty_max %v", c.PenaltyBase, c.PenaltyMax)
	}
	if c.ClientRate > 0 && c.ClientRate < 0.001 {
		bad("client_rate", "%v per second is less than one an hour; use 0 to turn it off", c.ClientRate)
	}
	if c.MQTTClientIDRate > 0 && c.MQTTClientIDRate < 0.001 {
		bad("mqtt_client_id_rate", "%v per second is less than one an hour; use 0 to turn it off", c.MQTTClientIDRate)
	}
	for _, e := range c.Exempt {
		if _, err := parseExempt(e); err != nil {
			bad("exempt", "%v", err)
		}
	}
	if c.RefusalDelay > time.Minute {
		bad("refusal_delay", "%v holds refused sockets too long; keep it to a few seconds", c.RefusalDelay)
	}
	if c.BackendWait > time.Minute {
		bad("backend_wait", "%v keeps clients waiting too long; keep it to a few seconds", c.BackendWait)
	}
	return errors.Join(errs...)
}

// limiterConfig is the configuration as the limits package takes it. It
// skips exempt entries validate has already reported.
func (c *limitsConfig) limiterConfig() limits.Config {
	var exempt []netip.Prefix
	for _, e := range c.Exempt {
		if p, err := parseExempt(e); err == nil {
			exempt = append(exempt, p)
		}
	}
	return limits.Config{
		ClientRate:      c.ClientRate,
		ClientBurst:     c.ClientBurst,
		ClientMaxConns:  c.ClientMaxConns,
		PenaltyFailures: c.PenaltyFailures,
		PenaltyWindow:   c.PenaltyWindow,
		PenaltyBase:     c.PenaltyBase,
		PenaltyMax:      c.PenaltyMax,
		MaxClients:      c.MaxClients,
		MaxConns:        c.MaxConns,
		MaxHandshakes:   c.MaxHandshakes,
		RefusalDelay:    c.RefusalDelay,
		MaxDelayed:      c.MaxDelayed,
		BackendRate:     c.BackendRate,
		BackendWait:     c.BackendWait,
		BackendQueue:    c.BackendQueue,
		BreakerFailures: c.BreakerFailures,
		BreakerCooldown: c.BreakerCooldown,
		ClientIDRate:    c.MQTTClientIDRate,
		ClientIDBurst:   c.MQTTClientIDBurst,
		Exempt:          exempt,
	}
}

// parseExempt reads a CIDR prefix or a single address.
func parseExempt(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a network (e.g. 10.0.0.0/8) or an address", s)
	}
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// exemptList is a comma-separated list flag; setting it replaces the
// default list, and "" empties it.
type exemptList []string

func (e *exemptList) String() string { return strings.Join(*e, ",") }

func (e *exemptList) Set(v string) error {
	*e = nil
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*e = append(*e, p)
		}
	}
	return nil
}
