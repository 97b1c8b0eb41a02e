package main

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/tlsfront/tlsfront/internal/adminguard"
)

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
	g, err := a.cfg.AdminGuard.Guard()
	if err != nil {
		return &usageError{err}
	}
	if a.cfg.Admin != "" && g.Token == "" {
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
