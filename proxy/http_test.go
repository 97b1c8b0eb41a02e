package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tlsfront/tlsfront/limits"
)

// startHTTPBackend serves /who (echoes forwarding headers and protocol) and
// /mqtt (a WebSocket echo that speaks the "mqtt" subprotocol).
func startHTTPBackend(t testing.TB) Backend {
	t.Helper()
	up := websocket.Upgrader{Subprotocols: []string{"mqtt"}}
	mux := http.NewServeMux()
	mux.HandleFunc("/who", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("X-Forwarded-For")+"|"+r.Header.Get("X-Forwarded-Proto")+"|"+r.Host)
	})
	mux.HandleFunc("/mqtt", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			c.WriteMessage(mt, msg)
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return Backend{Network: "tcp", Address: strings.TrimPrefix(srv.URL, "http://")}
}

func httpsClient(p *testProxy, h2 bool) *http.Client {
	return httpsClientFrom(p, h2, "")
}

// httpsClientFrom is httpsClient connecting from the loopback address src
// ("": any).
func httpsClientFrom(p *testProxy, h2 bool, src string) *http.Client {
	cfg := p.ca.ClientConfig("localhost")
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: h2}
	if src != "" {
		tr.DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func TestHTTPForwarding(t *testing.T) {
	p := startProxy(t, Options{Kind: KindHTTP, Backend: startHTTPBackend(t)})
	for _, tt := range []struct {
		name  string
		h2    bool
		proto int
	}{{"http1.1", false, 1}, {"http2", true, 2}} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := httpsClient(p, tt.h2).Get("https://" + p.addr + "/who")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.ProtoMajor != tt.proto {
				t.Fatalf("proto %s", resp.Proto)
			}
			parts := strings.Split(string(body), "|")
			if len(parts) != 3 || parts[0] != "127.0.0.1" || parts[1] != "https" || parts[2] != p.addr {
				t.Fatalf("backend saw %q, want client address, https and the original host", body)
			}
		})
	}
}

func TestWebSocketKeepsSubprotocol(t *testing.T) {
	p := startProxy(t, Options{Kind: KindHTTP, Backend: startHTTPBackend(t)})
	d := websocket.Dialer{TLSClientConfig: p.ca.ClientConfig("localhost"), Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second}
	c, _, err := d.Dial("wss://"+p.addr+"/mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Subprotocol() != "mqtt" {
		t.Fatalf("subprotocol %q, want mqtt", c.Subprotocol())
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, msg := range []string{"\x10\x0c hello", strings.Repeat("x", 100_000)} {
		if err := c.WriteMessage(websocket.BinaryMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		mt, got, err := c.ReadMessage()
		if err != nil || mt != websocket.BinaryMessage || string(got) != msg {
			t.Fatalf("echo: type %d err %v len %d", mt, err, len(got))
		}
	}
}

func TestWebSocketLimitsAndPings(t *testing.T) {
	p := startProxy(t, Options{Kind: KindHTTP, Backend: startHTTPBackend(t),
		HTTP: HTTPOptions{MaxMessageSize: 1024, PingInterval: 300 * time.Millisecond}})
	d := websocket.Dialer{TLSClientConfig: p.ca.ClientConfig("localhost"), Subprotocols: []string{"mqtt"}}
	c, _, err := d.Dial("wss://"+p.addr+"/mqtt", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pinged := make(chan struct{}, 1)
	c.SetPingHandler(func(data string) error {
		select {
		case pinged <- struct{}{}:
		default:
		}
		return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	// Reading runs the ping handler; a ping arrives while idle.
	readErr := make(chan error, 1)
	go func() {
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				readErr <- err
				return
			}
		}
	}()
	select {
	case <-pinged:
	case <-time.After(5 * time.Second):
		t.Fatal("idle client was not pinged")
	}
	c.WriteMessage(websocket.BinaryMessage, make([]byte, 4096))
	select {
	case err := <-readErr:
		if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
			t.Fatalf("oversized message: got %v, want close 1009", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("oversized message did not close the connection")
	}
}

func TestWebSocketBackendDownAnswers503(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	p := startProxy(t, Options{Kind: KindHTTP, Backend: Backend{Network: "tcp", Address: dead}})
	d := websocket.Dialer{TLSClientConfig: p.ca.ClientConfig("localhost")}
	_, resp, err := d.Dial("wss://"+p.addr+"/mqtt", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("got err=%v resp=%v, want 503 with Retry-After", err, resp)
	}
}

func TestRedirect(t *testing.T) {
	r := NewRedirect(RedirectOptions{HTTPSPort: 8443})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go r.Serve(ln)
	defer r.Shutdown(context.Background())
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get("http://" + ln.Addr().String() + "/path?q=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "https://127.0.0.1:8443/path?q=1" {
		t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestHTTPBackendDownAnswers503WithRetryAfter(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	p := startProxy(t, Options{Kind: KindHTTP, Backend: Backend{Network: "tcp", Address: dead},
		Limiter: newLimiter(t, limits.Config{BreakerFailures: 1, BreakerCooldown: time.Minute})})
	// The first request finds the backend down; the next ones are refused
	// by the open breaker without a dial. Both say when to come back.
	for i := 0; i < 3; i++ {
		resp, err := httpsClient(p, false).Get("https://" + p.addr + "/who")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("request %d: %d Retry-After %q, want 503 with Retry-After", i, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
}

func TestRetryAfterIsJittered(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		v := retryAfterValue(10 * time.Second)
		n, err := strconv.Atoi(v)
		if err != nil || n < 10 || n > 15 {
			t.Fatalf("Retry-After %q, want 10 to 15 seconds", v)
		}
		seen[v] = true
	}
	// A herd told to come back must not come back in step.
	if len(seen) < 3 {
		t.Fatalf("Retry-After took only %d values in 200 answers", len(seen))
	}
}
