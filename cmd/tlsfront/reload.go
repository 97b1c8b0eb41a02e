package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tlsfront/tlsfront/certs"
	"github.com/tlsfront/tlsfront/internal/filewatch"
	"github.com/tlsfront/tlsfront/internal/sdnotify"
	"github.com/tlsfront/tlsfront/internal/supervise"
)

// reloads are the triggers that reload certificates while serving: the
// file watch, SIGHUP, a timer and POST /reload on the admin listener. Each
// calls the certificate manager's one Reload, which serialises them.
type reloads struct {
	log   *slog.Logger
	certs *certs.Manager
	cfg   reloadConfig
}

func newReloads(a *app) *reloads {
	return &reloads{log: a.log, certs: a.certs, cfg: a.cfg.Reload}
}

// components are the triggers that run while serving.
func (r *reloads) components() []supervise.Component {
	out := []supervise.Component{{Name: "sighup", Run: r.onSIGHUP}}
	if files, folders := r.certs.Files(), r.certs.Folders(); r.cfg.watch() && len(files)+len(folders) > 0 {
		w := &filewatch.Watch{Paths: files, Folders: folders, Debounce: r.cfg.Debounce, Log: r.log, Reload: r.fromWatch}
		out = append(out, supervise.Component{Name: "file watch", Run: w.Run})
	}
	if iv := r.cfg.Interval; iv > 0 {
		out = append(out, supervise.Component{Name: "reload interval", Run: func(ctx context.Context) error { r.every(ctx, iv); return nil }})
	}
	return out
}

// fromWatch is the file watch's reload: mid-update failures are held back
// for one more quiet period when final is false, and only the folder pairs
// where events happened are checked (nil changed: all).
func (r *reloads) fromWatch(ctx context.Context, final bool, changed []string) (retry bool) {
	sdnotify.Notify(sdnotify.Reloading())
	defer sdnotify.Notify("READY=1")
	_, retry = r.certs.ReloadChanged(ctx, "watch", !final, changed)
	return retry
}

// reload runs one reload, telling systemd while it runs.
func (r *reloads) reload(ctx context.Context, trigger string, hold bool) ([]certs.Result, bool) {
	sdnotify.Notify(sdnotify.Reloading())
	defer sdnotify.Notify("READY=1")
	return r.certs.Reload(ctx, trigger, hold)
}

// serveHTTP is POST /reload, for renewal hooks (certbot --deploy-hook,
// acme.sh --reloadcmd, win-acme): 200 when every certificate reloaded or
// was unchanged, 500 when any was refused, with the reasons.
func (r *reloads) serveHTTP(w http.ResponseWriter, req *http.Request) {
	results, _ := r.reload(req.Context(), "admin", false)
	resp := certs.NewReloadReport(results)
	w.Header().Set("Content-Type", "application/json")
	if !resp.OK {
		w.WriteHeader(http.StatusInternalServerError)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(resp)
}

// onSIGHUP reloads on every SIGHUP until ctx ends.
func (r *reloads) onSIGHUP(ctx context.Context) error {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	defer signal.Stop(ch)
	r.log.Debug("reloading on SIGHUP")
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
			r.log.Info("reloading certificates", "trigger", "sighup")
			r.reload(ctx, "sighup", false)
		}
	}
}

// every reloads each interval until ctx ends: a safety net where file
// events do not arrive (some network and FUSE mounts).
func (r *reloads) every(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.reload(ctx, "interval", false)
		}
	}
}
