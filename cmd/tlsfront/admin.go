package main

import (
	"crypto/subtle"
	"fmt"
	"mime"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// adminConfig is what guards the admin listener.
type adminConfig struct {
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

// httpServer is one of tlsfront's own plain HTTP listeners.
type httpServer struct {
	name string
	addr *string
	ln   *net.Listener
	srv  *http.Server
}

// httpServers are the admin and metrics listeners that are configured.
func (a *app) httpServers() []httpServer {
	var out []httpServer
	if a.cfg.Admin != "" {
		out = append(out, httpServer{"admin", &a.cfg.Admin, &a.adminLn, a.adminSrv})
	}
	if a.cfg.AdminGuard.Metrics != "" {
		out = append(out, httpServer{"metrics", &a.cfg.AdminGuard.Metrics, &a.metricsLn, a.metricsSrv})
	}
	return out
}

// buildAdmin builds the admin and metrics listeners' handlers; bind opens
// their sockets.
func (a *app) buildAdmin() error {
	token := ""
	if f := a.cfg.AdminGuard.TokenFile; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return &usageError{fmt.Errorf("admin_guard.token_file: %w", err)}
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return &usageError{fmt.Errorf("admin_guard.token_file: %s is empty; put the bearer token in it", f)}
		}
	}
	if a.cfg.Admin != "" && token == "" {
		if host, _, _ := net.SplitHostPort(a.cfg.Admin); !isLoopbackHost(host) {
			a.log.Warn("admin listener is not on loopback and has no token: anyone who reaches it can read status and trigger reloads; set admin_guard.token_file", "admin", a.cfg.Admin)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := a.ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", a.mon.MetricsHandler())
	mux.Handle("GET /status", a.mon.StatusHandler())
	mux.HandleFunc("POST /reload", a.reloads.serveHTTP)
	g := adminGuard{hosts: a.cfg.AdminGuard.Hosts, token: token}
	a.adminSrv = &http.Server{Handler: g.wrap(mux), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: time.Minute, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	metrics := http.NewServeMux()
	metrics.Handle("GET /metrics", a.mon.MetricsHandler())
	a.metricsSrv = &http.Server{Handler: adminGuard{hosts: a.cfg.AdminGuard.Hosts}.wrap(metrics), ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: time.Minute, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	return nil
}

// adminGuard refuses what a browser could be tricked into sending and, with
// a token, whoever does not have it.
type adminGuard struct {
	hosts []string
	token string
}

func (g adminGuard) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.hostAllowed(r.Host) {
			http.Error(w, "unknown Host; reach the admin listener by its address, localhost, or a name in admin_guard.hosts", http.StatusMisdirectedRequest)
			return
		}
		if g.token != "" && r.URL.Path != "/healthz" && r.URL.Path != "/readyz" {
			want := "Bearer " + g.token
			if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(want)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="tlsfront admin"`)
				http.Error(w, "a bearer token is required (admin_guard.token_file)", http.StatusUnauthorized)
				return
			}
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !notSimpleRequest(r) {
			// A cross-site page can POST text/plain or a form without the
			// browser asking first; it cannot send JSON or a custom
			// header that way.
			http.Error(w, "send Content-Type: application/json (tlsfront reload does)", http.StatusUnsupportedMediaType)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// hostAllowed: an IP address or localhost (what probes, curl and
// Prometheus use) or a configured name. A DNS rebinding attack needs a
// name of the attacker's.
func (g adminGuard) hostAllowed(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "" || net.ParseIP(host) != nil || isLoopbackHost(host) {
		return true
	}
	for _, n := range g.hosts {
		if strings.EqualFold(n, host) {
			return true
		}
	}
	return false
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// notSimpleRequest reports a request a browser would not send cross-site
// without a CORS preflight (which tlsfront never answers).
func notSimpleRequest(r *http.Request) bool {
	if r.Header.Get("X-Tlsfront-Request") != "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/json"
}
