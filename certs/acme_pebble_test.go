package certs_test

// A real Pebble ACME server on loopback (internal/pebbletest), a counting
// front for it, and the servers that answer its challenges.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/internal/pebbletest"
	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/testnet"
)

// pebble is a running pebble with a count of the requests through its
// counting front, see countingFront.
type pebble struct {
	*pebbletest.Server
	counted atomic.Int64
}

// countingFront puts a reverse proxy that counts requests in front of
// pebble's directory. Every ACME client starts by fetching the directory,
// so zero requests here means the CA was never contacted.
func (p *pebble) countingFront(t *testing.T) string {
	t.Helper()
	target, err := url.Parse(p.DirectoryURL)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(&url.URL{Scheme: target.Scheme, Host: target.Host})
			r.Out.URL.Path = target.Path
		},
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Roots}},
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.counted.Add(1)
		rp.ServeHTTP(w, r)
	}))
	root, err := pki.NewRoot("front root")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := root.Issue(pki.Options{CommonName: "localhost", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.DER}, PrivateKey: leaf.Key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	p.Roots.AddCert(root.Cert)
	return srv.URL + "/dir"
}

func port(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// serveTLS completes handshakes on ln with cfg, then holds each
// connection until the peer closes it. It is stopped and waited for at
// cleanup.
func serveTLS(t *testing.T, ln net.Listener, cfg *tls.Config) {
	t.Helper()
	testnet.Serve(t, ln, func(c net.Conn) {
		tc := tls.Server(c, cfg)
		tc.SetDeadline(time.Now().Add(20 * time.Second))
		if tc.Handshake() == nil {
			// Pebble closes after the handshake; a test client
			// closes after reading the certificate.
			io.Copy(io.Discard, tc)
		}
	})
}

// serveHTTP serves h on ln until cleanup.
func serveHTTP(t *testing.T, ln net.Listener, h http.Handler) {
	t.Helper()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
}

// handshake connects to addr asking for name and returns the verified
// leaf, or the handshake error.
func handshake(addr net.Addr, name string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := (&tls.Dialer{NetDialer: d, Config: &tls.Config{ServerName: name, RootCAs: roots}}).DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	st := c.(*tls.Conn).ConnectionState()
	if len(st.PeerCertificates) == 0 {
		return nil, errors.New("no certificate")
	}
	return st.PeerCertificates[0], nil
}
