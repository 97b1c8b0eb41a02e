// Package limits decides which connections get in: global caps, per-client
// rates and concurrency, a penalty box for clients whose handshakes keep
// failing, and a shield in front of the backend. It knows nothing of TLS or
// of any wire protocol; the proxy asks it and acts on the answer.
package limits
