package proxy

import (
	"context"
	"net"
	"os/exec"
	"testing"
	"time"
)

// TestSNITrailingDotReported: OpenSSL and Node clients given a fully
// qualified name send it with its dot; crypto/tls refuses the hello before
// any callback. The failure gets its own reason, and the report carries
// the name as sent and the fingerprint read from the raw hello.
func TestSNITrailingDotReported(t *testing.T) {
	be := newEchoBackend(t, false)
	clients := []struct {
		name string
		tool string
		args func(addr string) []string
	}{
		{"openssl", "openssl", func(addr string) []string {
			return []string{"s_client", "-connect", addr, "-servername", "localhost."}
		}},
		{"node", "node", func(addr string) []string {
			host, port, _ := net.SplitHostPort(addr)
			return []string{"-e", `const s = require("tls").connect({host: "` + host + `", port: ` + port + `, servername: "localhost.", rejectUnauthorized: false});
s.on("error", e => { console.log(e.message); process.exit(0); });
s.on("secureConnect", () => { console.log("connected"); s.end(); });`}
		}},
	}
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			if _, err := exec.LookPath(c.tool); err != nil {
				t.Skipf("%s not installed", c.tool)
			}
			rec := newRecorder()
			p := startProxy(t, Options{Backend: be.backend(), Reporter: rec})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out, _ := exec.CommandContext(ctx, c.tool, c.args(p.addr)...).CombinedOutput()
			t.Logf("%s: %.300s", c.tool, out)
			ev := p.waitEvent(t)
			if ev.Reason != ReasonSNITrailingDot || ev.RawServerName != "localhost." || ev.JA4 == "" {
				t.Fatalf("reason %q, raw name %q, JA4 %q (err %v); want sni_trailing_dot for localhost. with a JA4", ev.Reason, ev.RawServerName, ev.JA4, ev.Err)
			}
			eventually(t, "the handshake reported", 5*time.Second, func() bool {
				hs, _ := rec.snapshot()
				return len(hs) == 1 && hs[0].SNI == "localhost." && hs[0].Reason == string(ReasonSNITrailingDot)
			})
		})
	}
}
