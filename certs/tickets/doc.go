// Package tickets shares TLS session ticket keys between the instances of
// a fleet, and across restarts, so that a client resumes its session on
// any instance instead of doing a full handshake (a new certificate
// check, and for mTLS clients a new client-certificate verification) each
// time a load balancer sends it elsewhere or an instance restarts. MQTT
// fleets of devices that reconnect often are the case it is for.
//
// A Manager takes its keys from a Source and puts them on every
// tls.Config given to Apply, through SetSessionTicketKeys: the first key
// encrypts new tickets, all of them decrypt. Run refreshes them when the
// Source says the next key is due. Two Sources:
//
//   - Derived computes the keys from a shared secret (a key file's
//     content) and the time: key(epoch) = HKDF-SHA256(secret, epoch),
//     epoch = now / Period. Instances with the same file agree without
//     talking to each other; nothing secret is stored anywhere but in
//     the file. Each instance also accepts the next epoch's key, so
//     clocks that differ by less than a period do not break resumption.
//   - Stored keeps random keys in a certmagic.Storage: certs/redisstore
//     for a fleet, certmagic.FileStorage for one instance that should
//     resume across restarts. The instance that finds the newest key
//     older than Period makes the next one under the storage's lock.
//
// # Ticket lifetime
//
// Go's server has no ticket lifetime setting: it announces 7 days and
// refuses tickets older than that. Key rotation bounds how long a ticket
// is accepted: a ticket made with the key of epoch e decrypts until that
// key leaves the list, Keep periods later, so between Keep×Period and
// (Keep+1)×Period. MaxAge makes the bound exact: the
// tls.Config.WrapSession and UnwrapSession hooks Apply installs write
// the issue time into every ticket's SessionState.Extra (encrypted and
// authenticated with the ticket) and, with MaxAge, refuse a ticket older
// than that with a full handshake. The hooks also make clones of an
// applied config follow key refreshes. Neither bounds a chain of resumptions: in TLS 1.3 every
// resumed connection gets a fresh ticket, so a client that comes back
// more often than MaxAge never does a full handshake. Limit that where
// it matters (client certificates that get revoked) by checking the
// peer certificates the resumed session carries.
//
// Ticket keys are secrets: whoever has them can decrypt recorded TLS
// 1.2 sessions and impersonate resumptions. Keep the key file and the
// Redis they are stored in as protected as the certificate keys.
package tickets
