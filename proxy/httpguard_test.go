package proxy

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// countingBackend is an HTTP backend that counts the requests it gets.
func countingBackend(t *testing.T) (Backend, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return Backend{Network: "tcp", Address: strings.TrimPrefix(srv.URL, "http://")}, &n
}

// HTTP/2 rapid reset (CVE-2023-44487) from one connection: streams opened
// and reset at once must not become backend requests, and a legitimate
// client from another address is served meanwhile.
func TestRapidResetNotAmplified(t *testing.T) {
	be, requests := countingBackend(t)
	p := startProxy(t, Options{Kind: KindHTTP, Backend: be})
	cfg := p.ca.ClientConfig("localhost")
	cfg.NextProtos = []string{"h2"}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.7.1")}}
	raw, err := tls.DialWithDialer(d, "tcp", p.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.Write([]byte(http2.ClientPreface))
	fr := http2.NewFramer(raw, raw)
	fr.WriteSettings()
	go func() { // drain the server's frames
		for {
			if _, err := fr.ReadFrame(); err != nil {
				return
			}
		}
	}()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	block := hb.Bytes()

	good := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: p.ca.ClientConfig("localhost"), ForceAttemptHTTP2: true,
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.8.1")}}).DialContext}}
	goodOK, goodTried := 0, 0
	streams := 0
	deadline := time.Now().Add(3 * time.Second)
	for id := uint32(1); time.Now().Before(deadline) && streams < 200000; id += 2 {
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true}); err != nil {
			break // the server may end the connection: that is allowed
		}
		fr.WriteRSTStream(id, http2.ErrCodeCancel)
		streams++
		if streams%2000 == 0 {
			goodTried++
			if resp, err := good.Get("https://" + p.addr + "/"); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					goodOK++
				}
			}
		}
	}
	t.Logf("%d streams opened and reset; %d reached the backend; legitimate client %d/%d", streams, requests.Load(), goodOK, goodTried)
	if got := requests.Load() - int64(goodOK); got > int64(streams/100) {
		t.Errorf("%d of %d reset streams reached the backend, want at most 1%%", got, streams)
	}
	if goodTried > 0 && goodOK*100 < goodTried*99 {
		t.Errorf("legitimate client: %d of %d requests served", goodOK, goodTried)
	}
}

// A body trickled at 1 byte a second is cut, and the backend connection
// with it, instead of being held forever.
func TestSlowBodyCut(t *testing.T) {
	be, _ := countingBackend(t)
	p := startProxy(t, Options{Kind: KindHTTP, Backend: be, HTTP: HTTPOptions{BodyGrace: 300 * time.Millisecond, MinBodyRate: 1000}})
	c := p.dial(t, "localhost") // HTTP/1.1 over the raw TLS connection
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n")
	answered := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(c)
		answered <- string(b)
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for range 8 {
		select {
		case a := <-answered:
			if !strings.HasPrefix(a, "HTTP/1.1 408") {
				t.Fatalf("slow body answered %q, want 408", a)
			}
			return
		case <-tick.C:
			c.Write([]byte("x"))
		}
	}
	t.Fatal("a body trickled at 1 B/s was still open after 8 s")
}

// A malformed chunked body is the client's mistake: 400, not a backend
// failure.
func TestMalformedChunkedIs400(t *testing.T) {
	be, _ := countingBackend(t)
	p := startProxy(t, Options{Kind: KindHTTP, Backend: be})
	c := p.dial(t, "localhost")
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
	b, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(b), "HTTP/1.1 400") {
		t.Fatalf("malformed chunked body answered %q, want 400", b)
	}
}

// Headers over the cap are refused on HTTP/2 as on HTTP/1.1, and never
// reach the backend.
func TestHeaderCapBothProtocols(t *testing.T) {
	be, requests := countingBackend(t)
	p := startProxy(t, Options{Kind: KindHTTP, Backend: be, HTTP: HTTPOptions{MaxHeaderBytes: 8 << 10}})
	for _, h2 := range []bool{false, true} {
		req, _ := http.NewRequest(http.MethodGet, "https://"+p.addr+"/", nil)
		req.Header.Set("X-Big", strings.Repeat("a", 64<<10))
		resp, err := httpsClient(p, h2).Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 400 {
				t.Errorf("h2=%v: 64 KiB of headers answered %d", h2, resp.StatusCode)
			}
		}
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("%d oversized requests reached the backend", n)
	}
}
