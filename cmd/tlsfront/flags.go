package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tlsfront/tlsfront/certs"
	"github.com/tlsfront/tlsfront/limits"
	"github.com/tlsfront/tlsfront/proxy"
)

// envPrefix: every flag --some-name can also be set as TLSFRONT_SOME_NAME,
// which is how a container is usually configured.
const envPrefix = "TLSFRONT_"

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// sidecarFlags describe the common one-backend case without a file.
type sidecarFlags struct {
	listen, backend, kind string
	wsListen, wsBackend   string
	cert, key             repeatedFlag
	proxyProtocol         int
	// Per-listener options, for both sidecar listeners.
	proxyFrom          limits.Networks
	handshakeTimeout   time.Duration
	idleTimeout        time.Duration
	wsPing             time.Duration
	wsMaxMessage       int64
	mqttMaxConnectSize int
	tls                proxy.TLSPolicyConfig
}

// repeatedFlag collects every value of a repeatable flag, in order. Values
// from the environment are replaced by the first one on the command line,
// as flags win over the environment.
type repeatedFlag struct {
	values  []string
	fromEnv bool
}

func (r *repeatedFlag) String() string { return strings.Join(r.values, " ") }

func (r *repeatedFlag) Set(v string) error {
	if r.fromEnv {
		r.values, r.fromEnv = nil, false
	}
	r.values = append(r.values, v)
	return nil
}

func (s *sidecarFlags) registerListeners(fs *flag.FlagSet) {
	fs.StringVar(&s.listen, "listen", "", "TLS `address` to listen on, e.g. :8883 (adds a listener)")
	fs.StringVar(&s.backend, "backend", "", "plaintext backend for --listen: host:port or unix:/path")
	fs.StringVar(&s.kind, "kind", "tcp", "kind of --listen: tcp (e.g. MQTT) or http (HTTP and WebSocket)")
	fs.StringVar(&s.wsListen, "ws-listen", "", "TLS `address` for WebSocket/HTTP clients, e.g. :8084 (adds an http listener)")
	fs.StringVar(&s.wsBackend, "ws-backend", "", "plaintext HTTP/WebSocket backend for --ws-listen")
	fs.IntVar(&s.proxyProtocol, "proxy-protocol", 0, "send a PROXY protocol header (1 or 2) to the backends of --listen and --ws-listen")
	fs.Var(&s.proxyFrom, "accept-proxy-protocol-from", "comma-separated `networks` of load balancers in front whose PROXY header names the client (turns on accept_proxy_protocol); a header from anyone else is refused")
	fs.DurationVar(&s.handshakeTimeout, "handshake-timeout", 0, "bound on a TLS handshake (0: 10s)")
	fs.DurationVar(&s.idleTimeout, "idle-timeout", 0, "close a --listen connection with no traffic either way for this long (0: never; MQTT keepalive does the job)")
	fs.DurationVar(&s.wsPing, "ws-ping-interval", 0, "ping idle WebSocket clients of --ws-listen this often (0: 30s; negative: never)")
	fs.Int64Var(&s.wsMaxMessage, "ws-max-message-size", 0, "largest WebSocket message from a client, in bytes (0: 16 MiB)")
	fs.IntVar(&s.mqttMaxConnectSize, "mqtt-max-connect-size", 0, "largest MQTT CONNECT read when tlsfront reads it (client-id limit, refusals), in bytes (0: 256 KiB)")
	fs.StringVar(&s.tls.Profile, "tls-profile", "", "TLS `profile` of the sidecar listeners: modern (default: TLS 1.2+, ECDHE AEAD), intermediate (adds ECDHE CBC suites) or legacy (down to TLS 1.0, RSA key exchange) for device fleets that cannot be upgraded")
	fs.StringVar(&s.tls.MinVersion, "tls-min-version", "", "lowest TLS `version` of the sidecar listeners (1.0-1.3), over the profile's")
}

func (s *sidecarFlags) registerCertificates(fs *flag.FlagSet) {
	fs.Var(&s.cert, "cert", "PEM certificate `file`, leaf first (adds a certificate; repeatable, e.g. an ECDSA and an RSA one)")
	fs.Var(&s.key, "key", "PEM private key `file` for the --cert in the same position (one per --cert, or none when each cert file holds its key)")
}

// envDone marks the values set so far as the environment's.
func (s *sidecarFlags) envDone() {
	s.cert.fromEnv = len(s.cert.values) > 0
	s.key.fromEnv = len(s.key.values) > 0
}

func (s *sidecarFlags) apply(cfg *config) error {
	listener := func(name, kind, listen, backend string) proxy.ListenerConfig {
		lc := proxy.ListenerConfig{Name: name, Kind: kind, Listen: listen, Backend: backend, ProxyProtocol: s.proxyProtocol,
			AcceptProxyProtocol: len(s.proxyFrom) > 0, ProxyProtocolFrom: s.proxyFrom,
			HandshakeTimeout: s.handshakeTimeout, WebSocket: proxy.WebSocketConfig{PingInterval: s.wsPing, MaxMessageSize: s.wsMaxMessage},
			TLS: proxy.TLSPolicyConfig{Profile: s.tls.Profile, MinVersion: s.tls.MinVersion}}
		if kind == "tcp" {
			lc.IdleTimeout, lc.MQTTMaxConnectSize = s.idleTimeout, s.mqttMaxConnectSize
		}
		return lc
	}
	if s.listen != "" || s.backend != "" {
		cfg.Listeners = append(cfg.Listeners, listener("main", s.kind, s.listen, s.backend))
	}
	if s.wsListen != "" || s.wsBackend != "" {
		cfg.Listeners = append(cfg.Listeners, listener("ws", "http", s.wsListen, s.wsBackend))
	}
	certFiles, keys := s.cert.values, s.key.values
	if len(keys) > 0 && len(keys) != len(certFiles) {
		return fmt.Errorf("--key given %d times for %d --cert: give one --key per --cert, in the same order, or none when each certificate file also holds its key", len(keys), len(certFiles))
	}
	for i, c := range certFiles {
		cc := certs.CertConfig{Name: "main", Cert: c}
		if i > 0 {
			cc.Name = fmt.Sprintf("main-%d", i+1)
		}
		if len(keys) > 0 {
			cc.Key = keys[i]
		}
		cfg.Certificates = append(cfg.Certificates, cc)
	}
	return nil
}

// parseConfig builds the configuration from a file (--config), then
// TLSFRONT_* environment variables, then flags, and validates it.
func parseConfig(name string, args []string, stderr io.Writer) (*config, error) {
	cfg := defaultConfig()
	// The file is read first so that flags, which bind to the config's
	// fields, override it.
	path := configPathFromArgs(args)
	if path == "" {
		path = os.Getenv(envName("config"))
	}
	if path != "" {
		if err := loadConfigFile(path, cfg); err != nil {
			return nil, &usageError{err}
		}
	}
	c := newCLI(name, stderr)
	fs := c.fs
	var sc sidecarFlags
	c.section("General", func(fs *flag.FlagSet) {
		fs.String("config", path, "YAML configuration `file`")
		fs.StringVar(&cfg.StateDir, "state-dir", cfg.StateDir, "`folder` for ACME state and fetched intermediates")
		fs.DurationVar(&cfg.ShutdownGrace, "shutdown-grace", cfg.ShutdownGrace, "on SIGTERM, how long open connections may finish before they are closed")
		fs.DurationVar(&cfg.ShutdownDelay, "shutdown-delay", cfg.ShutdownDelay, "on SIGTERM, fail /readyz at once but keep accepting this long before draining (e.g. 5s behind a load balancer or in Kubernetes)")
		fs.BoolVar(&cfg.ReusePort, "reuse-port", cfg.ReusePort, "bind listeners with SO_REUSEPORT, so a new tlsfront can take the ports while the old one drains")
		fs.BoolVar(&cfg.MemoryTrim.Enabled, "memory-trim", cfg.MemoryTrim.Enabled, "give free heap back to the operating system once a burst of connections is over; --memory-trim=false leaves it to Go's scavenger")
		fs.StringVar(&cfg.Log.Format, "log-format", cfg.Log.Format, "log format: text or json")
		fs.StringVar(&cfg.Log.Level, "log-level", cfg.Log.Level, "log level: debug, info, warn or error")
	})
	c.section("Listeners (the one-backend sidecar; more in the listeners section of --config)", sc.registerListeners)
	c.section("Certificates", func(fs *flag.FlagSet) {
		sc.registerCertificates(fs)
		cfg.Reload.registerFlags(fs)
	})
	c.section("Trust", func(fs *flag.FlagSet) { bindTrustFlags(fs, &cfg.Trust) })
	c.section("Client certificates (mTLS)", func(fs *flag.FlagSet) { bindClientAuthFlags(fs, &cfg.ClientAuth) })
	c.section("ACME", func(fs *flag.FlagSet) { registerACMEFlags(fs, &cfg.ACME) })
	c.section("Fleet (shared state, session resumption)", func(fs *flag.FlagSet) {
		fs.StringVar(&cfg.Redis.URL, "redis", cfg.Redis.URL, "`URL` of the Redis (or Valkey) a fleet shares certificates, ACME state, locks and ticket keys in: redis://, rediss://, unix:// or redis+sentinel://")
		fs.StringVar(&cfg.Redis.PasswordFile, "redis-password-file", cfg.Redis.PasswordFile, "`file` holding the Redis password")
		fs.StringVar(&cfg.SessionTickets.KeyFile, "session-ticket-key-file", cfg.SessionTickets.KeyFile, "`file` with a secret of 32+ random bytes every instance shares; session tickets then resume on any instance and across restarts")
		fs.BoolVar(&cfg.SessionTickets.Shared, "session-tickets-shared", cfg.SessionTickets.Shared, "keep rotated session ticket keys in the shared storage (--redis) instead of a key file")
		fs.DurationVar(&cfg.SessionTickets.MaxAge, "session-ticket-max-age", cfg.SessionTickets.MaxAge, "refuse session tickets older than this (0: the rotation decides, about 2-3h)")
	})
	c.section("Limits", cfg.Limits.registerFlags)
	c.section("Monitor (probes, alerts, failed-handshake log)", cfg.Monitor.registerFlags)
	c.section("Admin", func(fs *flag.FlagSet) {
		fs.StringVar(&cfg.Admin, "admin", cfg.Admin, "admin listener `address` (health, metrics, status, reload); keep it on loopback; \"\" turns it off")
		fs.Var((*stringList)(&cfg.AdminGuard.Hosts), "admin-hosts", "comma-separated host `names` the admin listener may be reached by, besides IP addresses and localhost")
		fs.StringVar(&cfg.AdminGuard.TokenFile, "admin-token-file", cfg.AdminGuard.TokenFile, "`file` with a bearer token every admin request but /healthz and /readyz must carry")
		fs.StringVar(&cfg.AdminGuard.Metrics, "metrics", cfg.AdminGuard.Metrics, "`address` of a listener serving only /metrics (no token), e.g. :9902 for Prometheus")
	})

	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(envName(f.Name)); ok && f.Name != "config" && !(v == "" && isScalar(f)) {
			if err := fs.Set(f.Name, v); err != nil && envErr == nil {
				envErr = fmt.Errorf("%s=%q: %w", envName(f.Name), v, err)
			}
		}
	})
	if envErr != nil {
		return nil, &usageError{envErr}
	}
	sc.envDone()
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			c.usage()
			return nil, errHelp
		}
		return nil, &usageError{fmt.Errorf("%w (tlsfront --help lists every flag)", err)}
	}
	if fs.NArg() > 0 {
		return nil, &usageError{fmt.Errorf("unexpected argument %q (flags start with --)", fs.Arg(0))}
	}
	if err := sc.apply(cfg); err != nil {
		return nil, &usageError{err}
	}
	if err := cfg.validate(); err != nil {
		where := "configuration"
		if path != "" {
			where = path
		}
		return nil, &usageError{fmt.Errorf("%s is not valid:\n  %s", where, strings.ReplaceAll(err.Error(), "\n", "\n  "))}
	}
	return cfg, nil
}

// isScalar reports whether f holds a number, bool or duration: for those an
// empty environment variable means unset, as a blanked variable in a
// container file usually does. An empty string can mean something (an
// empty --admin turns the admin listener off).
func isScalar(f *flag.Flag) bool {
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return false
	}
	switch g.Get().(type) {
	case bool, int, int64, uint, uint64, float64, time.Duration:
		return true
	}
	return false
}

// configPathFromArgs finds --config before flags are defined.
func configPathFromArgs(args []string) string {
	for i, a := range args {
		a = strings.TrimLeft(a, "-")
		if v, ok := strings.CutPrefix(a, "config="); ok {
			return v
		}
		if a == "config" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// bindTrustFlags binds the trust section's flags to t.
func bindTrustFlags(fs *flag.FlagSet, t *certs.TrustOptions) {
	fs.StringVar(&t.CAFile, "trust-ca", t.CAFile, "PEM `file` of the roots clients trust; served chains must verify against it (default: system roots)")
	fs.StringVar(&t.BundleDir, "bundle-dir", t.BundleDir, "`folder` of intermediates (PEM, DER, PKCS#7) to complete chains with")
	fs.BoolFunc("no-fetch-aia", "never fetch a missing intermediate from its AIA URL", func(s string) error {
		off, err := strconv.ParseBool(s)
		t.FetchAIA = !off
		return err
	})
	fs.DurationVar(&t.ExpiryWarning, "expiry-warning", t.ExpiryWarning, "warn when a leaf expires within this `duration` (default 504h, 21 days)")
	fs.Func("extra-store", "a further trust store some clients use, as `name=file`; failing it is a warning (repeatable)", func(s string) error {
		name, file, ok := strings.Cut(s, "=")
		if !ok || name == "" || file == "" {
			return errors.New("want name=file, e.g. old-android=/etc/tlsfront/isrg-x1-cross.pem")
		}
		if t.ExtraStores == nil {
			t.ExtraStores = map[string]string{}
		}
		t.ExtraStores[name] = file
		return nil
	})
}
