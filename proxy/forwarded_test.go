package proxy

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	proxyproto "github.com/pires/go-proxyproto"

	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/pki/pkitest"
	"github.com/tlsfront/tlsfront/internal/testnet"
)

// proxyBackend is an HTTP and WebSocket server that requires a PROXY
// header on every connection and reports it with the request.
type proxyBackend struct {
	addr string
	seen chan seenRequest
}

type seenRequest struct {
	header *proxyproto.Header
	req    *http.Request
}

type proxyHeaderKey struct{}

func startProxyBackend(t *testing.T) *proxyBackend {
	t.Helper()
	ln := &proxyproto.Listener{Listener: testnet.Listen(t), ConnPolicy: func(proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) { return proxyproto.REQUIRE, nil }}
	b := &proxyBackend{addr: ln.Addr().String(), seen: make(chan seenRequest, 16)}
	up := websocket.Upgrader{}
	srv := &http.Server{
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if pc, ok := c.(*proxyproto.Conn); ok {
				return context.WithValue(ctx, proxyHeaderKey{}, pc.ProxyHeader())
			}
			return ctx
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h, _ := r.Context().Value(proxyHeaderKey{}).(*proxyproto.Header)
			b.seen <- seenRequest{h, r}
			if r.URL.Path == "/ws" {
				c, err := up.Upgrade(w, r, nil)
				if err == nil {
					c.Close()
				}
				return
			}
			fmt.Fprint(w, "ok")
		}),
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return b
}

// The PROXY header to an http listener's backend carries the client's
// address and the address it connected to, on plain requests and on
// WebSocket upgrades, in both versions; never a LOCAL header (RabbitMQ's
// web_mqtt drops those).
func TestPROXYHeaderOnHTTPListener(t *testing.T) {
	b := startProxyBackend(t)
	for _, version := range []int{1, 2} {
		p := startProxy(t, Options{Kind: KindHTTP, Backend: Backend{Network: "tcp", Address: b.addr, ProxyProtocol: version}})
		for _, path := range []string{"/who", "/ws"} {
			t.Run(fmt.Sprintf("v%d%s", version, path), func(t *testing.T) {
				c := p.dial(t, "localhost")
				c.SetDeadline(time.Now().Add(10 * time.Second))
				upgrade := "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
				if path == "/who" {
					upgrade = ""
				}
				fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: localhost\r\n%s\r\n", path, upgrade)
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				var s seenRequest
				select {
				case s = <-b.seen:
				case <-time.After(5 * time.Second):
					t.Fatal("backend saw no request")
				}
				h := s.header
				if h == nil || h.Command != proxyproto.PROXY || int(h.Version) != version {
					t.Fatalf("PROXY header %+v, want a v%d PROXY (not LOCAL) header", h, version)
				}
				if h.SourceAddr.String() != c.LocalAddr().String() || h.DestinationAddr.String() != p.addr {
					t.Errorf("PROXY header %s -> %s, want %s -> %s", h.SourceAddr, h.DestinationAddr, c.LocalAddr(), p.addr)
				}
			})
		}
	}
}

// Behind a load balancer that sends PROXY headers, the backend sees the
// load balancer's client: in its own PROXY header and in X-Forwarded-For.
func TestPROXYHeaderFromLoadBalancerReachesBackend(t *testing.T) {
	b := startProxyBackend(t)
	p := startProxy(t, Options{Kind: KindHTTP, AcceptProxyHeader: true, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Backend: Backend{Network: "tcp", Address: b.addr, ProxyProtocol: 2}})
	raw, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	src := &net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 4242}
	dst := &net.TCPAddr{IP: net.ParseIP("198.51.100.1"), Port: 443}
	if _, err := proxyproto.HeaderProxyFromAddrs(2, src, dst).WriteTo(raw); err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, p.ca.ClientConfig("localhost"))
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(c, "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	s := <-b.seen
	if s.header.SourceAddr.String() != src.String() || s.header.DestinationAddr.String() != dst.String() {
		t.Errorf("PROXY header %s -> %s, want %s -> %s", s.header.SourceAddr, s.header.DestinationAddr, src, dst)
	}
	if got := s.req.Header.Get("X-Forwarded-For"); got != "203.0.113.7" {
		t.Errorf("X-Forwarded-For %q", got)
	}
}

// headersBackend answers every request with the request's headers and
// Host as JSON.
func headersBackend(t *testing.T) Backend {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		h.Set("Host", r.Host)
		json.NewEncoder(w).Encode(h)
	}))
	t.Cleanup(srv.Close)
	return Backend{Network: "tcp", Address: strings.TrimPrefix(srv.URL, "http://")}
}

func getHeaders(t *testing.T, c *http.Client, url string, hdr http.Header) http.Header {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header = hdr
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got http.Header
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatalf("status %d: %v", resp.StatusCode, err)
	}
	return got
}

func TestForwardingHeaders(t *testing.T) {
	be := headersBackend(t)
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	prior := http.Header{"X-Forwarded-For": {"6.6.6.6"}, "Forwarded": {"for=6.6.6.6"}, "X-Forwarded-Client-Cert": {"Hash=forged"}}
	for _, tt := range []struct {
		name                 string
		opts                 HTTPOptions
		xff, forwarded, host string
	}{
		{"untrusted peer", HTTPOptions{}, "127.0.0.1", "", "localhost"},
		{"untrusted peer, Forwarded on", HTTPOptions{ForwardedHeader: true}, "127.0.0.1", "for=127.0.0.1;host=localhost;proto=https", "localhost"},
		{"trusted peer", HTTPOptions{TrustedProxies: loopback}, "6.6.6.6, 127.0.0.1", "for=6.6.6.6", "localhost"},
		{"trusted peer, Forwarded on", HTTPOptions{TrustedProxies: loopback, ForwardedHeader: true}, "6.6.6.6, 127.0.0.1", "for=6.6.6.6, for=127.0.0.1;host=localhost;proto=https", "localhost"},
		{"rewrite host", HTTPOptions{RewriteHost: true}, "127.0.0.1", "", be.Address},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxy(t, Options{Kind: KindHTTP, Backend: be, HTTP: tt.opts})
			_, port, _ := net.SplitHostPort(p.addr)
			c := httpsClient(p, false)
			got := getHeaders(t, c, "https://localhost:"+port+"/", prior.Clone())
			wantHost := "localhost:" + port
			if tt.host != "localhost" {
				wantHost = tt.host
			}
			for k, v := range map[string]string{"X-Forwarded-For": tt.xff, "Forwarded": tt.forwarded, "Host": wantHost,
				"X-Forwarded-Proto": "https", "X-Forwarded-Host": "localhost:" + port, "X-Forwarded-Client-Cert": ""} {
				if k == "Forwarded" && tt.forwarded != "" {
					v = strings.ReplaceAll(v, "host=localhost", "host=\"localhost:"+port+"\"")
				}
				if g := strings.Join(got.Values(k), ", "); g != v {
					t.Errorf("%s: %q, want %q", k, g, v)
				}
			}
		})
	}
}

// With mTLS the verified client certificate reaches the backend in
// Envoy's X-Forwarded-Client-Cert format; what the client claims in
// that header never does.
func TestClientCertForwarded(t *testing.T) {
	be := headersBackend(t)
	ca := pkitest.NewCA(t)
	srvLeaf := ca.Leaf(pki.Options{})
	leaf := ca.Leaf(pki.Options{CommonName: "device-7", DNSNames: []string{"device-7.example", "alt.example"}})
	sum := sha256.Sum256(leaf.DER)
	want := "Hash=" + hex.EncodeToString(sum[:]) + `;Subject="CN=device-7,O=tlsfront test";URI=;DNS=device-7.example;DNS=alt.example`
	for _, tt := range []struct {
		name     string
		auth     tls.ClientAuthType
		verified bool // HTTPOptions.ClientCertVerified
		sendCert bool
		want     string
	}{
		{"verified by the TLS stack", tls.RequireAndVerifyClientCert, false, true, want},
		{"verified by tlsfront's verifier", tls.RequestClientCert, true, true, want},
		{"certificate not verified", tls.RequestClientCert, false, true, ""},
		{"mTLS on, no certificate", tls.VerifyClientCertIfGiven, true, false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxy(t, Options{Kind: KindHTTP, Backend: be, ClientCertsVerified: tt.verified,
				TLS: &tls.Config{
					Certificates: []tls.Certificate{{Certificate: [][]byte{srvLeaf.DER, ca.Intermediate.DER}, PrivateKey: srvLeaf.Key}},
					ClientAuth:   tt.auth, ClientCAs: ca.Pool(),
				}})
			cfg := ca.ClientConfig("localhost")
			if tt.sendCert {
				cfg.Certificates = []tls.Certificate{{Certificate: [][]byte{leaf.DER, ca.Intermediate.DER}, PrivateKey: leaf.Key}}
			}
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
			got := getHeaders(t, c, "https://"+p.addr+"/", http.Header{"X-Forwarded-Client-Cert": {"Hash=forged"}})
			if g := strings.Join(got.Values("X-Forwarded-Client-Cert"), "|"); g != tt.want {
				t.Errorf("X-Forwarded-Client-Cert\n got %s\nwant %s", g, tt.want)
			}
		})
	}
}

// A backend that takes a request and closes without answering is a bad
// gateway, not a busy server.
func TestBackendClosingWithoutAnswerIs502(t *testing.T) {
	ln := testnet.Listen(t)
	testnet.Serve(t, ln, func(c net.Conn) {
		http.ReadRequest(bufio.NewReader(c))
	})
	p := startProxy(t, Options{Kind: KindHTTP, Backend: Backend{Network: "tcp", Address: ln.Addr().String()}})
	for _, upgrade := range []bool{false, true} {
		t.Run(fmt.Sprintf("upgrade=%v", upgrade), func(t *testing.T) {
			req, _ := http.NewRequest("GET", "https://"+p.addr+"/x", nil)
			if upgrade {
				req.Header.Set("Connection", "Upgrade")
				req.Header.Set("Upgrade", "websocket")
			}
			resp, err := httpsClient(p, false).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("Retry-After") != "" {
				t.Fatalf("status %d Retry-After %q, want 502 without Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
			}
		})
	}
}

func TestPickRoute(t *testing.T) {
	be := func(name string) Backend { return Backend{Network: "tcp", Address: name + ":1"} }
	routes := []HTTPRoute{
		{PathPrefix: "/mqtt", Backend: be("mqtt")},
		{Host: []string{"api.example"}, Backend: be("api")},
		{Host: []string{"api.example"}, PathPrefix: "/mqtt/admin", Backend: be("admin")},
		{SNI: []string{"sni.example"}, Backend: be("sni")},
		{SNI: []string{"sni.example"}, Host: []string{"api.example"}, Backend: be("both")},
	}
	for _, tt := range []struct{ sni, host, path, want string }{
		{"", "localhost", "/", "default"},
		{"", "localhost", "/mqtt/x", "mqtt"},
		{"", "API.example:443", "/", "api"},
		{"", "api.example", "/mqtt/admin/1", "admin"},
		{"", "api.example", "/mqtt/y", "mqtt"}, // longest prefix beats Host
		{"sni.example", "other", "/", "sni"},
		{"sni.example", "api.example", "/", "both"}, // Host and SNI beat Host alone
		{"sni.example", "api.example", "/mqtt", "mqtt"},
	} {
		t.Run(tt.sni+"|"+tt.host+tt.path, func(t *testing.T) {
			r := httptest.NewRequest("GET", "https://"+tt.host+tt.path, nil)
			r.Host = tt.host
			r.TLS = &tls.ConnectionState{ServerName: tt.sni}
			if got := pickRoute(routes, be("default"), r); got != be(tt.want) {
				t.Errorf("got %s, want %s", got, be(tt.want))
			}
		})
	}
}

// What the breaker hears from an HTTP backend connection.
func TestAnswerConnReports(t *testing.T) {
	for _, tt := range []struct {
		name string
		run  func(c *answerConn, backend net.Conn)
		want error // nil: success; context.Canceled: giving up; errNoAnswer: failure
	}{
		{"answered", func(c *answerConn, b net.Conn) {
			go func() { b.Read(make([]byte, 3)); b.Write([]byte("HTTP/1.1 403")) }()
			c.Write([]byte("GET"))
			c.Read(make([]byte, 8))
		}, nil},
		{"asked, closed unanswered", func(c *answerConn, b net.Conn) {
			go func() { b.Read(make([]byte, 3)); b.Close() }()
			c.Write([]byte("GET"))
			c.Read(make([]byte, 8))
		}, errNoAnswer},
		{"never asked, closed by the backend", func(c *answerConn, b net.Conn) {
			b.Close()
			c.Read(make([]byte, 8))
		}, context.Canceled},
		{"closed by us first", func(c *answerConn, b net.Conn) {
			c.Close()
			c.Read(make([]byte, 8))
		}, context.Canceled},
	} {
		t.Run(tt.name, func(t *testing.T) {
			client, backend := net.Pipe()
			defer backend.Close()
			got := make(chan error, 2)
			c := &answerConn{Conn: client, done: func(err error) { got <- err }}
			tt.run(c, backend)
			c.Close()
			err := <-got
			if (tt.want == nil) != (err == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("breaker heard %v, want %v", err, tt.want)
			}
			if len(got) != 0 {
				t.Fatal("reported twice")
			}
		})
	}
}
