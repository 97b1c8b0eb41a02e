package adminguard

import (
	"crypto/subtle"
	"mime"
	"net"
	"net/http"
	"strings"
)

// Guard refuses what a browser could be tricked into sending and, with
// a token, whoever does not have it.
type Guard struct {
	// Hosts are names the listener may be reached by besides IP
	// addresses and localhost.
	Hosts []string
	// Token, when set, must come as a bearer token on every request but
	// /healthz and /readyz.
	Token string
}

// Wrap returns next behind the guard.
func (g Guard) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.hostAllowed(r.Host) {
			http.Error(w, "unknown Host; reach the admin listener by its address, localhost, or a name in admin_guard.hosts", http.StatusMisdirectedRequest)
			return
		}
		if g.Token != "" && r.URL.Path != "/healthz" && r.URL.Path != "/readyz" {
			want := "Bearer " + g.Token
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
func (g Guard) hostAllowed(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "" || net.ParseIP(host) != nil || IsLoopbackHost(host) {
		return true
	}
	for _, n := range g.Hosts {
		if strings.EqualFold(n, host) {
			return true
		}
	}
	return false
}

// IsLoopbackHost reports localhost or a loopback address.
func IsLoopbackHost(host string) bool {
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
