package report

import (
	"net/netip"
	"time"
)

// ProbeALPN is the ALPN protocol tlsfront's own self-probe offers. The
// proxy recognises it in the ClientHello, completes the handshake as it
// would for a client, then ends the connection at once: a probe never
// reaches a backend or its circuit breaker, and is reported as a probe,
// not as a client handshake.
const ProbeALPN = "tlsfront-probe"

// Handshake is the outcome of one TLS handshake.
type Handshake struct {
	Listener string
	Client   netip.AddrPort
	// SNI is the server name the client asked for.
	SNI string
	// Version is the negotiated version; zero when the handshake failed.
	Version uint16
	// Offered are the versions the client's hello listed; nil without a
	// hello. Receivers must not keep the slice past the call.
	Offered []uint16
	// Err is nil on success.
	Err error
	// Reason classifies a failure; empty on success.
	Reason string
	// JA4 fingerprints the ClientHello; empty without a hello.
	JA4      string
	Duration time.Duration
	// Probe is set for tlsfront's own self-probe (see ProbeALPN): it is
	// not a client, and failure ratios leave it out.
	Probe bool
	// Resumed is set when the client resumed a session (a ticket): no
	// certificate or key exchange signature was needed.
	Resumed bool
}

// Refusal is a connection or request a limit turned away.
type Refusal struct {
	Listener string
	Client   netip.Addr
	// Limit names the limit (limits.LimitNames).
	Limit string
}

// ConnClosed is a proxied connection (or WebSocket session) that ended:
// what an access log line says.
type ConnClosed struct {
	Listener string
	// ConnID is the connection's ID in every log line about it.
	ConnID string
	Client netip.AddrPort
	SNI    string
	JA4    string
	// Backend is where it was forwarded.
	Backend string
	// FromClient and ToClient are the application bytes carried each
	// way.
	FromClient, ToClient int64
	Duration             time.Duration
	// End says how it ended, e.g. "closed", "shutdown", or a WebSocket
	// close code.
	End string
}

// BackendDial is one attempt to connect to a backend.
type BackendDial struct {
	Listener string
	Backend  string
	Took     time.Duration
	Err      error
}

// BackendReset is a backend connection that was dialled but that the
// backend closed or reset before sending its first byte: a broker that
// accepts and then drops connections. Err says how it ended.
type BackendReset struct {
	Listener string
	Backend  string
	Err      error
}

// Reload outcomes.
const (
	Reloaded  = "reloaded"
	Unchanged = "unchanged"
	Failed    = "failed"
)

// Reload is the result of reloading one certificate, the client CA bundle
// or the trust store. Unchanged files are not reported.
type Reload struct {
	// ID names what was reloaded: a certificate's ID, or the YAML key of
	// a CA file (client_auth.ca_file, trust.ca_file).
	ID string
	// Trigger is what asked for the reload: start, watch, sighup,
	// interval or admin.
	Trigger string
	Err     error
}

// ACME event kinds.
const (
	ACMEObtaining = "obtaining" // an order is about to be placed
	ACMEObtained  = "obtained"  // a new certificate is in storage
	ACMERenewed   = "renewed"   // a renewed certificate is in storage
	ACMEFailed    = "failed"    // obtaining or renewing failed; Err says why
	ACMECached    = "cached"    // a managed certificate was loaded into memory
	ACMERevoked   = "revoked"   // the OCSP responder says it is revoked
	ACMERefused   = "refused"   // an on-demand name refused before any CA contact
)

// ACME is a certificate management event for names.
type ACME struct {
	Event string
	Names []string
	Err   error
	// Took is how long obtaining or renewing took, on the events that
	// end one (obtained, renewed, failed); zero when unknown.
	Took time.Duration
}

// Dependency is the health of something tlsfront relies on besides its
// backends, such as the shared storage of a fleet: Err is nil once it
// works again.
type Dependency struct {
	// Name says what it is, e.g. "redis".
	Name string
	Err  error
}

// Sink receives events. Every method is called from the goroutine where
// the event happened, often a connection's, so it must be cheap and must
// never block.
type Sink interface {
	Handshake(*Handshake)
	Refused(Refusal)
	ConnOpened(listener string)
	ConnClosed(ConnClosed)
	BackendDial(BackendDial)
	BackendReset(BackendReset)
	Reloaded(Reload)
	ACME(ACME)
	Dependency(Dependency)
}

// Discard is a Sink that drops every event.
var Discard Sink = Nop{}

// Nop drops every event. Embed it to implement only some of Sink.
type Nop struct{}

func (Nop) Handshake(*Handshake)      {}
func (Nop) Refused(Refusal)           {}
func (Nop) ConnOpened(string)         {}
func (Nop) ConnClosed(ConnClosed)     {}
func (Nop) BackendDial(BackendDial)   {}
func (Nop) BackendReset(BackendReset) {}
func (Nop) Reloaded(Reload)           {}
func (Nop) ACME(ACME)                 {}
func (Nop) Dependency(Dependency)     {}

// OrDiscard returns s, or Discard when s is nil.
func OrDiscard(s Sink) Sink {
	if s == nil {
		return Discard
	}
	return s
}

// Tee returns a Sink that passes every event to each of sinks in turn.
// Nil sinks are skipped.
func Tee(sinks ...Sink) Sink {
	var t tee
	for _, s := range sinks {
		if s != nil {
			t = append(t, s)
		}
	}
	if len(t) == 1 {
		return t[0]
	}
	return t
}

type tee []Sink

func (t tee) Handshake(h *Handshake) {
	for _, s := range t {
		s.Handshake(h)
	}
}

func (t tee) Refused(r Refusal) {
	for _, s := range t {
		s.Refused(r)
	}
}

func (t tee) ConnOpened(l string) {
	for _, s := range t {
		s.ConnOpened(l)
	}
}

func (t tee) ConnClosed(c ConnClosed) {
	for _, s := range t {
		s.ConnClosed(c)
	}
}

func (t tee) BackendDial(d BackendDial) {
	for _, s := range t {
		s.BackendDial(d)
	}
}

func (t tee) BackendReset(r BackendReset) {
	for _, s := range t {
		s.BackendReset(r)
	}
}

func (t tee) Reloaded(r Reload) {
	for _, s := range t {
		s.Reloaded(r)
	}
}

func (t tee) ACME(e ACME) {
	for _, s := range t {
		s.ACME(e)
	}
}

func (t tee) Dependency(d Dependency) {
	for _, s := range t {
		s.Dependency(d)
	}
}
