package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tlsfront/tlsfront/certs"
	"github.com/tlsfront/tlsfront/limits"
	"github.com/tlsfront/tlsfront/proxy"
)

// app is the running proxy: what run builds, starts and stops. Each
// setupX function (one file per area) adds its part to it before serving.
type app struct {
	cfg     *config
	log     *slog.Logger
	trust   *trustStores // the pools clients trust; set by loadTrust
	store   *certs.Store
	limiter *limits.Limiter
	admin   *http.ServeMux

	// Hooks the setup functions fill in.
	observers    []func(*proxy.HandshakeEvent)
	onRefuse     []func(listener string, client netip.Addr, r *limits.Refusal)
	tlsHooks     []func(*tls.Config)                           // e.g. ALPN for ACME challenges
	redirectWrap func(http.Handler) http.Handler               // e.g. ACME HTTP-01
	acmeKnows    func(name string) bool                        // names ACME serves or may obtain
	hooks        proxy.Hooks                                   // connection, byte and dial reports
	readyChecks  []func() error                                // all must pass for /readyz
	tasks        []func(ctx context.Context)                   // run until ctx ends; owned by serve
	onReload     []func(id string, b *certs.Bundle, err error) // after every reload attempt
	onACME       []func(event string, names []string, err error)

	servers   []*proxy.Server
	redirects []*proxy.Redirect
	addrs     map[string]net.Addr // listener name -> bound address
	serving   atomic.Bool
}

func runServe(ctx context.Context, args []string, _ io.Writer, stderr io.Writer) error {
	cfg, err := parseConfig("tlsfront", args, stderr)
	if err != nil {
		return err
	}
	a, err := newApp(cfg, newLogger(cfg.Log, stderr))
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

// newApp loads everything a start needs and fails, naming the file or
// field, when something would keep clients from connecting.
func newApp(cfg *config, log *slog.Logger) (*app, error) {
	a := &app{cfg: cfg, log: log, store: certs.NewStore(), admin: http.NewServeMux(), addrs: map[string]net.Addr{}}
	if err := a.loadTrust(); err != nil {
		return nil, err
	}
	if err := a.loadCertificates(); err != nil {
		return nil, err
	}
	for _, setup := range []func() error{a.setupLimits, a.setupACME, a.setupMonitor, a.setupReload} {
		if err := setup(); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// certSource returns the source of the i-th configured certificate and its
// ID in the store.
func (a *app) certSource(i int) (string, certs.Source) {
	cc := a.cfg.Certificates[i]
	id := cc.Name
	if id == "" {
		id = filepath.Base(cc.Cert)
	}
	return id, certs.Source{CertFile: cc.Cert, KeyFile: cc.Key}
}

func (a *app) loadCertificates() error {
	var errs []error
	for i := range a.cfg.Certificates {
		id, src := a.certSource(i)
		b, err := certs.LoadFile(src, a.verify())
		if err != nil {
			errs = append(errs, fmt.Errorf("certificates[%d] (%s): %w", i, id, err))
			continue
		}
		for _, w := range b.Warnings {
			a.log.Warn("certificate warning", "certificate", id, "warning", w)
		}
		if b.Diagnosis != nil {
			for _, f := range b.Diagnosis.Findings {
				if f.Severity == certs.SeverityInfo {
					a.log.Info("certificate chain repaired", "certificate", id, "detail", f.Message)
				}
			}
		}
		a.store.Put(id, b)
		a.log.Info("certificate loaded", "certificate", id, "names", b.Leaf.DNSNames, "not_after", b.Leaf.NotAfter, "chain", len(b.Cert.Certificate))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, name := range a.cfg.routedNames() {
		if a.store.Lookup(name) == nil && !a.cfg.ACME.enabled() {
			errs = append(errs, fmt.Errorf("no certificate covers %q, which a route sends to a backend; add one whose SANs include it", name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Prove each certificate with a real handshake for the names routed
	// to it, as every reload does, so that a key the TLS stack cannot use
	// fails the start (and check-config --load), not every handshake.
	routed := a.routedByCertificate()
	for i := range a.cfg.Certificates {
		id, _ := a.certSource(i)
		probe := *a.store.Get(id)
		probe.Source.Names = routed[id]
		if err := certs.SelfTest(&probe, a.verify()); err != nil {
			return fmt.Errorf("certificates[%d] (%s): %w", i, id, err)
		}
	}
	return nil
}

func (a *app) tlsConfig() *tls.Config {
	cfg := &tls.Config{GetCertificate: a.store.GetCertificate}
	for _, h := range a.tlsHooks {
		h(cfg)
	}
	return cfg
}

// knownName reports whether tlsfront has a certificate for a server name:
// a file-based one, or one ACME may obtain.
func (a *app) knownName(name string) bool {
	if a.store.Lookup(name) != nil {
		return true
	}
	return a.acmeKnows != nil && a.acmeKnows(name)
}

func (a *app) observe(ev *proxy.HandshakeEvent) {
	for _, o := range a.observers {
		o(ev)
	}
}

func (a *app) refused(listener string, client netip.Addr, r *limits.Refusal) {
	for _, f := range a.onRefuse {
		f(listener, client, r)
	}
}

// buildServers turns listener configs into servers and binds their
// sockets, so that a port in use fails the start.
func (a *app) buildServers() (map[string]net.Listener, error) {
	lns := map[string]net.Listener{}
	fail := func(err error) (map[string]net.Listener, error) {
		for _, ln := range lns {
			ln.Close()
		}
		return nil, err
	}
	for i, lc := range a.cfg.Listeners {
		ln, err := net.Listen("tcp", lc.Listen)
		if err != nil {
			return fail(fmt.Errorf("listeners[%d] (%s): %w", i, lc.Name, err))
		}
		lns[lc.Name] = ln
		a.addrs[lc.Name] = ln.Addr()
		if lc.Kind == "redirect" {
			a.redirects = append(a.redirects, proxy.NewRedirect(proxy.RedirectOptions{HTTPSPort: lc.HTTPSPort, Wrap: a.redirectWrap}))
			continue
		}
		o, err := a.proxyOptions(lc)
		if err != nil {
			return fail(fmt.Errorf("listeners[%d] (%s): %w", i, lc.Name, err))
		}
		s, err := proxy.New(o)
		if err != nil {
			return fail(err)
		}
		a.servers = append(a.servers, s)
	}
	return lns, nil
}

func (a *app) proxyOptions(lc listenerConfig) (proxy.Options, error) {
	be, err := proxy.ParseBackend(lc.Backend)
	if err != nil {
		return proxy.Options{}, err
	}
	be.ProxyProtocol = lc.ProxyProtocol
	routes := map[string]proxy.Backend{}
	for _, r := range lc.Routes {
		rb, err := proxy.ParseBackend(r.Backend)
		if err != nil {
			return proxy.Options{}, err
		}
		rb.ProxyProtocol = lc.ProxyProtocol
		for _, n := range r.SNI {
			routes[strings.ToLower(n)] = rb
		}
	}
	protocol := lc.Protocol
	if protocol == "raw" {
		protocol = ""
	}
	return proxy.Options{
		Name:              lc.Name,
		Kind:              proxy.Kind(lc.Kind),
		TLS:               a.tlsConfig(),
		Backend:           be,
		Routes:            routes,
		HandshakeTimeout:  lc.HandshakeTimeout,
		IdleTimeout:       lc.IdleTimeout,
		AcceptProxyHeader: lc.AcceptProxyProtocol,
		Protocol:          protocol,
		Limiter:           a.limiter,
		Observe:           a.observe,
		OnRefuse:          a.refused,
		KnownName:         a.knownName,
		Hooks:             a.hooks,
		HTTP:              proxy.HTTPOptions{PingInterval: lc.WebSocket.PingInterval, MaxMessageSize: lc.WebSocket.MaxMessageSize},
		Log:               a.log,
	}, nil
}

// serve runs until ctx ends, then shuts down gracefully.
func (a *app) serve(ctx context.Context) error {
	lns, err := a.buildServers()
	if err != nil {
		return err
	}
	adminLn, err := a.listenAdmin()
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		return err
	}
	adminSrv := &http.Server{Handler: a.admin, ReadHeaderTimeout: 5 * time.Second}

	errc := make(chan error, len(lns)+1)
	var wg sync.WaitGroup
	goServe := func(name string, serve func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serve(); err != nil && !errors.Is(err, proxy.ErrServerClosed) && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	si, ri := 0, 0
	for _, lc := range a.cfg.Listeners {
		ln := lns[lc.Name]
		if lc.Kind == "redirect" {
			r := a.redirects[ri]
			ri++
			goServe(lc.Name, func() error { return r.Serve(ln) })
			continue
		}
		s := a.servers[si]
		si++
		goServe(lc.Name, func() error { return s.Serve(ln) })
	}
	if adminLn != nil {
		goServe("admin", func() error { return adminSrv.Serve(adminLn) })
	}
	taskCtx, stopTasks := context.WithCancel(ctx)
	var tasks sync.WaitGroup
	for _, t := range a.tasks {
		tasks.Add(1)
		go func() { defer tasks.Done(); t(taskCtx) }()
	}
	a.serving.Store(true)
	bound := map[string]string{}
	for name, addr := range a.addrs {
		bound[name] = addr.String()
	}
	a.log.Info("tlsfront started", "version", version, "admin", a.cfg.Admin, "listeners", bound)

	var runErr error
	select {
	case <-ctx.Done():
		a.log.Info("shutting down", "grace", a.cfg.ShutdownGrace)
	case runErr = <-errc:
		a.log.Error("listener failed, shutting down", "err", runErr)
	}
	a.serving.Store(false)
	stopTasks()
	graceCtx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownGrace)
	defer cancel()
	var sw sync.WaitGroup
	for _, s := range a.servers {
		sw.Add(1)
		go func() { defer sw.Done(); s.Shutdown(graceCtx) }()
	}
	for _, r := range a.redirects {
		sw.Add(1)
		go func() { defer sw.Done(); r.Shutdown(graceCtx) }()
	}
	sw.Wait()
	adminSrv.Close()
	wg.Wait()
	tasks.Wait()
	a.log.Info("stopped")
	return runErr
}
