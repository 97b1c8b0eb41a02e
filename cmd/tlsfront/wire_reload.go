package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/tlsfront/tlsfront/certs"
)

// clientCAID names the client CA bundle among reload results.
const clientCAID = "client_auth.ca_file"

// setupReload makes certificates (and the client CA bundle) reloadable
// while serving: on file changes, SIGHUP, POST /reload on the admin
// listener and, when configured, a timer. It also turns on client
// certificate verification when client_auth.ca_file is set.
//
// It starts no goroutine: the triggers run as tasks of serve.
func (a *app) setupReload() error {
	r := &reloader{
		log:      a.log,
		store:    a.store,
		reloader: certs.NewReloader(a.store),
		verify:   a.verify,
		hooks:    func() []func(string, *certs.Bundle, error) { return a.onReload },
	}
	routed := a.routedByCertificate()
	for i := range a.cfg.Certificates {
		id, src := a.certSource(i)
		src.Names = routed[id]
		r.certs = append(r.certs, reloadTarget{id: id, src: src})
	}
	if ca := a.cfg.ClientAuth; ca.enabled() {
		r.clientCAs = certs.NewClientCAs(ca.required())
		r.clientCAFile = ca.CAFile
		_, n, err := r.clientCAs.Reload(ca.CAFile)
		if err != nil {
			return fmt.Errorf("client_auth.ca_file: %w", err)
		}
		a.log.Info("client certificate verification on", "ca_file", ca.CAFile, "cas", n, "required", ca.required())
		a.tlsHooks = append(a.tlsHooks, r.clientCAs.Configure)
	}

	a.admin.HandleFunc("POST /reload", r.serveReload)
	a.tasks = append(a.tasks, r.onSIGHUP)
	if files := r.files(); a.cfg.Reload.watch() && len(files) > 0 {
		w := &fileWatch{paths: files, debounce: a.cfg.Reload.Debounce, log: a.log, reload: r.reloadFromWatch}
		a.tasks = append(a.tasks, w.run)
	}
	if iv := a.cfg.Reload.Interval; iv > 0 {
		a.tasks = append(a.tasks, func(ctx context.Context) { r.every(ctx, iv) })
	}
	return nil
}

// routedByCertificate maps a certificate ID to the routed server names it
// serves, so that a renewal that drops one of them is refused.
func (a *app) routedByCertificate() map[string][]string {
	byBundle := map[*certs.Bundle]string{}
	for _, id := range a.store.IDs() {
		byBundle[a.store.Get(id)] = id
	}
	out := map[string][]string{}
	for _, name := range a.cfg.routedNames() {
		if id, ok := byBundle[a.store.Lookup(name)]; ok {
			out[id] = append(out[id], name)
		}
	}
	return out
}

// reloader runs reloads for every trigger, one at a time.
type reloader struct {
	log          *slog.Logger
	store        *certs.Store
	reloader     *certs.Reloader
	verify       func() certs.Verify
	hooks        func() []func(id string, b *certs.Bundle, err error)
	certs        []reloadTarget
	clientCAs    *certs.ClientCAs // nil without client auth
	clientCAFile string

	// mu serialises reloads: the file watch, SIGHUP, the timer and POST
	// /reload can fire together, and each must see the previous one's
	// result when it compares.
	mu sync.Mutex
}

type reloadTarget struct {
	id  string
	src certs.Source
}

// reloadResult is one certificate's outcome, as POST /reload reports it.
// Serial and NotAfter describe the certificate serving after the attempt:
// after a failure, the previous one.
type reloadResult struct {
	ID       string        `json:"id"`
	Result   certs.Outcome `json:"result"`
	Error    string        `json:"error,omitempty"`
	Serial   string        `json:"serial,omitempty"`
	NotAfter *time.Time    `json:"not_after,omitempty"`
}

// files are the paths whose changes call for a reload.
func (r *reloader) files() []string {
	var out []string
	for _, t := range r.certs {
		out = append(out, t.src.CertFile)
		if t.src.KeyFile != "" {
			out = append(out, t.src.KeyFile)
		}
	}
	if r.clientCAFile != "" {
		out = append(out, r.clientCAFile)
	}
	return out
}

// reloadAll reloads every certificate and the client CA bundle, logs each
// outcome and calls the onReload hooks. With hold set, a certificate that
// looks caught mid-update (key not matching yet, file empty or missing) is
// neither logged as an error nor reported, and retry says to try again
// once the files have settled.
func (r *reloader) reloadAll(trigger string, hold bool) (results []reloadResult, retry bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.verify()
	for _, t := range r.certs {
		b, out, err := r.reloader.Reload(t.id, t.src, v)
		if hold && err != nil && midUpdate(err) {
			r.log.Debug("certificate files mid-update, retrying", "certificate", t.id, "trigger", trigger, "err", err)
			retry = true
			continue
		}
		res := reloadResult{ID: t.id, Result: out}
		serving := b
		switch out {
		case certs.Reloaded:
			r.log.Info("certificate reloaded", "certificate", t.id, "trigger", trigger, "serial", b.Leaf.SerialNumber.Text(16), "not_after", b.Leaf.NotAfter, "names", b.Leaf.DNSNames)
			for _, w := range b.Warnings {
				r.log.Warn("certificate warning", "certificate", t.id, "warning", w)
			}
		case certs.Unchanged:
			r.log.Debug("certificate unchanged", "certificate", t.id, "trigger", trigger)
		default:
			res.Error = err.Error()
			serving = r.store.Get(t.id)
			r.log.Error("certificate reload failed, previous certificate keeps serving", "certificate", t.id, "trigger", trigger, "err", err)
		}
		if serving != nil {
			res.Serial = serving.Leaf.SerialNumber.Text(16)
			na := serving.Leaf.NotAfter
			res.NotAfter = &na
		}
		for _, h := range r.hooks() {
			h(t.id, b, err)
		}
		results = append(results, res)
	}
	if r.clientCAs != nil {
		out, n, err := r.clientCAs.Reload(r.clientCAFile)
		res := reloadResult{ID: clientCAID, Result: out}
		switch {
		case err != nil && hold && midUpdate(err):
			retry = true
		case err != nil:
			res.Error = err.Error()
			r.log.Error("client CA bundle reload failed, previous CAs stay in use", "trigger", trigger, "err", err)
			results = append(results, res)
		default:
			if out == certs.Reloaded {
				r.log.Info("client CA bundle reloaded", "trigger", trigger, "ca_file", r.clientCAFile, "cas", n)
			}
			results = append(results, res)
		}
	}
	return results, retry
}

// midUpdate reports a failure that a renewal still writing its files
// causes: it may go away once they settle.
func midUpdate(err error) bool {
	return errors.Is(err, certs.ErrKeyMismatch) || errors.Is(err, certs.ErrNoCertificate) || errors.Is(err, fs.ErrNotExist)
}

// reloadFromWatch is the file watch's reload: mid-update failures are held
// back for one more quiet period when final is false.
func (r *reloader) reloadFromWatch(final bool) (retry bool) {
	_, retry = r.reloadAll("watch", !final)
	return retry
}

// serveReload is POST /reload, for renewal hooks (certbot --deploy-hook,
// acme.sh --reloadcmd, win-acme): 200 when every certificate reloaded or
// was unchanged, 500 when any was refused, with the reasons.
func (r *reloader) serveReload(w http.ResponseWriter, _ *http.Request) {
	results, _ := r.reloadAll("admin", false)
	resp := struct {
		OK           bool           `json:"ok"`
		Certificates []reloadResult `json:"certificates"`
	}{OK: true, Certificates: results}
	for _, res := range results {
		if res.Result == certs.Failed {
			resp.OK = false
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if !resp.OK {
		w.WriteHeader(http.StatusInternalServerError)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(resp)
}

// onSIGHUP reloads on every SIGHUP until ctx ends.
func (r *reloader) onSIGHUP(ctx context.Context) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	defer signal.Stop(ch)
	r.log.Debug("reloading on SIGHUP")
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			r.reloadAll("sighup", false)
		}
	}
}

// every reloads each interval until ctx ends: a safety net where file
// events do not arrive (some network and FUSE mounts).
func (r *reloader) every(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.reloadAll("interval", false)
		}
	}
}
