package tickets

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/caddyserver/certmagic"
)

// Config is the session_tickets section of the configuration. With
// neither key_file nor shared set, Go's own per-process ticket keys are
// used: resumption works only on the instance that issued the ticket,
// and not across its restarts.
type Config struct {
	// KeyFile holds the fleet's ticket secret (at least 32 bytes, e.g.
	// head -c 48 /dev/urandom). Every instance reads the same file and
	// derives the same keys, talking to no one. Not readable by others.
	KeyFile string `yaml:"key_file"`
	// Shared keeps random keys in the certificate storage (Redis for a
	// fleet, the state folder for one instance) instead.
	Shared bool `yaml:"shared"`
	// RotateEvery is how long one key encrypts new tickets. Default 1h.
	RotateEvery time.Duration `yaml:"rotate_every"`
	// Keep is how many previous keys still decrypt tickets. Default 2.
	Keep int `yaml:"keep"`
	// MaxAge refuses tickets older than this; 0 leaves it to rotation
	// (tickets live keep to keep+1 rotations).
	MaxAge time.Duration `yaml:"max_age"`
}

// Enabled reports whether shared ticket keys are configured.
func (c Config) Enabled() bool { return c.KeyFile != "" || c.Shared }

// Validate checks c; its errors name the YAML keys.
func (c Config) Validate() error {
	var errs []error
	if c.KeyFile != "" && c.Shared {
		errs = append(errs, errors.New("key_file and shared: choose one"))
	}
	if c.RotateEvery != 0 && c.RotateEvery < time.Minute {
		errs = append(errs, fmt.Errorf("rotate_every: %v is under a minute", c.RotateEvery))
	}
	if c.Keep < 0 || c.Keep > 100 {
		errs = append(errs, fmt.Errorf("keep: %d is not between 1 and 100", c.Keep))
	}
	if c.MaxAge < 0 {
		errs = append(errs, errors.New("max_age: must not be negative"))
	}
	return errors.Join(errs...)
}

// NewSource returns the Source c describes: Derived from the key file,
// or Stored on st (the certificate storage). It reads the key file. It
// returns nil, nil when c is not Enabled.
func (c Config) NewSource(st certmagic.Storage) (Source, error) {
	sched := Schedule{Period: c.RotateEvery, Keep: c.Keep}
	switch {
	case c.KeyFile != "":
		secret, err := ReadKeyFile(c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("key_file: %w", err)
		}
		return NewDerived(secret, sched)
	case c.Shared:
		return NewStored(st, StoredOptions{Schedule: sched})
	}
	return nil, nil
}

// ReadKeyFile reads a ticket secret and refuses one that is too short or
// that other users may read (on systems with Unix permissions).
func ReadKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by group or others (mode %v); chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) < MinSecret {
		return nil, fmt.Errorf("%s holds %d bytes, want at least %d random bytes", path, len(b), MinSecret)
	}
	return b, nil
}
