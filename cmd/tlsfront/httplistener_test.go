package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The http listener's YAML keys reach the proxy: routes by path prefix
// and Host, preserve_host, trusted_proxies and forwarded_header.
func TestHTTPListenerKeys(t *testing.T) {
	backend := func(name string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, strings.Join([]string{name, r.Host, r.Header.Get("X-Forwarded-For"), r.Header.Get("Forwarded")}, "|"))
		}))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	def, mqtt, api := backend("default"), backend("mqtt"), backend("api")
	tc := newTestCerts(t)
	conf := `listeners:
  - name: web
    kind: http
    listen: 127.0.0.1:0
    backend: ` + def + `
    preserve_host: false
    trusted_proxies: [127.0.0.0/8]
    forwarded_header: true
    routes:
      - path_prefix: /mqtt
        backend: ` + mqtt + `
      - host: [api.localhost]
        backend: ` + api + `
certificates:
  - cert: ` + tc.cert + `
    key: ` + tc.key + `
trust:
  ca_file: ` + tc.root + `
`
	path := filepath.Join(t.TempDir(), "tlsfront.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startTLSFront(t, "--config", path)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc.ca.ClientConfig("localhost")}, Timeout: 10 * time.Second}
	for _, tt := range []struct{ host, path, want string }{
		{"localhost", "/", "default|" + def},
		{"localhost", "/mqtt/ws", "mqtt|" + mqtt},
		{"api.localhost", "/", "api|" + api},
	} {
		req, _ := http.NewRequest("GET", "https://"+p.addrs["web"]+tt.path, nil)
		req.Host = tt.host
		req.Header.Set("X-Forwarded-For", "6.6.6.6")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got := strings.Split(string(body), "|")
		if len(got) != 4 || strings.Join(got[:2], "|") != tt.want {
			t.Errorf("%s%s went to %q, want %q (route, and the backend's address as Host)", tt.host, tt.path, body, tt.want)
			continue
		}
		if got[2] != "6.6.6.6, 127.0.0.1" || !strings.HasPrefix(got[3], "for=127.0.0.1;host="+tt.host) {
			t.Errorf("%s%s: X-Forwarded-For %q, Forwarded %q", tt.host, tt.path, got[2], got[3])
		}
	}
}
