package limits

import (
	"context"
	"fmt"
	"net/netip"
	"time"
)

// Refusal says why a connection was turned away. It is an error.
type Refusal struct {
	// Limit names the limit that refused, e.g. "client_rate".
	Limit string
	// RetryAfter is a hint for answers that carry one (HTTP Retry-After).
	RetryAfter time.Duration
	// Delay is how long to hold the socket before closing it, which slows
	// a hot retry loop. Bounded by the limiter.
	Delay time.Duration
	// Busy is true when the refusal is about load (server busy) rather
	// than about this client's own rate.
	Busy bool
}

func (r *Refusal) Error() string { return fmt.Sprintf("refused by limit %s", r.Limit) }

// Config holds every limit. The zero value limits nothing.
type Config struct{}

// Limiter decides admission. A nil *Limiter admits everything.
//
// Limiter is safe for concurrent use.
type Limiter struct{}

// New returns a Limiter for cfg.
func New(cfg Config) (*Limiter, error) { return &Limiter{}, nil }

// AcquireSlot blocks until a global connection slot is free or ctx ends. The
// proxy calls it before Accept, so that when full it stops accepting
// instead of queueing without bound.
func (l *Limiter) AcquireSlot(ctx context.Context) (release func(), err error) {
	return func() {}, nil
}

// Ticket is an admitted connection. Close must be called once when the
// connection ends.
type Ticket struct{}

// Admit decides whether a new connection from client may go on to its TLS
// handshake. It costs no crypto and does not block.
func (l *Limiter) Admit(client netip.Addr) (*Ticket, *Refusal) { return &Ticket{}, nil }

// Handshake reports how the connection's handshake ended.
func (t *Ticket) Handshake(ok bool) {}

// Close releases what the ticket holds.
func (t *Ticket) Close() {}

// Backend asks to open a connection to the backend for client. On success,
// done must be called with the dial's result.
func (l *Limiter) Backend(ctx context.Context, client netip.Addr) (done func(dialErr error), refused *Refusal) {
	return func(error) {}, nil
}
