package adminguard

import (
	"fmt"
	"os"
	"strings"
)

// Config is the admin_guard section of the configuration: what guards
// the admin listener.
type Config struct {
	// Hosts are names the admin listener may be reached by besides IP
	// addresses and localhost: a request whose Host header names anything
	// else is refused, so a web page cannot read /status through DNS
	// rebinding.
	Hosts []string `yaml:"hosts"`
	// TokenFile holds a bearer token every request but /healthz and
	// /readyz must carry; for an admin listener beyond loopback.
	TokenFile string `yaml:"token_file"`
	// Metrics is the address of a listener that serves only /metrics,
	// with no token, for Prometheus; empty for none.
	Metrics string `yaml:"metrics"`
}

// Guard reads the token file, if any, and returns the admin listener's
// guard; its errors name the key.
func (c Config) Guard() (Guard, error) {
	g := Guard{Hosts: c.Hosts}
	if c.TokenFile == "" {
		return g, nil
	}
	tok, err := ReadTokenFile(c.TokenFile)
	if err != nil {
		return g, fmt.Errorf("admin_guard.token_file: %w", err)
	}
	if tok == "" {
		return g, fmt.Errorf("admin_guard.token_file: %s is empty; put the bearer token in it", c.TokenFile)
	}
	g.Token = tok
	return g, nil
}

// ReadTokenFile reads a bearer token, without the white space around it,
// from a file, for the admin listener and the commands that call it.
func ReadTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}
