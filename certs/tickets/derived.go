package tickets

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"time"
)

// MinSecret is the shortest secret Derived accepts, in bytes.
const MinSecret = 32

// Schedule says how often keys change and how many old ones still
// decrypt.
type Schedule struct {
	// Period is how long one key encrypts new tickets; zero means 1 hour.
	Period time.Duration
	// Keep is how many previous keys still decrypt tickets; zero means 2.
	// Tickets are accepted for Keep to Keep+1 periods after issue.
	Keep int
}

func (s Schedule) withDefaults() (Schedule, error) {
	if s.Period == 0 {
		s.Period = time.Hour
	}
	if s.Keep == 0 {
		s.Keep = 2
	}
	if s.Period < time.Second {
		return s, errors.New("tickets: period must be at least a second")
	}
	if s.Keep < 0 || s.Keep > 100 {
		return s, errors.New("tickets: keep must be between 1 and 100")
	}
	return s, nil
}

// Derived computes ticket keys from a secret shared by the fleet (the
// content of a key file, at least MinSecret random bytes) and the time,
// so instances agree without talking. See the package documentation.
// It is safe for concurrent use.
type Derived struct {
	secret []byte
	sched  Schedule
}

// NewDerived returns a Derived source. secret is copied.
func NewDerived(secret []byte, s Schedule) (*Derived, error) {
	if len(secret) < MinSecret {
		return nil, errors.New("tickets: the ticket key secret must be at least 32 bytes (e.g. head -c 48 /dev/urandom > ticket.key)")
	}
	s, err := s.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Derived{secret: append([]byte(nil), secret...), sched: s}, nil
}

// Keys returns the key of now's epoch first, then the next epoch's (for
// instances whose clocks run ahead), then the Keep previous ones; next is
// the start of the next epoch.
func (d *Derived) Keys(_ context.Context, now time.Time) ([]Key, time.Time, error) {
	p := int64(d.sched.Period)
	e := now.UnixNano() / p
	if now.UnixNano() < 0 && now.UnixNano()%p != 0 {
		e-- // floor, not truncation, before 1970
	}
	keys := make([]Key, 0, d.sched.Keep+2)
	for _, ep := range append([]int64{e, e + 1}, olderEpochs(e, d.sched.Keep)...) {
		k, err := d.key(ep)
		if err != nil {
			return nil, time.Time{}, err
		}
		keys = append(keys, k)
	}
	return keys, time.Unix(0, (e+1)*p), nil
}

func olderEpochs(e int64, keep int) []int64 {
	out := make([]int64, keep)
	for i := range out {
		out[i] = e - 1 - int64(i)
	}
	return out
}

// key is HKDF-SHA256 of the secret with the epoch, and the period (so
// changing the period never reuses a key for another epoch), as info.
func (d *Derived) key(epoch int64) (Key, error) {
	info := []byte("tlsfront session ticket key v1")
	info = binary.BigEndian.AppendUint64(info, uint64(d.sched.Period))
	info = binary.BigEndian.AppendUint64(info, uint64(epoch))
	b, err := hkdf.Key(sha256.New, d.secret, nil, string(info), 32)
	if err != nil {
		return Key{}, err
	}
	return Key(b), nil
}
