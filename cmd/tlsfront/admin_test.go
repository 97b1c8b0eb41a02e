package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func adminDo(t *testing.T, method, url string, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// The admin listener answers what a browser cannot be tricked into
// sending: no cross-site simple POST, no foreign Host (DNS rebinding).
func TestAdminRefusesCrossSiteRequests(t *testing.T) {
	f := newMonFixture(t)
	ta := startApp(t, f.args("--no-watch", "--probe-disabled")...)
	base := "http://" + ta.Admin()
	for _, tc := range []struct {
		name   string
		method string
		path   string
		hdr    map[string]string
		want   int
	}{
		{"form post from a web page", "POST", "/reload", map[string]string{"Content-Type": "text/plain"}, http.StatusUnsupportedMediaType},
		{"post without a type", "POST", "/reload", nil, http.StatusUnsupportedMediaType},
		{"json post", "POST", "/reload", map[string]string{"Content-Type": "application/json"}, http.StatusOK},
		{"custom header", "POST", "/reload", map[string]string{"X-Tlsfront-Request": "1"}, http.StatusOK},
		{"rebound name", "GET", "/status", map[string]string{"Host": "evil.example:9901"}, http.StatusMisdirectedRequest},
		{"localhost", "GET", "/status", map[string]string{"Host": "localhost"}, http.StatusOK},
		{"an IP address", "GET", "/status", map[string]string{"Host": "10.1.2.3:9901"}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, body := adminDo(t, tc.method, base+tc.path, tc.hdr); code != tc.want {
				t.Fatalf("%s %s = %d (%s), want %d", tc.method, tc.path, code, body, tc.want)
			}
		})
	}
	if n := metricSum(t, ta, "tlsfront_certificate_reloads_total"); n != 0 {
		t.Errorf("%v reloads ran; the refused requests must not reload", n)
	}
}

// With a token, everything but the health checks needs it; a metrics-only
// listener serves Prometheus without it, and nothing else.
func TestAdminTokenAndMetricsListener(t *testing.T) {
	f := newMonFixture(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ta := startApp(t, f.args("--no-watch", "--probe-disabled", "--admin-token-file", tokenFile, "--metrics", "127.0.0.1:0")...)
	base := "http://" + ta.Admin()
	if code, _ := adminDo(t, "GET", base+"/status", nil); code != http.StatusUnauthorized {
		t.Errorf("/status without the token = %d, want 401", code)
	}
	if code, _ := adminDo(t, "GET", base+"/status", map[string]string{"Authorization": "Bearer wrong"}); code != http.StatusUnauthorized {
		t.Errorf("/status with a wrong token = %d, want 401", code)
	}
	if code, _ := adminDo(t, "GET", base+"/status", map[string]string{"Authorization": "Bearer s3cret"}); code != http.StatusOK {
		t.Errorf("/status with the token = %d, want 200", code)
	}
	if code, _ := adminDo(t, "GET", base+"/readyz", nil); code != http.StatusOK {
		t.Errorf("/readyz without the token = %d, want 200 (probes carry none)", code)
	}
	metrics := "http://" + ta.app.cfg.AdminGuard.Metrics
	if code, body := adminDo(t, "GET", metrics+"/metrics", nil); code != http.StatusOK || !strings.Contains(body, "tlsfront_") {
		t.Errorf("metrics listener /metrics = %d", code)
	}
	for _, p := range []string{"/status", "/reload"} {
		if code, _ := adminDo(t, "GET", metrics+p, nil); code != http.StatusNotFound && code != http.StatusMethodNotAllowed {
			t.Errorf("metrics listener %s = %d, want nothing there", p, code)
		}
	}
}

// tlsfront reload reports each result and fails on a refusal.
func TestReloadCommand(t *testing.T) {
	f := newMonFixture(t)
	ta := startApp(t, f.args("--no-watch", "--probe-disabled")...)
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"reload", "--admin", ta.Admin()}, &out, &errOut); err != nil {
		t.Fatalf("reload: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "main") || !strings.Contains(out.String(), "unchanged") {
		t.Errorf("reload printed %q, want main unchanged", out.String())
	}
	if err := os.WriteFile(f.files.Key, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err := run(context.Background(), []string{"reload", "--admin", ta.Admin()}, &out, &errOut)
	if err == nil || !strings.Contains(out.String(), "failed") || !strings.Contains(out.String(), f.files.Key) {
		t.Fatalf("reload of a broken key = %v, printed %q; want a failure naming the key file", err, out.String())
	}
}
