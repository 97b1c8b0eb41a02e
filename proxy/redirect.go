package proxy

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"time"
)

// RedirectOptions configure a plain HTTP listener that sends clients to
// https.
type RedirectOptions struct {
	// HTTPSPort is the port clients are sent to; 0 or 443 leaves it out.
	HTTPSPort int
	// Wrap, when set, wraps the redirect handler, e.g. to answer ACME
	// HTTP-01 challenges before redirecting.
	Wrap func(http.Handler) http.Handler
	// Limits bound the connections it holds.
	Limits PlainLimits
}

// Redirect serves plain HTTP with 301 answers to https.
type Redirect struct {
	srv    *http.Server
	limits PlainLimits
}

// NewRedirect returns a redirect server for o.
func NewRedirect(o RedirectOptions) *Redirect {
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if o.HTTPSPort != 0 && o.HTTPSPort != 443 {
			host = net.JoinHostPort(host, strconv.Itoa(o.HTTPSPort))
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusMovedPermanently)
	})
	if o.Wrap != nil {
		h = o.Wrap(h)
	}
	return &Redirect{limits: o.Limits, srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, IdleTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10}}
}

// Serve answers on ln until Shutdown.
func (r *Redirect) Serve(ln net.Listener) error {
	err := r.srv.Serve(LimitListener(ln, r.limits))
	if err == http.ErrServerClosed {
		return ErrServerClosed
	}
	return err
}

// Shutdown stops the server, waiting for requests in flight until ctx ends.
func (r *Redirect) Shutdown(ctx context.Context) error { return r.srv.Shutdown(ctx) }
