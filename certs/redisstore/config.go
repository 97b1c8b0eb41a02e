package redisstore

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"
)

// Config is the redis section of the configuration: where a fleet keeps
// its shared certificates, ACME account, locks and ticket keys. An empty
// URL means no Redis (each instance keeps its own state folder).
type Config struct {
	// URL is redis://, rediss:// (TLS), unix:// or redis+sentinel://;
	// see Open. Put no password in it when PasswordFile is set.
	URL string `yaml:"url"`
	// PasswordFile holds the Redis password (trailing newline ignored),
	// to keep it out of the configuration file. For a sentinel URL it is
	// the master's password (the sentinels' goes in the URL, if any).
	PasswordFile string `yaml:"password_file"`
	// Prefix starts every key; instances sharing certificates share it.
	// Default "tlsfront".
	Prefix string `yaml:"prefix"`
	// LockExpiry is how long a crashed instance's lock outlives it.
	// Default 20s.
	LockExpiry time.Duration `yaml:"lock_expiry"`
	// CAFile holds the roots that verify a rediss:// server; default the
	// system roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the client certificate a rediss:// server
	// may require (Redis asks for one unless tls-auth-clients is no).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether a Redis is configured.
func (c Config) Enabled() bool { return c.URL != "" }

// Validate checks c without connecting; its errors name the YAML keys.
func (c Config) Validate() error {
	if !c.Enabled() {
		if c.PasswordFile != "" || c.Prefix != "" || c.LockExpiry != 0 {
			return errors.New("url: required when other redis settings are given")
		}
		return nil
	}
	var errs []error
	u, err := url.Parse(c.URL)
	if err != nil {
		errs = append(errs, fmt.Errorf("url: %w", err))
	} else if client, err := newClient(c.URL, nil); err != nil {
		errs = append(errs, fmt.Errorf("url: %w", err))
	} else {
		if (c.CAFile != "" || c.CertFile != "") && !strings.HasPrefix(u.Scheme, "rediss") {
			errs = append(errs, errors.New("ca_file, cert_file: only for rediss:// urls"))
		}
		client.Close()
		if c.PasswordFile != "" && urlPassword(u) {
			errs = append(errs, errors.New("password_file: the url has a password too; keep one"))
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("cert_file, key_file: give both or neither"))
	}
	if strings.ContainsAny(c.Prefix, "{} \t\n") {
		errs = append(errs, fmt.Errorf("prefix: %q has braces or spaces", c.Prefix))
	}
	if c.LockExpiry != 0 && c.LockExpiry < 3*time.Second {
		errs = append(errs, fmt.Errorf("lock_expiry: %v is under 3s; a slow Redis round trip would lose locks", c.LockExpiry))
	}
	return errors.Join(errs...)
}

// Open opens the Storage c describes, reading the password file. It
// sends nothing to Redis; call Ping for that.
func (c Config) Open(log *slog.Logger) (*Storage, error) {
	raw := c.URL
	if c.PasswordFile != "" {
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("password_file: %w", err)
		}
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("url: %w", err)
		}
		pw := strings.TrimRight(string(b), "\r\n")
		if isSentinel(u) {
			q := u.Query()
			q.Set("password", pw)
			u.RawQuery = q.Encode()
		} else {
			u.User = url.UserPassword(u.User.Username(), pw)
		}
		raw = u.String()
	}
	tlsCfg, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	return Open(raw, Options{Prefix: c.Prefix, LockExpiry: c.LockExpiry, Log: log, TLS: tlsCfg})
}

// tlsConfig loads ca_file and the client certificate; nil when neither
// is set.
func (c Config) tlsConfig() (*tls.Config, error) {
	if c.CAFile == "" && c.CertFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file: no PEM certificate in %s", c.CAFile)
		}
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file, key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func isSentinel(u *url.URL) bool { return strings.HasSuffix(u.Scheme, "+sentinel") }

// urlPassword reports whether u carries the password PasswordFile would
// set: the master's.
func urlPassword(u *url.URL) bool {
	if isSentinel(u) {
		return u.Query().Has("password")
	}
	_, has := u.User.Password()
	return has
}
