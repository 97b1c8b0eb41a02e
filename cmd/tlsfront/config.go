package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tlsfront/tlsfront/certs"
	"github.com/tlsfront/tlsfront/certs/redisstore"
	"github.com/tlsfront/tlsfront/certs/tickets"
	"github.com/tlsfront/tlsfront/internal/adminguard"
	"github.com/tlsfront/tlsfront/internal/memtrim"
	"github.com/tlsfront/tlsfront/proxy"
)

// config is everything tlsfront can be told, from a YAML file, environment
// variables and flags, in that order of precedence (flags win).
type config struct {
	// Admin is the address of the admin listener (health, metrics,
	// status, reload). Loopback by default: it is not for the world.
	Admin string `yaml:"admin"`
	// AdminGuard guards the admin listener.
	AdminGuard adminguard.Config `yaml:"admin_guard"`
	// StateDir holds what tlsfront keeps between runs (ACME account and
	// certificates, fetched intermediates).
	StateDir      string        `yaml:"state_dir"`
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// ShutdownDelay: on SIGTERM, /readyz fails at once while tlsfront
	// keeps accepting this long, for load balancers and Kubernetes to
	// stop sending new connections; then it drains for ShutdownGrace.
	ShutdownDelay time.Duration `yaml:"shutdown_delay"`
	// ReusePort binds the listeners with SO_REUSEPORT, so that a new
	// tlsfront can bind the same ports while the old one drains.
	ReusePort bool `yaml:"reuse_port"`
	// MemoryTrim gives free heap back to the operating system after
	// bursts of connections, so RSS falls back from the peak.
	MemoryTrim   memtrim.Config         `yaml:"memory_trim"`
	Log          logConfig              `yaml:"log"`
	Trust        certs.TrustOptions     `yaml:"trust"`
	Certificates []certs.CertConfig     `yaml:"certificates"`
	Listeners    []proxy.ListenerConfig `yaml:"listeners"`

	// Redis is where a fleet shares certificates, the ACME account,
	// locks and session ticket keys; empty for the local state folder.
	Redis redisstore.Config `yaml:"redis"`
	// SessionTickets shares and rotates session ticket keys, so that a
	// client resumes on any instance and across restarts.
	SessionTickets tickets.Config `yaml:"session_tickets"`

	// Sections owned by their own files.
	Limits     limitsSection          `yaml:"limits"` // config_limits.go
	ACME       certs.ACMEConfig       `yaml:"acme"`
	Monitor    monitorSection         `yaml:"monitor"` // config_monitor.go
	Reload     reloadConfig           `yaml:"reload"`  // config_reload.go
	ClientAuth certs.ClientAuthConfig `yaml:"client_auth"`
}

type logConfig struct {
	// Format is "text" or "json".
	Format string `yaml:"format"`
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
}

func defaultConfig() *config {
	return &config{
		Admin:         "127.0.0.1:9901",
		StateDir:      defaultStateDir(),
		ShutdownGrace: 10 * time.Second,
		Log:           logConfig{Format: "text", Level: "info"},
		Trust:         certs.DefaultTrust(),
		Limits:        defaultLimits(),
		Monitor:       defaultMonitor(),
		MemoryTrim:    memtrim.DefaultConfig(),
	}
}

func defaultStateDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return d + "/tlsfront"
	}
	return "./state"
}

// loadConfigFile decodes path strictly over cfg: an unknown key is an
// error that names its line.
func loadConfigFile(path string, cfg *config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file configures nothing
		}
		return fmt.Errorf("%s: %s", path, strings.TrimPrefix(friendlyYAMLError(err), "yaml: "))
	}
	return nil
}

// friendlyYAMLError rewrites yaml.v3's Go type names into the words a
// person editing the file uses.
func friendlyYAMLError(err error) string {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var lines []string
		for _, e := range te.Errors {
			e = strings.Replace(e, "field ", "unknown key ", 1)
			if i := strings.Index(e, " not found in type "); i >= 0 {
				e = e[:i] + " (check its spelling and indentation)"
			}
			e = strings.ReplaceAll(e, "time.Duration", "duration (e.g. 10s, 5m)")
			lines = append(lines, e)
		}
		msg = strings.Join(lines, "; ")
	}
	return msg
}
