package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
)

// listenAdmin binds the admin listener and registers the endpoints every
// deployment has. Other setup functions add theirs to a.admin. An empty
// address turns the admin listener off.
func (a *app) listenAdmin() (net.Listener, error) {
	if a.cfg.Admin == "" {
		return nil, nil
	}
	host, _, _ := net.SplitHostPort(a.cfg.Admin)
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		a.log.Warn("admin listener is not on loopback: anyone who reaches it can read status and trigger reloads", "admin", a.cfg.Admin)
	}
	ln, err := net.Listen("tcp", a.cfg.Admin)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	a.cfg.Admin = ln.Addr().String()
	a.admin.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	a.admin.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := a.ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return ln, nil
}

// ready is nil when tlsfront serves and every readiness check passes.
func (a *app) ready() error {
	if !a.serving.Load() {
		return errors.New("not serving")
	}
	var errs []error
	for _, c := range a.readyChecks {
		if err := c(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
