package redisstore

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	mrand "math/rand/v2"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"
)

const (
	// DefaultPrefix is the key prefix when Options.Prefix is empty.
	DefaultPrefix = "tlsfront"
	// DefaultLockExpiry is how long a lock outlives its last refresh.
	DefaultLockExpiry = 20 * time.Second
	// DefaultLockPoll is how often a waiting Lock tries again.
	DefaultLockPoll = time.Second

	defaultTimeout = 2 * time.Second // dial, read and write, unless the URL says otherwise
	defaultRetries = 1               // go-redis's 3, with backoff, take seconds to fail
	listBatch      = 1000            // index entries per ZRANGEBYLEX reply
	minLockExpiry  = 30 * time.Millisecond
)

// ErrUnavailable is matched (errors.Is) by every error that comes from a
// failed Redis call: unreachable, timed out, or answering with an error.
// The cause is in the message but deliberately not in the error chain:
// a unix socket that is gone fails with ENOENT, which would otherwise
// match fs.ErrNotExist and make certmagic believe a stored certificate
// is missing and order a new one.
var ErrUnavailable = errors.New("redis unavailable")

// ErrLockLost is returned by Unlock when the lock was no longer ours: it
// had expired (its refreshes failed for longer than the expiry, say while
// Redis was unreachable) and may since have been taken by another
// instance, whose lock was left alone.
var ErrLockLost = errors.New("redisstore: lock expired before unlock")

// Options configure a Storage. The zero value is usable.
type Options struct {
	// Prefix starts every Redis key the Storage uses; empty means
	// DefaultPrefix. Instances that share certificates share a prefix;
	// unrelated fleets on one Redis use different ones. No braces (it
	// becomes a cluster hash tag) and no spaces.
	Prefix string
	// LockExpiry is how long a lock lives after its last refresh; a lock
	// held by an instance that died frees itself this long after.
	// Refreshes happen every third of it. Zero means DefaultLockExpiry;
	// less than 30ms is refused.
	LockExpiry time.Duration
	// LockPoll is how often Lock retries a lock held elsewhere; zero means
	// DefaultLockPoll. A random tenth is added so waiters spread out.
	LockPoll time.Duration
	// Log receives warnings about lock refreshes; nil discards them.
	Log *slog.Logger
	// TLS, for rediss:// URLs only, replaces go-redis's default (system
	// roots, no client certificate): private roots, a client certificate.
	// An empty ServerName is taken from the URL. Open only.
	TLS *tls.Config
}

// Storage is a certmagic.Storage and certmagic.Locker on Redis (or
// Valkey): every instance of a fleet that uses the same Redis and prefix
// sees the same certificates, ACME account and challenge tokens, and
// obtains each certificate once.
//
// Keys (all in one cluster hash slot, through the {prefix} hash tag):
//
//	{prefix}:v:<key>     hash: "v" the value, "m" the modification time (Unix ms)
//	{prefix}:idx         sorted set of every stored key, for List and Exists
//	{prefix}:lock:<name> string: the holder's random token, with an expiry
//
// Only plain commands and two tiny Lua scripts are used, so Valkey works
// as well as Redis. Every method is safe for concurrent use. Close stops
// the lock refreshers.
type Storage struct {
	client  redis.UniversalClient
	owned   bool // Close closes client
	prefix  string
	expiry  time.Duration
	poll    time.Duration
	log     *slog.Logger
	nowFunc func() time.Time

	mu     sync.Mutex
	held   map[string]*heldLock // locks this Storage holds, by name
	closed bool
}

// heldLock is a lock this Storage holds and the goroutine refreshing it.
type heldLock struct {
	token string
	stop  chan struct{}
	done  chan struct{}
}

var (
	_ certmagic.Storage   = (*Storage)(nil)
	_ certmagic.Locker    = (*Storage)(nil)
	_ certmagic.TryLocker = (*Storage)(nil)
)

// Open connects to the Redis that rawURL names and returns a Storage that
// owns the connection (Close closes it). It sends nothing yet; call Ping
// to check the connection. The URL forms are:
//
//	redis://[user:password@]host:port[/db][?option=value...]
//	rediss://...                                   (TLS)
//	unix://[user:password@]/path/to/socket[?db=N]
//	redis+sentinel://[user:password@]host:port[,host:port...]/master[/db][?option=value...]
//	rediss+sentinel://...                          (TLS to sentinels and master)
//
// In a sentinel URL, as in go-redis's ParseFailoverURL, the user and
// password before the hosts are the sentinels'; the master's are the
// username and password options. Options are go-redis's, in snake case
// (dial_timeout=3s, max_retries=2). Dial, read and write timeouts default
// to 2s and retries (of commands and of dials) to 1, so an unreachable
// Redis fails calls promptly instead of stalling handshakes.
func Open(rawURL string, o Options) (*Storage, error) {
	client, err := newClient(rawURL, o.TLS)
	if err != nil {
		return nil, err
	}
	s, err := New(client, o)
	if err != nil {
		client.Close()
		return nil, err
	}
	s.owned = true
	return s, nil
}

func newClient(rawURL string, tlsCfg *tls.Config) (redis.UniversalClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redisstore: parse url: %w", err)
	}
	switch u.Scheme {
	case "redis", "rediss", "unix":
		opt, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("redisstore: parse url: %w", err)
		}
		fillDefaults(u.Query(), &opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.MaxRetries, &opt.DialerRetries)
		if opt.TLSConfig, err = withTLS(opt.TLSConfig, tlsCfg); err != nil {
			return nil, err
		}
		return redis.NewClient(opt), nil
	case "redis+sentinel", "rediss+sentinel":
		furl, err := sentinelToFailoverURL(u)
		if err != nil {
			return nil, err
		}
		opt, err := redis.ParseFailoverURL(furl)
		if err != nil {
			return nil, fmt.Errorf("redisstore: parse sentinel url: %w", err)
		}
		fillDefaults(u.Query(), &opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.MaxRetries, &opt.DialerRetries)
		if opt.TLSConfig, err = withTLS(opt.TLSConfig, tlsCfg); err != nil {
			return nil, err
		}
		return redis.NewFailoverClient(opt), nil
	}
	return nil, fmt.Errorf("redisstore: url scheme %q: want redis, rediss, unix, redis+sentinel or rediss+sentinel", u.Scheme)
}

// fillDefaults sets the timeouts and retries that the URL left unset, for
// either kind of client's options.
func fillDefaults(q url.Values, dial, read, write *time.Duration, retries, dialerRetries *int) {
	for _, d := range []*time.Duration{dial, read, write} {
		*d = orDefault(*d)
	}
	if !q.Has("max_retries") {
		*retries = defaultRetries
	}
	if !q.Has("dialer_retries") {
		*dialerRetries = defaultRetries
	}
}

// withTLS applies the caller's TLS settings over go-redis's, which
// exist only for a rediss URL.
func withTLS(fromURL, mine *tls.Config) (*tls.Config, error) {
	if mine == nil {
		return fromURL, nil
	}
	if fromURL == nil {
		return nil, errors.New("redisstore: TLS settings need a rediss:// url")
	}
	c := mine.Clone()
	if c.ServerName == "" {
		c.ServerName = fromURL.ServerName
	}
	if c.MinVersion == 0 {
		c.MinVersion = tls.VersionTLS12
	}
	return c, nil
}

// sentinelToFailoverURL turns our sentinel URL, with the sentinels as a
// comma-separated host list and the master name as the first path
// segment, into the form go-redis's ParseFailoverURL takes: one host,
// the others as addr parameters, the master as master_name.
func sentinelToFailoverURL(u *url.URL) (string, error) {
	hosts := strings.Split(u.Host, ",")
	if u.Host == "" || slices.Contains(hosts, "") {
		return "", errors.New("redisstore: sentinel url needs host:port[,host:port...]")
	}
	segs := strings.Split(strings.Trim(u.Path, "/"), "/")
	if segs[0] == "" || len(segs) > 2 {
		return "", errors.New("redisstore: sentinel url path must be /master-name or /master-name/db")
	}
	q := u.Query()
	if q.Has("master_name") || q.Has("addr") {
		return "", errors.New("redisstore: sentinel url: give the master in the path and the sentinels in the host, not as master_name or addr")
	}
	q.Set("master_name", segs[0])
	for _, h := range hosts[1:] {
		q.Add("addr", h)
	}
	out := *u
	out.Scheme = strings.TrimSuffix(u.Scheme, "+sentinel")
	out.Host = hosts[0]
	out.Path = ""
	if len(segs) == 2 {
		if _, err := strconv.Atoi(segs[1]); err != nil {
			return "", fmt.Errorf("redisstore: sentinel url: database %q is not a number", segs[1])
		}
		out.Path = "/" + segs[1]
	}
	out.RawPath = ""
	out.RawQuery = q.Encode()
	return out.String(), nil
}

// redisErr wraps an error from a Redis call for op. Context errors keep
// their chain, so callers can tell their own cancellation; anything else
// becomes ErrUnavailable, see there.
func redisErr(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("redisstore: %s: %w", op, err)
	}
	return fmt.Errorf("redisstore: %s: %w: %v", op, ErrUnavailable, err)
}

func orDefault(d time.Duration) time.Duration {
	if d == 0 {
		return defaultTimeout
	}
	return d
}

// New returns a Storage on client, which the caller keeps owning: Close
// does not close it. Use it for client options Open has no URL form for.
// It checks o and sends nothing.
func New(client redis.UniversalClient, o Options) (*Storage, error) {
	if strings.ContainsAny(o.Prefix, "{}") || strings.IndexFunc(o.Prefix, unicode.IsSpace) >= 0 {
		return nil, fmt.Errorf("redisstore: prefix %q: no braces or spaces", o.Prefix)
	}
	if o.LockExpiry != 0 && o.LockExpiry < minLockExpiry {
		return nil, fmt.Errorf("redisstore: lock expiry %v: at least %v", o.LockExpiry, minLockExpiry)
	}
	if o.LockPoll < 0 {
		return nil, errors.New("redisstore: lock poll must not be negative")
	}
	s := &Storage{
		client:  client,
		prefix:  o.Prefix,
		expiry:  o.LockExpiry,
		poll:    o.LockPoll,
		log:     o.Log,
		nowFunc: time.Now,
		held:    map[string]*heldLock{},
	}
	if s.prefix == "" {
		s.prefix = DefaultPrefix
	}
	if s.expiry <= 0 {
		s.expiry = DefaultLockExpiry
	}
	if s.poll <= 0 {
		s.poll = DefaultLockPoll
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// String names the storage for logs, without credentials.
func (s *Storage) String() string { return "redis:" + s.prefix }

// Ping checks that Redis answers. An error means the fleet's shared state
// is unreachable: certificates already in memory keep being served, but
// nothing new can be obtained, loaded or coordinated until it answers.
func (s *Storage) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx).Err(); err != nil {
		return redisErr("ping", err)
	}
	return nil
}

// Close releases the locks this Storage still holds, stops their
// refreshers and, if Open made the client, closes it. Lock fails after
// Close.
func (s *Storage) Close() error {
	s.mu.Lock()
	s.closed = true
	held := s.held
	s.held = map[string]*heldLock{}
	s.mu.Unlock()
	for name, h := range held {
		close(h.stop)
		<-h.done
		ctx, cancel := context.WithTimeout(context.Background(), defaultTimeout)
		unlockScript.Run(ctx, s.client, []string{s.lockKey(name)}, h.token)
		cancel()
	}
	if s.owned {
		return s.client.Close()
	}
	return nil
}

func (s *Storage) tag() string                { return "{" + s.prefix + "}" }
func (s *Storage) valueKey(key string) string { return s.tag() + ":v:" + key }
func (s *Storage) indexKey() string           { return s.tag() + ":idx" }
func (s *Storage) lockKey(name string) string { return s.tag() + ":lock:" + name }

// normKey drops the slashes around a key, as certmagic's FileStorage
// does by joining paths.
func normKey(key string) string { return strings.Trim(key, "/") }

// Store writes value at key, creating or replacing it.
func (s *Storage) Store(ctx context.Context, key string, value []byte) error {
	key = normKey(key)
	if key == "" {
		return errors.New("redisstore: store: empty key")
	}
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, s.valueKey(key), "v", value, "m", s.nowFunc().UnixMilli())
		p.ZAdd(ctx, s.indexKey(), redis.Z{Member: key})
		return nil
	})
	if err != nil {
		return redisErr("store "+key, err)
	}
	return nil
}

// Load returns the value at key, or an error matching fs.ErrNotExist when
// there is none.
func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	key = normKey(key)
	v, err := s.client.HGet(ctx, s.valueKey(key), "v").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("redisstore: load %s: %w", key, fs.ErrNotExist)
	}
	if err != nil {
		return nil, redisErr("load "+key, err)
	}
	return v, nil
}

// Delete removes key and, as for a folder, every key under "key/". A
// missing key is not an error.
func (s *Storage) Delete(ctx context.Context, key string) error {
	key = normKey(key)
	if key != "" {
		_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, s.valueKey(key))
			p.ZRem(ctx, s.indexKey(), key)
			return nil
		})
		if err != nil {
			return redisErr("delete "+key, err)
		}
	}
	// Each round removes what it listed, so the next starts at the front
	// again; a round that lists nothing ends it. Keys added meanwhile by
	// another instance can make it go on, hence the bound.
	for range 1 << 20 {
		keys, err := s.rangeIndex(ctx, key, "", listBatch)
		if err != nil {
			return redisErr("delete "+key, err)
		}
		if len(keys) == 0 {
			return nil
		}
		_, err = s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
			vk := make([]string, len(keys))
			members := make([]any, len(keys))
			for i, k := range keys {
				vk[i], members[i] = s.valueKey(k), k
			}
			p.Del(ctx, vk...)
			p.ZRem(ctx, s.indexKey(), members...)
			return nil
		})
		if err != nil {
			return redisErr("delete "+key, err)
		}
	}
	return fmt.Errorf("redisstore: delete %s: keys keep appearing under it", key)
}

// rangeIndex returns up to n stored keys under dir ("" for all), in
// byte order, starting after the key after ("" for the first).
func (s *Storage) rangeIndex(ctx context.Context, dir, after string, n int64) ([]string, error) {
	min, max := "-", "+"
	if dir != "" {
		// "0" is the byte after "/": [dir/, dir0) holds exactly the
		// keys that start with "dir/".
		min, max = "["+dir+"/", "("+dir+"0"
	}
	if after != "" {
		min = "(" + after
	}
	return s.client.ZRangeByLex(ctx, s.indexKey(), &redis.ZRangeBy{Min: min, Max: max, Count: n}).Result()
}

// Exists reports whether key is stored, or is a folder: the start of
// other keys followed by "/". Errors (Redis unreachable) read as false.
func (s *Storage) Exists(ctx context.Context, key string) bool {
	key = normKey(key)
	n, err := s.client.Exists(ctx, s.valueKey(key)).Result()
	if err == nil && n > 0 {
		return true
	}
	if err != nil {
		return false
	}
	under, err := s.rangeIndex(ctx, key, "", 1)
	return err == nil && len(under) > 0
}

// List returns the keys under path, as certmagic's FileStorage does:
// with recursive, every key and every folder below path at any depth;
// otherwise only path's direct children, keys and folders alike. Each
// is returned once, as path + "/" + the rest, in byte order. A path that
// is neither a key nor a folder gives an error matching fs.ErrNotExist.
func (s *Storage) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	dir := normKey(path)
	seen := map[string]struct{}{}
	var out []string
	add := func(k string) {
		if _, ok := seen[k]; !ok {
			seen[k] = struct{}{}
			out = append(out, k)
		}
	}
	join := func(rel string) string {
		if dir == "" {
			return rel
		}
		return dir + "/" + rel
	}
	after := ""
	for {
		keys, err := s.rangeIndex(ctx, dir, after, listBatch)
		if err != nil {
			return nil, redisErr("list "+dir, err)
		}
		for _, k := range keys {
			rel := k
			if dir != "" {
				rel = k[len(dir)+1:]
			}
			if !recursive {
				first, _, _ := strings.Cut(rel, "/")
				add(join(first))
				continue
			}
			// Every folder on the way down, then the key.
			for i := range len(rel) {
				if rel[i] == '/' {
					add(join(rel[:i]))
				}
			}
			add(k)
		}
		if len(keys) < listBatch {
			break
		}
		after = keys[len(keys)-1]
	}
	if len(out) == 0 && dir != "" {
		// A stored key is a file with nothing under it.
		n, err := s.client.Exists(ctx, s.valueKey(dir)).Result()
		if err != nil {
			return nil, redisErr("list "+dir, err)
		}
		if n == 0 {
			return nil, fmt.Errorf("redisstore: list %s: %w", dir, fs.ErrNotExist)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Stat describes key: a stored key is terminal, with its size and the
// time it was last stored; a folder is not terminal and has no time or
// size. A missing key gives an error matching fs.ErrNotExist.
func (s *Storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	key = normKey(key)
	var mod *redis.StringCmd
	var size *redis.IntCmd
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		mod = p.HGet(ctx, s.valueKey(key), "m")
		size = p.HStrLen(ctx, s.valueKey(key), "v")
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return certmagic.KeyInfo{}, redisErr("stat "+key, err)
	}
	if ms, err := mod.Int64(); err == nil {
		return certmagic.KeyInfo{Key: key, Modified: time.UnixMilli(ms), Size: size.Val(), IsTerminal: true}, nil
	}
	under, err := s.rangeIndex(ctx, key, "", 1)
	if err != nil {
		return certmagic.KeyInfo{}, redisErr("stat "+key, err)
	}
	if len(under) == 0 {
		return certmagic.KeyInfo{}, fmt.Errorf("redisstore: stat %s: %w", key, fs.ErrNotExist)
	}
	return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
}

// unlockScript deletes the lock only if it still holds our token, so an
// instance whose lock expired never frees the next holder's.
var unlockScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0`)

// refreshScript extends the lock only if it still holds our token.
var refreshScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0`)

// Lock takes the named lock, waiting while another holder (this
// instance or another) has it, until ctx is done. A lock lasts
// LockExpiry and is refreshed every third of that until Unlock, so a
// crashed holder's lock frees itself. An error from Redis ends the
// wait at once: certmagic then retries the whole operation later.
func (s *Storage) Lock(ctx context.Context, name string) error {
	// Bounded by ctx; the count only guards against a ctx that never
	// ends on a lock that is never freed (a year at one try a second).
	for range 1 << 25 {
		ok, err := s.TryLock(ctx, name)
		if err != nil || ok {
			return err
		}
		wait := time.NewTimer(s.poll + mrand.N(s.poll/10+1))
		select {
		case <-ctx.Done():
			wait.Stop()
			return fmt.Errorf("redisstore: lock %s: %w", name, ctx.Err())
		case <-wait.C:
		}
	}
	return fmt.Errorf("redisstore: lock %s: gave up waiting", name)
}

// TryLock takes the named lock if it is free and reports whether it did,
// without waiting (certmagic.TryLocker: certmagic then skips work another
// instance is doing, such as fetching renewal info). A lock taken is
// held, refreshed and released as one from Lock.
func (s *Storage) TryLock(ctx context.Context, name string) (bool, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return false, fmt.Errorf("redisstore: lock %s: storage closed", name)
	}
	token, err := newToken()
	if err != nil {
		return false, fmt.Errorf("redisstore: lock %s: %w", name, err)
	}
	ok, err := s.client.SetNX(ctx, s.lockKey(name), token, s.expiry).Result()
	if err != nil {
		return false, redisErr("lock "+name, err)
	}
	if !ok {
		return false, nil
	}
	if err := s.startRefresh(name, token); err != nil {
		// Closed meanwhile: nothing would refresh or release it.
		unlockScript.Run(context.WithoutCancel(ctx), s.client, []string{s.lockKey(name)}, token)
		return false, fmt.Errorf("redisstore: lock %s: %w", name, err)
	}
	return true, nil
}

func newToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// startRefresh records the lock as held and starts its refresher, which
// runs until Unlock or Close stops it. It fails after Close.
func (s *Storage) startRefresh(name, token string) error {
	h := &heldLock{token: token, stop: make(chan struct{}), done: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("storage closed")
	}
	if old := s.held[name]; old != nil {
		// Another caller in this process held it and let it expire,
		// which is how this one got it: its refresher refreshes
		// nothing any more. Whoever finds a lock in the map removes
		// it before stopping it, so this is the only close.
		close(old.stop)
	}
	s.held[name] = h
	s.mu.Unlock()
	go func() {
		defer close(h.done)
		tick := time.NewTicker(s.expiry / 3)
		defer tick.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), s.expiry/3)
			n, err := refreshScript.Run(ctx, s.client, []string{s.lockKey(name)}, token, s.expiry.Milliseconds()).Int64()
			cancel()
			switch {
			case err != nil:
				// Try again at the next tick; the lock survives two
				// missed refreshes.
				s.log.Warn("lock refresh failed", "lock", name, "err", err)
			case n == 0:
				s.log.Warn("lock lost", "lock", name)
			}
		}
	}()
	return nil
}

// Unlock releases the named lock, which this Storage must hold. The lock
// is deleted only if it is still ours: when it had expired meanwhile it
// is left to whoever holds it now, and ErrLockLost is returned.
func (s *Storage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	h, ok := s.held[name]
	delete(s.held, name)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("redisstore: unlock %s: not locked by this instance", name)
	}
	close(h.stop)
	<-h.done
	n, err := unlockScript.Run(ctx, s.client, []string{s.lockKey(name)}, h.token).Int64()
	if err != nil {
		return redisErr("unlock "+name, err)
	}
	if n == 0 {
		return fmt.Errorf("redisstore: unlock %s: %w", name, ErrLockLost)
	}
	return nil
}
