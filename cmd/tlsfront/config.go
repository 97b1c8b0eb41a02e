package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tlsfront/tlsfront/certs"
)

// config is everything tlsfront can be told, from a YAML file, environment
// variables and flags, in that order of precedence (flags win).
type config struct {
	// Admin is the address of the admin listener (health, metrics,
	// status, reload). Loopback by default: it is not for the world.
	Admin string `yaml:"admin"`
	// AdminGuard guards the admin listener; see admin.go.
	AdminGuard adminConfig `yaml:"admin_guard"`
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
	ReusePort    bool               `yaml:"reuse_port"`
	Log          logConfig          `yaml:"log"`
	Trust        certs.TrustOptions `yaml:"trust"`
	Certificates []certConfig       `yaml:"certificates"`
	Listeners    []listenerConfig   `yaml:"listeners"`

	// Sections owned by their own files.
	Limits     limitsSection    `yaml:"limits"`      // config_limits.go
	ACME       acmeConfig       `yaml:"acme"`        // config_acme.go
	Monitor    monitorConfig    `yaml:"monitor"`     // config_monitor.go
	Reload     reloadConfig     `yaml:"reload"`      // config_reload.go
	ClientAuth clientAuthConfig `yaml:"client_auth"` // config_reload.go
}

type logConfig struct {
	// Format is "text" or "json".
	Format string `yaml:"format"`
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
}

type certConfig struct {
	// Name identifies the certificate in logs and status; default its
	// file name. For a folder it prefixes the IDs of its pairs
	// (name/subfolder).
	Name string `yaml:"name"`
	Cert string `yaml:"cert"`
	// Key defaults to Cert (a combined PEM).
	Key string `yaml:"key"`
	// Dir makes the entry a folder of pairs (certs.FolderSource): without
	// cert, certbot's live/ or Kubernetes TLS secrets; with cert, a
	// pattern with one * ("*.crt") and key saying where each key is
	// ("{name}.key").
	Dir string `yaml:"dir"`
}

// folder is the entry as a folder of pairs; ok is false for one
// certificate.
func (cc certConfig) folder() (f certs.FolderSource, ok bool) {
	return certs.FolderSource{Dir: cc.Dir, Cert: cc.Cert, Key: cc.Key, Prefix: cc.Name}, cc.Dir != ""
}

// id names the certificate in logs, metrics and reload results.
func (cc certConfig) id() string {
	if cc.Name != "" {
		return cc.Name
	}
	return filepath.Base(cc.Cert)
}

type listenerConfig struct {
	Name string `yaml:"name"`
	// Kind is tcp (TLS in, TCP out), http (TLS in, HTTP/WebSocket out)
	// or redirect (plain HTTP answered with 301 to https).
	Kind    string `yaml:"kind"`
	Listen  string `yaml:"listen"`
	Backend string `yaml:"backend"`
	// Protocol is what a tcp listener carries: mqtt (default) lets
	// refusals be answered with a CONNACK; raw just closes.
	Protocol string `yaml:"protocol"`
	// MQTTMaxConnectSize is the largest MQTT CONNECT (bytes) read when
	// CONNECTs are read (client-id limit, refusals); 0: 256 KiB.
	MQTTMaxConnectSize int `yaml:"mqtt_max_connect_size"`
	// ProxyProtocol writes a PROXY header (1 or 2) to the backend.
	ProxyProtocol int `yaml:"proxy_protocol"`
	// ProxyProtocolTLS adds the SSL TLV (client certificate verified, its
	// CN, TLS version and cipher) to a version 2 PROXY header.
	ProxyProtocolTLS bool `yaml:"proxy_protocol_tls"`
	// ClientAllow lets in only the listed client certificates.
	ClientAllow clientAllowConfig `yaml:"client_allow"`
	// AcceptProxyProtocol expects a PROXY header from a trusted load
	// balancer in front.
	AcceptProxyProtocol bool          `yaml:"accept_proxy_protocol"`
	HandshakeTimeout    time.Duration `yaml:"handshake_timeout"`
	IdleTimeout         time.Duration `yaml:"idle_timeout"`
	Routes              []routeConfig `yaml:"routes"`
	WebSocket           wsConfig      `yaml:"websocket"`
	// HTTPSPort is where a redirect listener sends clients.
	HTTPSPort int `yaml:"https_port"`
}

// clientAllowConfig lists the client certificates a listener lets in,
// by subject CN, OU, DNS SAN or URI SAN (e.g. SPIFFE IDs); any one
// listed is enough. Empty lets in every certificate that verifies.
type clientAllowConfig struct {
	CN  []string `yaml:"cn"`
	OU  []string `yaml:"ou"`
	DNS []string `yaml:"dns"`
	URI []string `yaml:"uri"`
}

func (c clientAllowConfig) empty() bool { return len(c.CN)+len(c.OU)+len(c.DNS)+len(c.URI) == 0 }

type routeConfig struct {
	SNI     []string `yaml:"sni"`
	Backend string   `yaml:"backend"`
}

type wsConfig struct {
	PingInterval   time.Duration `yaml:"ping_interval"`
	MaxMessageSize int64         `yaml:"max_message_size"`
}

func defaultConfig() *config {
	return &config{
		Admin:         "127.0.0.1:9901",
		StateDir:      defaultStateDir(),
		ShutdownGrace: 10 * time.Second,
		Log:           logConfig{Format: "text", Level: "info"},
		Trust:         certs.DefaultTrust(),
		Limits:        defaultLimits(),
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
