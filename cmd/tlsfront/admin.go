package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/tlsfront/tlsfront/internal/adminguard"
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
		if host, _, _ := net.SplitHostPort(a.cfg.Admin); !adminguard.IsLoopbackHost(host) {
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
	g := adminguard.Guard{Hosts: a.cfg.AdminGuard.Hosts, Token: token}
	a.adminSrv = adminServer(g.Wrap(mux))
	metrics := http.NewServeMux()
	metrics.Handle("GET /metrics", a.mon.MetricsHandler())
	a.metricsSrv = adminServer(adminguard.Guard{Hosts: a.cfg.AdminGuard.Hosts}.Wrap(metrics))
	return nil
}

// adminServer serves h with the admin listeners' timeouts and limits.
func adminServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: time.Minute, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
}
