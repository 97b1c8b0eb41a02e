// Package limits decides which connections get in: global caps, per-client
// rates and concurrency, a penalty box for clients whose handshakes keep
// failing, and a shield in front of the backend. It knows nothing of TLS or
// of any wire protocol; the proxy asks it and acts on the answer.
//
// The proxy's questions, in the order a connection meets them:
//
//   - AcquireSlot, before Accept: a global cap on open connections
//     (max_conns). When full, accepting pauses and new connections wait
//     in the kernel's backlog, not in memory.
//   - Admit, right after Accept: the client's penalty box (penalty),
//     its open connections (client_conns), its rate of new connections
//     (client_rate). A refusal here costs no crypto; the proxy closes the
//     socket, after Refusal.Delay if set. Ticket.Close ends the
//     connection's claim.
//   - Ticket.StartHandshake, once the client's first bytes have arrived:
//     the global cap on handshakes in flight (handshakes, refused with
//     Busy). A client that sends nothing within
//     Config.ClientHelloTimeout is closed without ever taking a slot, so
//     silent sockets cannot refuse clients that talk.
//     Ticket.Handshake gives the slot back and feeds the penalty box;
//     Ticket.HandshakeEnded gives it back without doing so, for failures
//     that are not the client's fault (no certificate for the name yet).
//   - AdmitClientID, after an MQTT CONNECT is read: the rate of CONNECTs
//     per client ID (client_id_rate).
//   - Backend, before dialling the backend: the circuit breaker
//     (backend_down) and the pace of new backend connections
//     (backend_rate). done(dialErr) feeds the breaker.
//
// A client is an IPv4 address or an IPv6 /64 (IPv4-mapped addresses count
// as IPv4).
//
// # Memory
//
// Per-client state lives in 64 shards under a global cap of
// Config.MaxClients entries, in pointer-free slabs (about 125 bytes a client; see
// BenchmarkMemory). An entry expires once it holds nothing a fresh one
// would not (no open connections, a full rate bucket, no failures or box
// to remember); expired entries are dropped as new clients arrive and by
// Run's periodic sweep.
//
// At the cap the least recently seen idle client is forgotten (counted in
// Stats.EvictedClients): first clients with nothing to remember but a rate
// bucket, then ones with failures being counted. We chose eviction over
// refusing or pooling new clients because a storm from many addresses
// must not lock out legitimate newcomers: the clients that lose their
// state are the ones that have been quiet longest, while a client
// retrying in a loop keeps its state fresh and stays tracked.
//
// Two kinds of client are never evicted. Clients with open connections,
// so that their connection counts stay right; and clients in their
// penalty box, until the box ends, or an attacker with more addresses
// than MaxClients could churn the table to let a boxed client out early.
// If the newcomer's shard holds only such clients, the newcomer is
// admitted without per-client state, on the global limits alone
// (Stats.UntrackedAdmits, Stats.ClientTableFull). Refusing it instead
// would let whoever fills the table with boxed or busy clients lock out
// every newcomer, which is worse than having no per-client limits; an
// untracked client gets exactly that, no better and no worse. Keeping
// MaxClients well above MaxConns plus the clients boxed at once makes it
// all but impossible.
package limits
