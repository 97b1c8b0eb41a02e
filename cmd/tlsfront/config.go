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
	"github.com/tlsfront/tlsfront/certs/redisstore"
	"github.com/tlsfront/tlsfront/certs/tickets"
	"github.com/tlsfront/tlsfront/internal/memtrim"
	"github.com/tlsfront/tlsfront/limits"
	"github.com/tlsfront/tlsfront/proxy"
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
	ReusePort bool `yaml:"reuse_port"`
	// MemoryTrim gives free heap back to the operating system after
	// bursts of connections, so RSS falls back from the peak.
	MemoryTrim   memtrim.Config     `yaml:"memory_trim"`
	Log          logConfig          `yaml:"log"`
	Trust        certs.TrustOptions `yaml:"trust"`
	Certificates []certConfig       `yaml:"certificates"`
	Listeners    []listenerConfig   `yaml:"listeners"`

	// Redis is where a fleet shares certificates, the ACME account,
	// locks and session ticket keys; empty for the local state folder.
	Redis redisstore.Config `yaml:"redis"`
	// SessionTickets shares and rotates session ticket keys, so that a
	// client resumes on any instance and across restarts.
	SessionTickets tickets.Config `yaml:"session_tickets"`

	// Sections owned by their own files.
	Limits     limitsSection    `yaml:"limits"` // config_limits.go
	ACME       certs.ACMEConfig `yaml:"acme"`
	Monitor    monitorSection   `yaml:"monitor"`     // config_monitor.go
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
	// AcceptProxyProtocol reads a PROXY header from the trusted load
	// balancers in ProxyProtocolFrom; a header from anyone else is
	// refused.
	AcceptProxyProtocol bool            `yaml:"accept_proxy_protocol"`
	ProxyProtocolFrom   limits.Networks `yaml:"proxy_protocol_from"`
	HandshakeTimeout    time.Duration   `yaml:"handshake_timeout"`
	// ParkAfter: a tcp connection direction quiet this long gives back
	// its goroutine and waits in the shared readiness watcher (0: 1s;
	// negative: never).
	ParkAfter   time.Duration `yaml:"park_after"`
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	Routes      []routeConfig `yaml:"routes"`
	WebSocket   wsConfig      `yaml:"websocket"`
	// HTTPSPort is where a redirect listener sends clients.
	HTTPSPort int `yaml:"https_port"`
	// TLS is what the listener accepts of clients' TLS stacks.
	TLS tlsConfig `yaml:"tls"`
	// PreserveHost (http listeners) sends the client's Host to the
	// backend; false sends the backend's address. Default true.
	PreserveHost *bool `yaml:"preserve_host"`
	// TrustedProxies (http listeners) are the CIDRs of peers whose
	// X-Forwarded-For and Forwarded are appended to rather than replaced.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// ForwardedHeader (http listeners) also sends RFC 7239 Forwarded.
	ForwardedHeader bool `yaml:"forwarded_header"`
	// MaxHeaderBytes (http listeners) caps a request's headers, HTTP/1.1
	// and HTTP/2 alike (0: 64 KiB).
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// ClientStreams (http listeners) caps one client's requests in
	// flight, HTTP/2 streams included (0: 100; negative: off).
	ClientStreams int `yaml:"client_streams"`
	// MinBodyRate (http listeners) is the least rate, in bytes per
	// second, a request body must keep after 10 s (0: 1024; negative:
	// off).
	MinBodyRate int64 `yaml:"min_body_rate"`
}

// tlsConfig is a listener's TLS policy as written: a profile and
// overrides, in the names operators use. validate turns it into policy.
type tlsConfig struct {
	// Profile is modern (default), intermediate or legacy.
	Profile      string   `yaml:"profile"`
	MinVersion   string   `yaml:"min_version"`
	MaxVersion   string   `yaml:"max_version"`
	CipherSuites []string `yaml:"cipher_suites"`
	Groups       []string `yaml:"groups"`
	// PostQuantum offers the X25519MLKEM768 hybrid; default true.
	PostQuantum *bool `yaml:"post_quantum"`

	policy proxy.TLSPolicy
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
	SNI []string `yaml:"sni"`
	// Host and PathPrefix (http listeners) also match the Host header
	// and the start of the path; see proxy.HTTPRoute for precedence.
	Host       []string `yaml:"host"`
	PathPrefix string   `yaml:"path_prefix"`
	Backend    string   `yaml:"backend"`
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
