package tickets

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/caddyserver/certmagic"
)

// DefaultStorageKey is where Stored keeps the keys when StoredOptions.Key
// is empty.
const DefaultStorageKey = "tickets/keys.json"

// StoredOptions configure a Stored source.
type StoredOptions struct {
	Schedule
	// Key is the storage key of the key list; empty means
	// DefaultStorageKey. The lock taken to rotate is named after it.
	Key string
}

// Stored keeps random ticket keys in a certmagic.Storage shared by the
// fleet (certs/redisstore) or by one instance's restarts
// (certmagic.FileStorage). The first instance to find the newest key
// older than Period makes a new one while holding the storage's lock;
// the others load it. It is safe for concurrent use.
type Stored struct {
	st    certmagic.Storage
	key   string
	sched Schedule
}

// NewStored returns a Stored source on st.
func NewStored(st certmagic.Storage, o StoredOptions) (*Stored, error) {
	if st == nil {
		return nil, errors.New("tickets: storage is required")
	}
	s, err := o.Schedule.withDefaults()
	if err != nil {
		return nil, err
	}
	if o.Key == "" {
		o.Key = DefaultStorageKey
	}
	return &Stored{st: st, key: o.Key, sched: s}, nil
}

// storedState is the stored key list, newest first.
type storedState struct {
	Keys []storedKey `json:"keys"`
}

type storedKey struct {
	Created time.Time `json:"created"`
	Key     []byte    `json:"key"` // 32 bytes
}

// decodeState parses what the storage holds. It rejects keys of the
// wrong size rather than pad them.
func decodeState(b []byte) (storedState, error) {
	var st storedState
	if err := json.Unmarshal(b, &st); err != nil {
		return st, err
	}
	for _, k := range st.Keys {
		if len(k.Key) != 32 {
			return st, fmt.Errorf("a key of %d bytes, want 32", len(k.Key))
		}
	}
	return st, nil
}

// Keys returns the stored keys, newest (encrypting) first, making a new
// one when the newest is a Period old; next is when the newest will be.
func (s *Stored) Keys(ctx context.Context, now time.Time) ([]Key, time.Time, error) {
	st, err := s.load(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	if s.due(st, now) {
		if err := s.st.Lock(ctx, s.lockName()); err != nil {
			return nil, time.Time{}, fmt.Errorf("lock %s: %w", s.key, err)
		}
		st, err = s.rotateLocked(ctx, now)
		if uerr := s.st.Unlock(context.WithoutCancel(ctx), s.lockName()); uerr != nil && err == nil {
			err = fmt.Errorf("unlock %s: %w", s.key, uerr)
		}
		if err != nil {
			return nil, time.Time{}, err
		}
	}
	st.Keys = s.fresh(st.Keys, now)
	keys := make([]Key, len(st.Keys))
	for i, k := range st.Keys {
		keys[i] = Key(k.Key)
	}
	return keys, st.Keys[0].Created.Add(s.sched.Period), nil
}

func (s *Stored) lockName() string { return "tickets_" + certmagic.StorageKeys.Safe(s.key) }

func (s *Stored) due(st storedState, now time.Time) bool {
	return len(st.Keys) == 0 || !now.Before(st.Keys[0].Created.Add(s.sched.Period))
}

// load reads the key list; a missing one is empty.
func (s *Stored) load(ctx context.Context) (storedState, error) {
	b, err := s.st.Load(ctx, s.key)
	if errors.Is(err, fs.ErrNotExist) {
		return storedState{}, nil
	}
	if err != nil {
		return storedState{}, fmt.Errorf("load %s: %w", s.key, err)
	}
	st, err := decodeState(b)
	if err != nil {
		return storedState{}, fmt.Errorf("decode %s: %w", s.key, err)
	}
	return st, nil
}

// fresh keeps the newest key and, of the Keep before it, those made
// less than Keep+1 periods ago: after a fleet-wide pause the old keys are
// not revived.
func (s *Stored) fresh(keys []storedKey, now time.Time) []storedKey {
	oldest := now.Add(-time.Duration(s.sched.Keep+1) * s.sched.Period)
	out := keys[:1]
	for _, k := range keys[1:min(len(keys), s.sched.Keep+1)] {
		if k.Created.After(oldest) {
			out = append(out, k)
		}
	}
	return out
}

// rotateLocked adds a key if one is still due (another instance may
// have added it while this one waited for the lock) and drops those
// past Keep. The caller holds the storage lock.
func (s *Stored) rotateLocked(ctx context.Context, now time.Time) (storedState, error) {
	st, err := s.load(ctx)
	if err != nil {
		return st, err
	}
	if !s.due(st, now) {
		return st, nil
	}
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return st, err
	}
	st.Keys = s.fresh(append([]storedKey{{Created: now.UTC(), Key: k}}, st.Keys...), now)
	b, err := json.Marshal(st)
	if err != nil {
		return st, err
	}
	if err := s.st.Store(ctx, s.key, b); err != nil {
		return st, fmt.Errorf("store %s: %w", s.key, err)
	}
	return st, nil
}
