package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/tlsfront/tlsfront/certs"
	"github.com/tlsfront/tlsfront/certs/redisstore"
	"github.com/tlsfront/tlsfront/certs/tickets"
	"github.com/tlsfront/tlsfront/internal/memtrim"
	"github.com/tlsfront/tlsfront/internal/sdnotify"
	"github.com/tlsfront/tlsfront/internal/supervise"
	"github.com/tlsfront/tlsfront/limits"
	"github.com/tlsfront/tlsfront/monitor"
	"github.com/tlsfront/tlsfront/proxy"
	"github.com/tlsfront/tlsfront/report"
)

// app is tlsfront assembled: what newApp builds and serve runs.
type app struct {
	cfg     *config
	log     *slog.Logger
	limiter *limits.Limiter // nil with limits off
	mon     *monitor.Monitor
	acme    *certs.ACME // nil without ACME
	// redis is the fleet's shared storage; nil without one.
	redis *redisstore.Storage
	// tickets rotates shared session ticket keys; nil without.
	tickets *tickets.Manager
	// redisCheck is how often the shared storage is checked; zero for
	// redisstore.DefaultWatchEvery.
	redisCheck time.Duration
	certs      *certs.Manager
	rep        report.Sink
	reloads    *reloads
	adminLn    net.Listener // nil with the admin listener off
	adminSrv   *http.Server
	// metricsLn and metricsSrv serve /metrics alone, for Prometheus
	// beyond loopback; unused unless admin_guard.metrics is set.
	metricsLn  net.Listener
	metricsSrv *http.Server

	listeners []*boundListener
	addrs     map[string]net.Addr // listener name -> bound address

	// components run while serving, in build order; serve stops them in
	// reverse order.
	components []supervise.Component
	serving    atomic.Bool
	// draining is set on SIGTERM: /readyz fails while tlsfront keeps
	// accepting for the shutdown delay.
	draining atomic.Bool
	// backends answers /readyz with ready_requires_backend.
	backends *proxy.BackendCheck
}

// boundListener is a configured listener, built and bound.
type boundListener struct {
	cfg  proxy.ListenerConfig
	kind proxy.KindSpec
	srv  proxy.Listener
	ln   net.Listener
}

// appOptions are what a test may add to the assembly.
type appOptions struct {
	// tap receives every event besides the monitor.
	tap report.Sink
	// redisCheck shortens the shared storage check, for tests.
	redisCheck time.Duration
}

func runServe(ctx context.Context, args []string, _ io.Writer, stderr io.Writer) error {
	cfg, err := parseConfig("tlsfront", args, stderr)
	if err != nil {
		return err
	}
	a, err := newApp(ctx, cfg, newLogger(cfg.Log, stderr), appOptions{})
	if err != nil {
		return err
	}
	return a.serve(ctx)
}

func newLogger(c logConfig, w io.Writer) *slog.Logger {
	lvl, _ := parseLevel(c.Level)
	opts := &slog.HandlerOptions{Level: slog.Level(lvl)}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// newApp builds every part in dependency order; it fails, naming the file
// or field, when something would keep clients from connecting. It opens
// no socket and starts nothing (check-config --load runs it beside a
// running tlsfront): serve binds and runs.
func newApp(ctx context.Context, cfg *config, log *slog.Logger, o appOptions) (*app, error) {
	a := &app{cfg: cfg, log: log, addrs: map[string]net.Addr{}, redisCheck: o.redisCheck,
		backends: &proxy.BackendCheck{Listeners: cfg.Listeners}}
	if err := a.buildLimiter(); err != nil {
		return nil, err
	}
	if err := a.buildMonitor(); err != nil {
		return nil, err
	}
	a.rep = report.Tee(a.mon.Sink(), o.tap)
	if err := a.buildFleet(); err != nil {
		return nil, &usageError{err}
	}
	if err := a.buildCertificates(ctx); err != nil {
		// A certificate that cannot serve is a configuration mistake.
		return nil, &usageError{err}
	}
	if err := a.buildListeners(); err != nil {
		return nil, err
	}
	a.reloads = newReloads(a)
	if err := a.buildAdmin(); err != nil {
		return nil, err
	}
	a.components = append(a.components, a.reloads.components()...)
	a.components = append(a.components, supervise.Component{Name: "systemd watchdog", Run: sdnotify.Watchdog})
	if a.cfg.MemoryTrim.Enabled {
		t, err := memtrim.New(memtrim.Options{Log: a.log})
		if err != nil {
			return nil, fmt.Errorf("memory_trim: %w", err)
		}
		a.components = append(a.components, supervise.Component{Name: "memory trim", Run: t.Run})
	}
	for _, l := range a.listeners {
		a.components = append(a.components, supervise.Component{
			Name: "listener " + l.cfg.Name,
			Run:  func(context.Context) error { return l.srv.Serve(l.ln) },
			Stop: l.srv.Shutdown,
		})
	}
	for _, h := range a.httpServers() {
		a.components = append(a.components, supervise.Component{
			Name: h.name,
			Run: func(context.Context) error {
				// Counted in max_conns without waiting for a slot, and
				// capped per client, so idle sockets here cannot take the
				// descriptors the TLS listeners need.
				return h.srv.Serve(proxy.LimitListener(*h.ln, proxy.PlainLimits{Limiter: a.limiter, MaxConns: 64}))
			},
			Stop: func(context.Context) error { return h.srv.Close() },
		})
	}
	return a, nil
}

func (a *app) buildLimiter() error {
	c := a.cfg.Limits
	if !c.Enabled {
		a.log.Info("limits off")
		return nil
	}
	l, err := limits.New(c.Config)
	if err != nil {
		return fmt.Errorf("limits: %w", err)
	}
	a.limiter = l
	a.log.Info("limits on", l.Config().LogAttrs()...)
	a.components = append(a.components, supervise.Component{Name: "limits", Run: func(ctx context.Context) error { l.Run(ctx); return nil }})
	return nil
}

// buildCertificates builds ACME (when on) and the certificate manager, and
// loads every certificate through the same pipeline a reload uses.
func (a *app) buildCertificates(ctx context.Context) error {
	var dynamic certs.Dynamic
	if a.cfg.ACME.On() {
		opts, err := a.acmeOptions()
		if err != nil {
			return err
		}
		am, err := certs.NewACME(opts)
		if err != nil {
			return err
		}
		a.acme, dynamic = am, am
	}
	trust := a.cfg.Trust
	if a.cfg.StateDir != "" {
		trust.CacheDir = filepath.Join(a.cfg.StateDir, "intermediates")
	}
	files, folders := certs.Sources(a.cfg.Certificates)
	m, err := certs.NewManager(certs.ManagerOptions{
		Files:            files,
		Folders:          folders,
		Trust:            trust,
		ClientCAFile:     a.cfg.ClientAuth.CAFile,
		ClientCARequired: a.cfg.ClientAuth.CertRequired(),
		RoutedNames:      proxy.RoutedNames(a.cfg.Listeners),
		Dynamic:          dynamic,
		Reporter:         a.rep,
		Log:              a.log,
	})
	if err != nil {
		return err
	}
	if err := m.Load(ctx); err != nil {
		return err
	}
	a.certs = m
	if a.acme != nil {
		a.components = append(a.components, supervise.Component{Name: "acme", Run: a.runACME})
	}
	return nil
}

// buildListeners builds each listener as its kind says. Building starts
// nothing and binds nothing.
func (a *app) buildListeners() error {
	for i, lc := range a.cfg.Listeners {
		srv, err := a.buildListener(lc)
		if err != nil {
			return fmt.Errorf("listeners[%d] (%s): %w", i, lc.Name, err)
		}
		a.listeners = append(a.listeners, &boundListener{cfg: lc, kind: lc.Spec(), srv: srv})
	}
	return nil
}

// buildListener builds one listener with what its kind takes of the
// other parts.
func (a *app) buildListener(lc proxy.ListenerConfig) (proxy.Listener, error) {
	d := proxy.ListenerDeps{
		ClientCertsVerified: a.cfg.ClientAuth.Enabled(),
		Limiter:             a.limiter,
		Reporter:            a.rep,
		KnownName:           a.certs.Covers,
		Log:                 a.log,
	}
	if lc.Spec().TLS {
		d.TLS = a.certs.TLSConfig()
		if a.tickets != nil {
			// Every instance encrypts and decrypts tickets with the same
			// keys, so a client resumes wherever it lands.
			if err := a.tickets.Apply(d.TLS); err != nil {
				return nil, fmt.Errorf("session tickets: %w", err)
			}
		}
	}
	if a.acme != nil {
		d.WrapRedirect = a.acme.HTTPChallengeHandler
	}
	return lc.Build(d)
}

// bind opens every listening socket, so that a port in use fails the
// start before anything runs; on error it closes what it opened.
func (a *app) bind() (err error) {
	defer func() {
		if err != nil {
			a.closeListeners()
		}
	}()
	socks, err := sdnotify.OpenSockets(a.cfg.ReusePort, a.log)
	if err != nil {
		return err
	}
	for i, l := range a.listeners {
		ln, err := socks.Listen(l.cfg.Name, l.cfg.Listen)
		if err != nil {
			return fmt.Errorf("listeners[%d] (%s): %w", i, l.cfg.Name, err)
		}
		l.ln = ln
		a.addrs[l.cfg.Name] = ln.Addr()
	}
	for _, h := range a.httpServers() {
		ln, err := socks.Listen(h.name, *h.addr)
		if err != nil {
			return fmt.Errorf("%s: %w", h.name, err)
		}
		*h.ln = ln
		*h.addr = ln.Addr().String()
	}
	socks.CloseUnused()
	return nil
}

func (a *app) closeListeners() {
	for _, l := range a.listeners {
		if l.ln != nil {
			l.ln.Close()
		}
	}
	for _, h := range a.httpServers() {
		if *h.ln != nil {
			(*h.ln).Close()
		}
	}
}

// serve runs every component until ctx ends or one fails, then stops them
// in reverse order: listeners drain for up to the shutdown grace.
func (a *app) serve(ctx context.Context) error {
	if err := a.bind(); err != nil {
		return err
	}
	g := supervise.Start(a.components)
	a.serving.Store(true)
	sdnotify.Notify("READY=1")
	bound := map[string]string{}
	for name, addr := range a.addrs {
		bound[name] = addr.String()
	}
	a.log.Info("tlsfront started", "version", version, "admin", a.cfg.Admin, "listeners", bound)

	var runErr error
	select {
	case <-ctx.Done():
		a.draining.Store(true)
		sdnotify.Notify("STOPPING=1")
		if d := a.cfg.ShutdownDelay; d > 0 {
			// Load balancers and Kubernetes keep sending new
			// connections for a moment after they are told: /readyz
			// fails now, accepting goes on for the delay.
			a.log.Info("shutting down: not ready, still accepting", "shutdown_delay", d.String())
			select {
			case <-time.After(d):
			case runErr = <-g.Failed():
			}
		}
		a.log.Info("shutting down", "grace", a.cfg.ShutdownGrace.String())
	case runErr = <-g.Failed():
		a.log.Error("component failed, shutting down", "err", runErr)
		sdnotify.Notify("STOPPING=1")
	}
	a.serving.Store(false)
	graceCtx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownGrace)
	defer cancel()
	g.Stop(graceCtx)
	a.log.Info("stopped")
	return runErr
}

// ready is nil when tlsfront serves and its checks pass.
func (a *app) ready() error {
	if a.draining.Load() {
		return errors.New("shutting down")
	}
	if !a.serving.Load() {
		return errors.New("not serving")
	}
	err := a.mon.Ready()
	if a.cfg.Monitor.ReadyRequiresBackend {
		err = errors.Join(err, a.backends.Reachable())
	}
	return err
}
