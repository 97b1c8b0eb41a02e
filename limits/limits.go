package limits

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Limit names, the fixed set a Refusal's Limit and Stats.Refused use.
const (
	// LimitClientRate: the client opened new connections faster than
	// Config.ClientRate (beyond Config.ClientBurst).
	LimitClientRate = "client_rate"
	// LimitClientConns: the client already holds Config.ClientMaxConns
	// connections.
	LimitClientConns = "client_conns"
	// LimitPenalty: the client is in the penalty box after repeated
	// handshake failures.
	LimitPenalty = "penalty"
	// LimitMaxConns counts the times the accept loop paused because
	// Config.MaxConns connections were open. Nobody is refused by it: the
	// kernel's backlog holds the waiting connections.
	LimitMaxConns = "max_conns"
	// LimitHandshakes: Config.MaxHandshakes handshakes were in flight.
	LimitHandshakes = "handshakes"
	// LimitBackendRate: the backend pacing's waiting room was full, or the
	// wait would have exceeded Config.BackendWait.
	LimitBackendRate = "backend_rate"
	// LimitBackendDown: the circuit breaker is open after repeated dial
	// failures.
	LimitBackendDown = "backend_down"
	// LimitClientIDRate: an MQTT client ID sent CONNECTs faster than
	// Config.ClientIDRate.
	LimitClientIDRate = "client_id_rate"
)

type limitID int

const (
	idClientRate limitID = iota
	idClientConns
	idPenalty
	idMaxConns
	idHandshakes
	idBackendRate
	idBackendDown
	idClientIDRate
	numLimits
)

var limitNames = [numLimits]string{
	LimitClientRate, LimitClientConns, LimitPenalty, LimitMaxConns,
	LimitHandshakes, LimitBackendRate, LimitBackendDown, LimitClientIDRate,
}

// LimitNames returns every limit name, in a fixed order.
func LimitNames() []string { return append([]string(nil), limitNames[:]...) }

// Refusal says why a connection was turned away. It is an error.
type Refusal struct {
	// Limit names the limit that refused: one of the Limit constants.
	Limit string
	// RetryAfter is a hint for answers that carry one (HTTP Retry-After):
	// roughly when trying again could succeed.
	RetryAfter time.Duration
	// Delay is how long to hold the socket before closing it, which slows
	// a hot retry loop. Bounded by the limiter: zero once
	// Config.MaxDelayed sockets are already being held.
	Delay time.Duration
	// Busy is true when the refusal is about load (server busy) rather
	// than about this client's own behaviour.
	Busy bool
}

func (r *Refusal) Error() string { return fmt.Sprintf("refused by limit %s", r.Limit) }

// Config holds every limit: the limits section of the configuration,
// with its YAML keys. The zero value limits nothing; each limit is off
// while its main field is zero. DefaultConfig returns recommended values.
type Config struct {
	// ClientRate is new connections per second allowed from one client
	// (an IPv4 address or an IPv6 /64), with bursts of ClientBurst
	// (0 means ceil(ClientRate)). It is checked before the TLS handshake.
	ClientRate  float64 `yaml:"client_rate"`
	ClientBurst int     `yaml:"client_burst"`
	// ClientMaxConns caps the connections one client holds open at once.
	ClientMaxConns int `yaml:"client_max_conns"`
	// PenaltyFailures handshake failures within PenaltyWindow put a
	// client in the penalty box for PenaltyBase. A client that fails again
	// soon after its release goes back in for twice as long, up to
	// PenaltyMax; a successful handshake ends the doubling. Zero
	// durations default to 1m, 10s and 16×PenaltyBase.
	PenaltyFailures int           `yaml:"penalty_failures"`
	PenaltyWindow   time.Duration `yaml:"penalty_window"`
	PenaltyBase     time.Duration `yaml:"penalty_base"`
	PenaltyMax      time.Duration `yaml:"penalty_max"`
	// MaxClients caps how many clients (and, separately, MQTT client IDs)
	// are tracked for per-client limits; 0 means 100000, at least 64.
	// At the cap the least recently seen idle client is forgotten, never
	// one in its penalty box; see the package documentation.
	MaxClients int `yaml:"max_clients"`

	// MaxConns caps open connections on all listeners; when reached, the
	// proxy stops accepting until one closes.
	MaxConns int `yaml:"max_conns"`
	// MaxHandshakes caps TLS handshakes in flight, which is what costs
	// CPU; beyond it new connections are refused with Busy set. A
	// handshake is in flight from the client's first bytes
	// (Ticket.StartHandshake) until it ends; a silent socket holds none.
	MaxHandshakes int `yaml:"max_handshakes"`
	// ClientHelloTimeout is how long a new connection may stay silent
	// before its first bytes; the proxy closes it then (HAProxy's
	// "timeout client-hs"). Zero means the proxy's whole handshake
	// timeout applies. Silent sockets hold no handshake slot, but each
	// holds a connection (MaxConns) and a place in its client's
	// ClientMaxConns until this passes.
	ClientHelloTimeout time.Duration `yaml:"client_hello_timeout"`
	// RefusalDelay holds a socket refused before its handshake open for
	// between half of this and this long before it is closed, which slows
	// clients that retry in a tight loop. At most MaxDelayed sockets are
	// held at once (0 means 1024); beyond that, refused sockets are
	// closed at once.
	RefusalDelay time.Duration `yaml:"refusal_delay"`
	MaxDelayed   int           `yaml:"max_delayed"`

	// BackendRate paces new backend connections to this many per second,
	// per backend. A caller waits for its turn in a waiting room of at
	// most BackendQueue callers (0 means no other bound), and is refused
	// at once instead if its wait would exceed BackendWait (0 means 1s).
	BackendRate  int           `yaml:"backend_rate"`
	BackendWait  time.Duration `yaml:"backend_wait"`
	BackendQueue int           `yaml:"backend_queue"`
	// BreakerFailures consecutive failed backend dials open the circuit
	// breaker: backend connections are refused at once for
	// BreakerCooldown (0 means 5s), then one trial dial is let through,
	// whose result closes or reopens it.
	BreakerFailures int           `yaml:"breaker_failures"`
	BreakerCooldown time.Duration `yaml:"breaker_cooldown"`

	// ClientIDRate is MQTT CONNECTs per second allowed for one client ID,
	// with bursts of ClientIDBurst (0 means ceil(ClientIDRate)). It stops
	// two devices sharing an ID from knocking each other off in a loop.
	ClientIDRate  float64 `yaml:"mqtt_client_id_rate"`
	ClientIDBurst int     `yaml:"mqtt_client_id_burst"`

	// Exempt lists networks whose clients skip the per-client limits
	// (rate, open connections, penalty box); the global limits still
	// apply. For trusted neighbours: the host itself (health checks, the
	// self-probe, a local proxy in front), a load balancer's checkers.
	Exempt Networks `yaml:"exempt"`
}

// DefaultConfig returns the recommended limits. They are meant to be
// invisible to well-behaved clients, including many devices behind one
// NAT address, while making a retry storm cheap to turn away:
//
//   - 20 new connections per second per client, bursts of 40: a device
//     connects once per session; 20/s sustained is 72000 connections an
//     hour from one address.
//   - 1000 open connections per client: room for a large NAT, while one
//     host cannot hold every descriptor.
//   - penalty box after 20 failed handshakes in a minute, for 10s doubling
//     to 5m: a client that can never complete a handshake (an old TLS
//     stack, a wrong CA) stops costing CPU, and a NAT with one broken
//     device is boxed only briefly since any success ends the doubling.
//   - MaxConns from the descriptor limit (SuggestedMaxConns): past it
//     accept would fail anyway.
//   - 256 handshakes in flight per CPU, at least 512: several times what
//     a core completes in a round trip, so only a flood is refused.
//   - 3s for a new connection's first bytes: a client sends its
//     ClientHello right after the TCP handshake, one round trip at most;
//     3s covers a lost first segment resent after the initial 1s
//     retransmission timeout (RFC 6298) on a slow mobile or satellite
//     link, with room to spare, while a silent socket is dropped in less
//     than a third of the 10s handshake timeout.
//   - refused sockets held 0.5–1s, at most 1024 at once.
//   - backend paced to 1000 new connections/s with a 1s wait budget and a
//     waiting room of 1000; the breaker opens after 5 consecutive dial
//     failures for 5s. Normal reconnects stay far below that pace; after a
//     broker restart it spreads the herd.
//   - no limit per MQTT client ID: enforcing one makes the proxy read the
//     CONNECT before it dials the backend, which a tcp listener should not
//     do unasked. Set ClientIDRate (e.g. 1/s, bursts of 5) to turn it on.
//   - loopback clients (127.0.0.0/8, ::1) are exempt from the per-client
//     limits: on the same host they are health checks, the self-probe or
//     a local proxy through which every client would share one address.
//   - up to 100000 clients tracked (about 12 MB; see BenchmarkMemory).
func DefaultConfig() Config {
	return Config{
		ClientRate:         20,
		ClientBurst:        40,
		ClientMaxConns:     1000,
		PenaltyFailures:    20,
		PenaltyWindow:      time.Minute,
		PenaltyBase:        10 * time.Second,
		PenaltyMax:         5 * time.Minute,
		MaxClients:         100000,
		MaxConns:           SuggestedMaxConns(),
		MaxHandshakes:      max(512, 256*runtime.GOMAXPROCS(0)),
		ClientHelloTimeout: 3 * time.Second,
		RefusalDelay:       time.Second,
		MaxDelayed:         1024,
		BackendRate:        1000,
		BackendWait:        time.Second,
		BackendQueue:       1000,
		BreakerFailures:    5,
		BreakerCooldown:    5 * time.Second,
		Exempt:             Networks{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
	}
}

// Limiter decides admission. A nil *Limiter admits everything.
//
// Limiter is safe for concurrent use. Its state is bounded in memory by
// Config.MaxClients; Run, if started, frees the state of idle clients
// sooner.
type Limiter struct {
	cfg Config

	// now is the clock; tests replace it. Times inside are nanoseconds
	// since epoch, on the monotonic clock when now is time.Now.
	now   func() time.Time
	epoch time.Time

	perClient bool
	clients   *table[clientKey, clientState]
	ids       *table[uint64, idState]
	idSeed    maphash.Seed

	clientT    int64 // ns between client connections (GCRA interval)
	clientTau  int64 // GCRA tolerance: (burst-1) intervals
	idT, idTau int64
	baseTTL    int64 // an entry unused this long may have expired

	slots      chan struct{} // global connection slots; nil if unlimited
	open       atomic.Int64
	handshakes atomic.Int64
	delayed    delayRing
	untracked  atomic.Uint64

	backendMu sync.RWMutex
	backends  map[string]*shield
	newPacer  func(rate int) pacer // test seam for go.uber.org/ratelimit's clock

	refused [numLimits]atomic.Uint64
}

// maxBackends bounds the per-backend shields kept; names beyond it share
// the unnamed one.
const maxBackends = 256

// New returns a Limiter for cfg. It fails on negative values.
func New(cfg Config) (*Limiter, error) { return newLimiter(cfg, time.Now, nil) }

func newLimiter(cfg Config, now func() time.Time, newPacer func(int) pacer) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	cfg.Exempt = slices.Clone(cfg.Exempt)
	l := &Limiter{cfg: cfg, now: now, epoch: now(), backends: map[string]*shield{}, newPacer: newPacer, idSeed: maphash.MakeSeed()}
	if l.newPacer == nil {
		l.newPacer = newRatePacer
	}
	seed := rand.Uint64()
	l.perClient = cfg.ClientRate > 0 || cfg.ClientMaxConns > 0 || cfg.PenaltyFailures > 0
	if l.perClient {
		l.clients = newTable(cfg.MaxClients, hashClientKey(seed), l.clientPolicy())
	}
	if cfg.ClientRate > 0 {
		l.clientT = int64(float64(time.Second) / cfg.ClientRate)
		l.clientTau = int64(cfg.ClientBurst-1) * l.clientT
	}
	if cfg.ClientIDRate > 0 {
		l.ids = newTable(cfg.MaxClients, hashID(seed), policy[idState]{
			expired: func(e *idState, now int64) bool { return e.tat <= now },
		})
		l.idT = int64(float64(time.Second) / cfg.ClientIDRate)
		l.idTau = int64(cfg.ClientIDBurst-1) * l.idT
	}
	l.baseTTL = max(l.clientTau+l.clientT, int64(cfg.PenaltyWindow))
	if cfg.MaxConns > 0 {
		l.slots = make(chan struct{}, cfg.MaxConns)
	}
	if cfg.RefusalDelay > 0 {
		l.delayed.until = make([]int64, cfg.MaxDelayed)
	}
	l.backends[""] = l.newShield("")
	return l, nil
}

// Validate checks c; each error names its YAML key under limits and says
// what to do.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("limits.%s: %s", key, fmt.Sprintf(format, a...)))
	}
	const off, dflt = "use 0 to turn it off", "use 0 for the default"
	for _, f := range []struct {
		key  string
		v    float64
		zero string
	}{
		{"client_rate", c.ClientRate, off},
		{"client_burst", float64(c.ClientBurst), dflt},
		{"client_max_conns", float64(c.ClientMaxConns), off},
		{"penalty_failures", float64(c.PenaltyFailures), off},
		{"penalty_window", float64(c.PenaltyWindow), dflt},
		{"penalty_base", float64(c.PenaltyBase), dflt},
		{"penalty_max", float64(c.PenaltyMax), dflt},
		{"max_clients", float64(c.MaxClients), dflt},
		{"max_conns", float64(c.MaxConns), off},
		{"max_handshakes", float64(c.MaxHandshakes), off},
		{"client_hello_timeout", float64(c.ClientHelloTimeout), "use 0 for the handshake timeout"},
		{"refusal_delay", float64(c.RefusalDelay), off},
		{"max_delayed", float64(c.MaxDelayed), dflt},
		{"backend_rate", float64(c.BackendRate), off},
		{"backend_wait", float64(c.BackendWait), dflt},
		{"backend_queue", float64(c.BackendQueue), "use 0 for no bound beyond backend_wait"},
		{"breaker_failures", float64(c.BreakerFailures), off},
		{"breaker_cooldown", float64(c.BreakerCooldown), dflt},
		{"mqtt_client_id_rate", c.ClientIDRate, off},
		{"mqtt_client_id_burst", float64(c.ClientIDBurst), dflt},
	} {
		if f.v < 0 {
			bad(f.key, "must not be negative; %s", f.zero)
		}
	}
	for _, p := range c.Exempt {
		if !p.IsValid() {
			bad("exempt", "holds an invalid network")
		}
	}
	if c.PenaltyMax > 0 && c.PenaltyBase > c.PenaltyMax {
		bad("penalty_base", "%v is longer than penalty_max %v", c.PenaltyBase, c.PenaltyMax)
	}
	if c.ClientRate > 0 && c.ClientRate < 0.001 {
		bad("client_rate", "%v per second is less than one an hour; use 0 to turn it off", c.ClientRate)
	}
	if c.ClientIDRate > 0 && c.ClientIDRate < 0.001 {
		bad("mqtt_client_id_rate", "%v per second is less than one an hour; use 0 to turn it off", c.ClientIDRate)
	}
	if c.RefusalDelay > time.Minute {
		bad("refusal_delay", "%v holds refused sockets too long; keep it to a few seconds", c.RefusalDelay)
	}
	if c.BackendWait > time.Minute {
		bad("backend_wait", "%v keeps clients waiting too long; keep it to a few seconds", c.BackendWait)
	}
	return errors.Join(errs...)
}

// Networks is a list of networks, each a CIDR prefix or a single address,
// as the exempt key and flag take them.
type Networks []netip.Prefix

// Contains reports whether a is in one of the networks.
func (n Networks) Contains(a netip.Addr) bool {
	for _, p := range n {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParseNetwork reads a CIDR prefix or a single address.
func ParseNetwork(s string) (netip.Prefix, error) {
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

// Set replaces the list with the comma-separated networks in v ("" empties
// it); it makes *Networks a flag.Value.
func (n *Networks) Set(v string) error {
	var out Networks
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		pr, err := ParseNetwork(p)
		if err != nil {
			return err
		}
		out = append(out, pr)
	}
	*n = out
	return nil
}

func (n *Networks) String() string {
	if n == nil {
		return ""
	}
	parts := make([]string, len(*n))
	for i, p := range *n {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

// UnmarshalYAML reads a list of networks, or one comma-separated string.
// It is the YAML decoder's function-style interface, so this package
// needs no YAML library.
func (n *Networks) UnmarshalYAML(unmarshal func(any) error) error {
	var list []string
	if err := unmarshal(&list); err != nil {
		var one string
		if err := unmarshal(&one); err != nil {
			return err
		}
		return n.Set(one)
	}
	return n.Set(strings.Join(list, ","))
}

// withDefaults fills the secondary fields a switched-on limit needs.
func (c Config) withDefaults() Config {
	burst := func(b int, rate float64) int {
		if b > 0 {
			return b
		}
		return max(1, int(rate+0.999999))
	}
	c.ClientBurst = burst(c.ClientBurst, c.ClientRate)
	c.ClientIDBurst = burst(c.ClientIDBurst, c.ClientIDRate)
	if c.MaxClients == 0 {
		c.MaxClients = 100000
	}
	c.MaxClients = max(c.MaxClients, minSize)
	if c.PenaltyWindow == 0 {
		c.PenaltyWindow = time.Minute
	}
	if c.PenaltyBase == 0 {
		c.PenaltyBase = 10 * time.Second
	}
	if c.PenaltyMax == 0 {
		c.PenaltyMax = 16 * c.PenaltyBase
	}
	if c.MaxDelayed == 0 {
		c.MaxDelayed = 1024
	}
	if c.BackendWait == 0 {
		c.BackendWait = time.Second
	}
	if c.BreakerCooldown == 0 {
		c.BreakerCooldown = 5 * time.Second
	}
	return c
}

// Config returns the configuration in effect, defaults filled in.
func (l *Limiter) Config() Config {
	if l == nil {
		return Config{}
	}
	return l.cfg
}

// LogAttrs are the main limits as slog key-value pairs, named as their
// keys, for the line that says which limits are in force.
func (c Config) LogAttrs() []any {
	return []any{
		"client_rate", c.ClientRate, "client_burst", c.ClientBurst, "client_max_conns", c.ClientMaxConns,
		"penalty_failures", c.PenaltyFailures, "penalty_window", c.PenaltyWindow.String(),
		"max_conns", c.MaxConns, "max_handshakes", c.MaxHandshakes, "refusal_delay", c.RefusalDelay.String(),
		"backend_rate", c.BackendRate, "backend_wait", c.BackendWait.String(), "breaker_failures", c.BreakerFailures,
		"mqtt_client_id_rate", c.ClientIDRate, "max_clients", c.MaxClients,
	}
}

func (l *Limiter) nanotime() int64 { return int64(l.now().Sub(l.epoch)) }

func noop() {}

// AcquireSlot blocks until a global connection slot is free or ctx ends. The
// proxy calls it before Accept, so that when full it stops accepting
// instead of queueing without bound. release must be called exactly once.
func (l *Limiter) AcquireSlot(ctx context.Context) (release func(), err error) {
	if l == nil {
		return noop, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if l.slots != nil {
		select {
		case l.slots <- struct{}{}:
		default:
			l.refused[idMaxConns].Add(1)
			select {
			case l.slots <- struct{}{}:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	l.open.Add(1)
	return l.releaseSlot, nil
}

// TryAcquireSlot takes a global connection slot if one is free, without
// waiting: for plain listeners (redirect, admin), which must not queue
// behind the TLS listeners nor fill the descriptors they need. release
// must be called exactly once when ok.
func (l *Limiter) TryAcquireSlot() (release func(), ok bool) {
	if l == nil {
		return noop, true
	}
	if l.slots != nil {
		select {
		case l.slots <- struct{}{}:
		default:
			l.refused[idMaxConns].Add(1)
			return nil, false
		}
	}
	l.open.Add(1)
	return l.releaseSlot, true
}

func (l *Limiter) releaseSlot() {
	l.open.Add(-1)
	if l.slots != nil {
		<-l.slots
	}
}

// refuse counts a refusal by limit id and builds it. Refusals before the
// handshake get a bounded delay.
func (l *Limiter) refuse(id limitID, retryAfter time.Duration, now int64, delay bool) *Refusal {
	l.refused[id].Add(1)
	r := &Refusal{Limit: limitNames[id], RetryAfter: retryAfter}
	switch id {
	case idHandshakes, idBackendRate:
		r.Busy = true
	}
	if delay && l.cfg.RefusalDelay > 0 && l.delayed.take(now, int64(l.cfg.RefusalDelay)) {
		// Jitter so that a herd refused together does not return together.
		d := int64(l.cfg.RefusalDelay)
		r.Delay = time.Duration(d/2 + rand.Int64N(d/2+1))
	}
	return r
}

// delayRing tracks when each held refused socket is released, to cap how
// many are held at once. Every hold is recorded as lasting the full
// RefusalDelay, so release times are in order and the ring stays sorted.
type delayRing struct {
	mu      sync.Mutex
	until   []int64
	head, n int
}

// take reserves a hold starting at now, or reports false when the ring is
// full of holds that have not ended yet.
func (d *delayRing) take(now, delay int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for d.n > 0 && d.until[d.head] <= now {
		d.head = (d.head + 1) % len(d.until)
		d.n--
	}
	if d.n == len(d.until) {
		return false
	}
	d.until[(d.head+d.n)%len(d.until)] = now + delay
	d.n++
	return true
}

func (d *delayRing) held(now int64) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for i := 0; i < d.n; i++ {
		if d.until[(d.head+i)%len(d.until)] > now {
			n++
		}
	}
	return n
}

// Run frees the state of idle clients every sweepInterval until ctx ends.
// It is optional: without it memory stays bounded by Config.MaxClients,
// and entries are reclaimed as new clients arrive.
func (l *Limiter) Run(ctx context.Context) {
	if l == nil || (l.clients == nil && l.ids == nil) {
		return
	}
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.sweep()
		}
	}
}

const sweepInterval = 10 * time.Second

// sweep removes the state of clients and client IDs that have expired.
func (l *Limiter) sweep() (removed int) {
	now := l.nanotime()
	if l.clients != nil {
		removed += l.clients.sweep(
			func(c *clientState) bool { return c.lastSeen < now-l.baseTTL },
			func(c *clientState) bool { return l.clientExpired(c, now) })
	}
	if l.ids != nil {
		removed += l.ids.sweep(
			func(e *idState) bool { return e.tat <= now },
			func(e *idState) bool { return e.tat <= now })
	}
	return removed
}

// Stats is a snapshot of the limiter's counters and state.
type Stats struct {
	// Refused counts refusals by limit name, every name present. For
	// max_conns it counts pauses of the accept loop.
	Refused map[string]uint64
	// TrackedClients and TrackedClientIDs are entries held for per-client
	// and per-client-ID limits; each stays at most Config.MaxClients.
	TrackedClients   int
	TrackedClientIDs int
	// EvictedClients counts clients forgotten at the cap before their
	// state expired; a high rate means MaxClients is too small for the
	// traffic (or a storm from many addresses is under way).
	EvictedClients uint64
	// UntrackedAdmits counts connections admitted without per-client
	// limits because the client table had no place for a new client:
	// every client in the newcomer's shard had connections open or was in
	// its penalty box.
	UntrackedAdmits uint64
	// ClientTableFull is true while the client table is full in that
	// sense: the last new client could not be given an entry. It clears
	// when one can again. ClientTableFullTimes counts the times it became
	// true. Either means MaxClients is too small for the clients held open
	// or boxed at once (or an attack from many addresses is under way);
	// untracked clients still meet every global limit.
	ClientTableFull      bool
	ClientTableFullTimes uint64
	HandshakesInFlight   int64
	OpenConns            int64
	// DelayedSockets is how many refused sockets are being held.
	DelayedSockets int
	// Breaker is the state of the default backend's circuit breaker:
	// "closed", "open" or "half_open".
	Breaker  string
	Backends []BackendStats
}

// BackendStats is the shield of one backend.
type BackendStats struct {
	// Name is the backend as given to BackendFor; "" for Backend.
	Name    string
	Breaker string
	// Waiting is how many callers are in the pacing waiting room.
	Waiting int64
}

// Stats returns a snapshot. It is safe to call at any time; on a nil
// Limiter it returns zero counts.
func (l *Limiter) Stats() Stats {
	s := Stats{Refused: make(map[string]uint64, numLimits), Breaker: "closed"}
	for i, n := range limitNames {
		if l != nil {
			s.Refused[n] = l.refused[i].Load()
		} else {
			s.Refused[n] = 0
		}
	}
	if l == nil {
		return s
	}
	if l.clients != nil {
		s.TrackedClients = int(l.clients.count.Load())
		s.EvictedClients = l.clients.evicted.Load()
		s.ClientTableFull = l.clients.full.Load()
		s.ClientTableFullTimes = l.clients.fullTimes.Load()
	}
	if l.ids != nil {
		s.TrackedClientIDs = int(l.ids.count.Load())
	}
	s.UntrackedAdmits = l.untracked.Load()
	s.HandshakesInFlight = l.handshakes.Load()
	s.OpenConns = l.open.Load()
	if l.cfg.RefusalDelay > 0 {
		s.DelayedSockets = l.delayed.held(l.nanotime())
	}
	now := l.nanotime()
	l.backendMu.RLock()
	for _, b := range l.backends {
		s.Backends = append(s.Backends, BackendStats{Name: b.name, Breaker: b.state(now), Waiting: b.waiting.Load()})
	}
	l.backendMu.RUnlock()
	sortBackends(s.Backends)
	for _, b := range s.Backends {
		if b.Name == "" {
			s.Breaker = b.Breaker
		}
	}
	return s
}

// AdmitClientID decides whether an MQTT CONNECT with client ID id may go
// on, by the per-ID rate. An empty ID (the broker assigns one) is never
// limited. It does not block.
func (l *Limiter) AdmitClientID(id string) *Refusal {
	if l == nil || l.ids == nil || id == "" {
		return nil
	}
	// Only a hash is kept: IDs are client-chosen and may be long.
	k := maphash.String(l.idSeed, id)
	now := l.nanotime()
	s := l.ids.shardFor(k)
	s.mu.Lock()
	idx, _ := s.unsyncedGet(k, now)
	if idx == noSlot {
		// Every ID entry is pinned, which cannot happen as none ever is;
		// admit rather than guess.
		s.mu.Unlock()
		return nil
	}
	e := &s.slots[idx].e
	wait, ok := GCRA(&e.tat, now, l.idT, l.idTau)
	s.unsyncedTouch(idx)
	s.mu.Unlock()
	if !ok {
		return l.refuse(idClientIDRate, time.Duration(wait), now, false)
	}
	return nil
}

// idState is what is kept per MQTT client ID.
type idState struct {
	tat int64 // GCRA theoretical arrival time
}

// GCRA is the generic cell rate algorithm, a token bucket kept as one
// number: tat is when the bucket would be full again. A request at now
// conforms when tat-now is within tau (burst-1 intervals of t); it then
// moves tat one interval on. Otherwise wait is how long until it would
// conform. All are in the same unit (tlsfront uses nanoseconds). It is
// the one rate algorithm of tlsfront's caps, the issuance caps included.
func GCRA(tat *int64, now, t, tau int64) (wait int64, ok bool) {
	at := max(*tat, now)
	if at-now > tau {
		return at - now - tau, false
	}
	*tat = at + t
	return 0, true
}
