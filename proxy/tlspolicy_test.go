package proxy

import (
	"context"
	"crypto/tls"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// openssl connects with args and reports whether the handshake completed.
func opensslHandshake(t *testing.T, addr string, args ...string) (bool, string) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a := append([]string{"s_client", "-connect", addr, "-servername", "localhost"}, args...)
	cmd := exec.CommandContext(ctx, "openssl", a...)
	cmd.Stdin = strings.NewReader("")
	out, _ := cmd.CombinedOutput()
	return strings.Contains(string(out), "Cipher is ") && !strings.Contains(string(out), "Cipher is (NONE)"), string(out)
}

// A listener's TLS policy decides which client stacks get in: an old
// device fleet can be served on purpose on its own listener while the
// default stays modern.
func TestTLSPolicyProfiles(t *testing.T) {
	be := newEchoBackend(t, false)
	// OpenSSL 3 refuses TLS 1.0 and SHA-1 below security level 0.
	tls10 := []string{"-tls1", "-cipher", "ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0"}
	cbc12 := []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"}
	for _, tc := range []struct {
		policy     TLSPolicy
		tls10, cbc bool
	}{
		{TLSPolicy{}, false, false},
		{TLSPolicy{Profile: ProfileIntermediate}, false, true},
		{TLSPolicy{Profile: ProfileLegacy}, true, true},
		{TLSPolicy{Profile: ProfileLegacy, MinVersion: tls.VersionTLS12}, false, true},
	} {
		t.Run(tc.policy.Name(), func(t *testing.T) {
			p := startProxy(t, Options{Backend: be.backend(), TLSPolicy: tc.policy})
			if ok, out := opensslHandshake(t, p.addr, tls10...); ok != tc.tls10 {
				t.Errorf("TLS 1.0 client got in: %v, want %v\n%.600s", ok, tc.tls10, out)
			}
			if ok, out := opensslHandshake(t, p.addr, cbc12...); ok != tc.cbc {
				t.Errorf("TLS 1.2 CBC-only client got in: %v, want %v\n%.600s", ok, tc.cbc, out)
			}
			if ok, out := opensslHandshake(t, p.addr, "-tls1_3"); !ok {
				t.Errorf("a modern client was refused\n%.600s", out)
			}
		})
	}
}

// Without the post-quantum hybrid, a client that offers it is answered
// with a classic group.
func TestTLSPolicyNoPostQuantum(t *testing.T) {
	be := newEchoBackend(t, false)
	for _, tc := range []struct {
		policy TLSPolicy
		pq     bool
	}{{TLSPolicy{}, true}, {TLSPolicy{NoPostQuantum: true}, false}} {
		p := startProxy(t, Options{Backend: be.backend(), TLSPolicy: tc.policy})
		cfg := p.ca.ClientConfig("localhost")
		cfg.CurvePreferences = nil // Go's default: X25519MLKEM768 first
		c, err := tls.Dial("tcp", p.addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if got := c.ConnectionState().CurveID == tls.X25519MLKEM768; got != tc.pq {
			t.Errorf("no_post_quantum=%v: negotiated %v", tc.policy.NoPostQuantum, c.ConnectionState().CurveID)
		}
	}
}
