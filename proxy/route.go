package proxy

import (
	"net"
	"net/http"
	"strings"
)

// HTTPRoute sends the requests on an http listener that match all of its
// set fields to Backend.
//
// Precedence: among the routes that match, the longest PathPrefix wins;
// on equal prefixes, a route that names a Host beats one that does not,
// then one that names an SNI; then the first in order. A request no route
// matches goes to the listener's default backend.
type HTTPRoute struct {
	// SNI are lower-case TLS server names; empty matches any.
	SNI []string
	// Host are lower-case Host header names, without port; empty matches
	// any.
	Host []string
	// PathPrefix matches a request path that starts with it, byte for
	// byte (as nginx's prefix locations do: /mqtt also matches /mqttx);
	// empty matches any.
	PathPrefix string
	Backend    Backend
}

func (rt *HTTPRoute) matches(sni, host, path string) bool {
	if len(rt.SNI) > 0 && !containsFold(rt.SNI, sni) {
		return false
	}
	if len(rt.Host) > 0 && !containsFold(rt.Host, host) {
		return false
	}
	return strings.HasPrefix(path, rt.PathPrefix)
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// pickRoute returns the backend for r by the precedence HTTPRoute
// describes, or def.
func pickRoute(routes []HTTPRoute, def Backend, r *http.Request) Backend {
	sni := ""
	if r.TLS != nil {
		sni = r.TLS.ServerName
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(host, ".")
	best, bestScore := -1, -1
	for i := range routes {
		rt := &routes[i]
		if !rt.matches(sni, host, r.URL.Path) {
			continue
		}
		score := len(rt.PathPrefix) * 4
		if len(rt.Host) > 0 {
			score += 2
		}
		if len(rt.SNI) > 0 {
			score++
		}
		if score > bestScore {
			best, bestScore = i, score
		}
	}
	if best < 0 {
		return def
	}
	return routes[best].Backend
}
