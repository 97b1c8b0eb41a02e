package proxy

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/tlsfront/tlsfront/limits"
)

// TestListenerConfigValidate: each problem is reported at its YAML key,
// after the listener's place, and a valid listener gets its defaults.
func TestListenerConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		lc      ListenerConfig
		wantErr []string // each must appear; none: valid
	}{
		{name: "tcp defaults", lc: ListenerConfig{Backend: "127.0.0.1:1883"}},
		{name: "redirect", lc: ListenerConfig{Kind: "redirect", HTTPSPort: 8443}},
		{name: "unknown kind", lc: ListenerConfig{Kind: "udp"},
			wantErr: []string{`listeners[0].kind: "udp" is not tcp, http or redirect`}},
		{name: "negative timeout", lc: ListenerConfig{Backend: "127.0.0.1:1", IdleTimeout: -1},
			wantErr: []string{"listeners[0]: timeouts must not be negative"}},
		{name: "bad protocol", lc: ListenerConfig{Backend: "127.0.0.1:1", Protocol: "amqp"},
			wantErr: []string{`listeners[0].protocol: "amqp" is not mqtt or raw`}},
		{name: "http takes no protocol", lc: ListenerConfig{Kind: "http", Backend: "127.0.0.1:1", Protocol: "mqtt"},
			wantErr: []string{"listeners[0].protocol: a http listener takes no protocol"}},
		{name: "missing backend", lc: ListenerConfig{},
			wantErr: []string{"listeners[0].backend: missing"}},
		{name: "redirect has no backend", lc: ListenerConfig{Kind: "redirect", Backend: "127.0.0.1:1"},
			wantErr: []string{"listeners[0].backend: a redirect listener has no backend"}},
		{name: "redirect takes no tls", lc: ListenerConfig{Kind: "redirect", TLS: TLSPolicyConfig{Profile: "legacy"}},
			wantErr: []string{"listeners[0].tls: a redirect listener does not terminate TLS"}},
		{name: "tls keys", lc: ListenerConfig{Backend: "127.0.0.1:1", TLS: TLSPolicyConfig{MinVersion: "0.9", Groups: []string{"X25519", "nope"}}},
			wantErr: []string{"listeners[0].tls.min_version: ", "listeners[0].tls.groups[1]: "}},
		{name: "proxy header without networks", lc: ListenerConfig{Backend: "127.0.0.1:1", AcceptProxyProtocol: true},
			wantErr: []string{"listeners[0].proxy_protocol_from: required with accept_proxy_protocol"}},
		{name: "networks without proxy header", lc: ListenerConfig{Backend: "127.0.0.1:1", ProxyProtocolFrom: limits.Networks{netip.MustParsePrefix("10.0.0.0/8")}},
			wantErr: []string{"listeners[0].proxy_protocol_from: set, but accept_proxy_protocol is off"}},
		{name: "tcp route by host", lc: ListenerConfig{Backend: "127.0.0.1:1", Routes: []RouteConfig{{Host: []string{"a.example"}, Backend: "127.0.0.1:2"}}},
			wantErr: []string{"listeners[0].routes[0]: host and path_prefix route http listeners only"}},
		{name: "path prefix without slash", lc: ListenerConfig{Kind: "http", Backend: "127.0.0.1:1", Routes: []RouteConfig{{PathPrefix: "api", Backend: "127.0.0.1:2"}}},
			wantErr: []string{`listeners[0].routes[0].path_prefix: "api" must start with /`}},
		{name: "trusted proxy not a CIDR", lc: ListenerConfig{Kind: "http", Backend: "127.0.0.1:1", TrustedProxies: []string{"10.0.0.0/8", "office"}},
			wantErr: []string{`listeners[0].trusted_proxies[1]: "office" is not a CIDR (10.0.0.0/8) or an address`}},
		{name: "trusted proxies on tcp", lc: ListenerConfig{Backend: "127.0.0.1:1", TrustedProxies: []string{"10.0.0.1"}},
			wantErr: []string{"listeners[0]: preserve_host, trusted_proxies and forwarded_header are for http listeners"}},
		{name: "client_allow on redirect", lc: ListenerConfig{Kind: "redirect", ClientAllow: ClientAllow{CN: []string{"x"}}},
			wantErr: []string{"listeners[0].client_allow: a redirect listener takes no client certificates"}},
		{name: "client_allow bad uri", lc: ListenerConfig{Backend: "127.0.0.1:1", ClientAllow: ClientAllow{URI: []string{"not a uri"}}},
			wantErr: []string{"listeners[0].client_allow.uri[0]: "}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lc := tc.lc
			lc.Default(0)
			err := lc.Validate("listeners[0]")
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestListenerConfigDefaults: the kind, name and protocol are filled in,
// and the TLS names become the policy.
func TestListenerConfigDefaults(t *testing.T) {
	lc := ListenerConfig{Backend: "127.0.0.1:1883", TLS: TLSPolicyConfig{MinVersion: "1.3"}}
	lc.Default(2)
	if err := lc.Validate("listeners[2]"); err != nil {
		t.Fatal(err)
	}
	if lc.Kind != "tcp" || lc.Name != "tcp-2" || lc.Protocol != "mqtt" {
		t.Fatalf("kind %q, name %q, protocol %q", lc.Kind, lc.Name, lc.Protocol)
	}
	if got := lc.TLS.Policy().MinVersion; got != tls.VersionTLS13 {
		t.Fatalf("min version %x", got)
	}
	if !lc.Spec().TLS || !lc.Spec().Backend || lc.Spec().ChallengePort != "443" {
		t.Fatalf("spec %+v", lc.Spec())
	}
}

// TestValidateListeners: the section as a whole gets defaulted names, and
// a clashing name or a bad listen address is named by its place.
func TestValidateListeners(t *testing.T) {
	ls := []ListenerConfig{
		{Listen: "127.0.0.1:8883", Backend: "127.0.0.1:1883"},
		{Name: "tcp-0", Listen: "8884", Backend: "127.0.0.1:1883"},
		{Kind: "redirect", Listen: ":80"},
	}
	err := ValidateListeners(ls)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`listeners[1].name: "tcp-0" is used by another listener`, `listeners[1].listen: "8884" is not host:port`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "listeners[0]") || strings.Contains(err.Error(), "listeners[2]") {
		t.Errorf("valid listeners reported:\n%v", err)
	}
	if ls[2].Name != "redirect-2" {
		t.Errorf("name %q, want redirect-2", ls[2].Name)
	}
	if n := CountTLS(ls); n != 2 {
		t.Errorf("CountTLS = %d, want 2", n)
	}
}

// TestListenerConfigBuild: a validated listener builds into its kind.
func TestListenerConfigBuild(t *testing.T) {
	// New only needs a source of certificates; nothing handshakes here.
	getCert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, nil }
	tests := []struct {
		name string
		lc   ListenerConfig
		want string
	}{
		{name: "tcp", lc: ListenerConfig{Backend: "127.0.0.1:1883", Routes: []RouteConfig{{SNI: []string{"A.example"}, Backend: "127.0.0.1:1884"}}}, want: "*proxy.Server"},
		{name: "http", lc: ListenerConfig{Kind: "http", Backend: "127.0.0.1:8080", TrustedProxies: []string{"10.0.0.1"}}, want: "*proxy.Server"},
		{name: "redirect", lc: ListenerConfig{Kind: "redirect"}, want: "*proxy.Redirect"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lc := tc.lc
			lc.Default(0)
			if err := lc.Validate("listeners[0]"); err != nil {
				t.Fatal(err)
			}
			l, err := lc.Build(ListenerDeps{TLS: &tls.Config{GetCertificate: getCert}})
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprintf("%T", l); got != tc.want {
				t.Fatalf("built %s, want %s", got, tc.want)
			}
		})
	}
}

// TestRoutedNames: every routed server name, of every listener, in order.
func TestRoutedNames(t *testing.T) {
	got := RoutedNames([]ListenerConfig{
		{Routes: []RouteConfig{{SNI: []string{"a.example", "b.example"}}, {Host: []string{"c.example"}}}},
		{Kind: "redirect"},
		{Routes: []RouteConfig{{SNI: []string{"d.example"}}}},
	})
	if want := []string{"a.example", "b.example", "d.example"}; !slices.Equal(got, want) {
		t.Fatalf("routed %v, want %v", got, want)
	}
}
