// Package redisstore keeps certmagic's state (ACME account, certificates,
// keys, challenge tokens, locks) in Redis or Valkey, so that a fleet of
// tlsfront instances shares one copy of it: a certificate is ordered
// once, by whichever instance takes the lock first, and every other
// instance loads it from Redis.
//
// Open takes a redis://, rediss://, unix:// or redis+sentinel:// URL;
// New takes a go-redis client built by the caller. The Storage
// implements certmagic.Storage with certmagic's FileStorage semantics
// (fs.ErrNotExist for missing keys, folder-like List and Delete) and
// certmagic.Locker (and TryLocker) with expiring, refreshed locks released by
// compare-and-delete, so a crashed instance's lock frees itself after
// LockExpiry and an instance never frees a lock it no longer holds.
//
// Redis being unreachable is not fatal to an instance: certificates
// already in memory keep being served. Calls fail within the client's
// timeouts (2s by default) rather than hang, with errors matching
// ErrUnavailable and never fs.ErrNotExist, and Ping lets the caller
// report the outage. An outage orders nothing: certmagic, failing to
// load a name's certificate with an error other than fs.ErrNotExist,
// gives up managing that name (it logs "initiating certificate
// management" with the error, and does not retry), so a caller that
// starts with Redis down must Manage its names again once Ping succeeds.
// Exists reads false in an outage; an obtain that gets that far checks
// that storage works, and Lock fails, before any order. A lock whose refreshes
// fail for longer than its expiry is lost: another instance may take it,
// and Unlock says ErrLockLost.
//
// go-redis logs a few events (sentinel changes, pool warnings) through
// its own package-wide logger, redis.SetLogger; this package leaves it
// alone, for cmd/ to route once.
//
// Redis holds private keys: restrict who can reach it (ACL user,
// password, rediss:// across hosts).
package redisstore
