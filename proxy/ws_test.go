package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tlsfront/tlsfront/internal/testnet"
	"github.com/tlsfront/tlsfront/limits"
)

// wsBackend is a gorilla/websocket server behind the proxy.
//
//	/echo         echoes messages, with permessage-deflate when offered
//	/drop         upgrades, then drops the TCP connection after the first message
//	/refuse?code= answers the upgrade with that status, a header and a body
type wsBackend struct {
	addr     string
	requests chan *http.Request // upgrade requests, as the backend saw them
	pongs    atomic.Int64       // pongs the backend received
	closes   chan int           // close codes the backend received
}

func startWSBackend(t *testing.T) *wsBackend {
	t.Helper()
	b := &wsBackend{requests: make(chan *http.Request, 64), closes: make(chan int, 64)}
	up := websocket.Upgrader{Subprotocols: []string{"mqtt"}, EnableCompression: true, CheckOrigin: func(*http.Request) bool { return true }}
	record := func(r *http.Request) {
		select {
		case b.requests <- r:
		default:
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		c.SetPongHandler(func(string) error { b.pongs.Add(1); return nil })
		c.SetCloseHandler(func(code int, text string) error {
			b.closes <- code
			c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
			return nil
		})
		c.SetReadLimit(64 << 20)
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(mt, msg); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/drop", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c.ReadMessage()
		c.NetConn().Close() // no close frame
	})
	mux.HandleFunc("/refuse", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		w.Header().Set("WWW-Authenticate", `Basic realm="broker"`)
		w.Header().Set("X-Backend-Reason", "refused by test")
		if code == http.StatusFound {
			w.Header().Set("Location", "/login")
		}
		w.WriteHeader(code)
		io.WriteString(w, "backend says "+strconv.Itoa(code))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	b.addr = strings.TrimPrefix(srv.URL, "http://")
	return b
}

func (b *wsBackend) backend() Backend { return Backend{Network: "tcp", Address: b.addr} }

// rawWS is a WebSocket client written for these tests: it sends exactly
// the frames it is told to, masked or not, and reads frames as they come.
type rawWS struct {
	t    *testing.T
	c    *tls.Conn
	br   *bufio.Reader
	resp *http.Response
}

func dialRawWS(t *testing.T, p *testProxy, path string, extra string) *rawWS {
	t.Helper()
	c := p.dial(t, "localhost")
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n%s\r\n", path, extra)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("upgrade answer: %v", err)
	}
	return &rawWS{t: t, c: c, br: br, resp: resp}
}

func (w *rawWS) write(op byte, payload []byte, masked bool) {
	w.t.Helper()
	if err := w.writeErr(op, payload, masked, true); err != nil {
		w.t.Fatalf("write frame: %v", err)
	}
}

func (w *rawWS) writeErr(op byte, payload []byte, masked, fin bool) error {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	f := []byte{b0}
	var mbit byte
	if masked {
		mbit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		f = append(f, mbit|byte(n))
	case n <= 0xffff:
		f = binary.BigEndian.AppendUint16(append(f, mbit|126), uint16(n))
	default:
		f = binary.BigEndian.AppendUint64(append(f, mbit|127), uint64(n))
	}
	p := bytes.Clone(payload)
	if masked {
		key := [4]byte{1, 2, 3, 4}
		f = append(f, key[:]...)
		unmask(key, 0, p)
	}
	_, err := w.c.Write(append(f, p...))
	return err
}

// read returns the next frame, unmasked.
func (w *rawWS) read() (frameHeader, []byte, error) {
	var hb [maxFrameHeader]byte
	h, err := readFrameHeader(w.br, &hb)
	if err != nil {
		return h, nil, err
	}
	p := make([]byte, h.length)
	if _, err := io.ReadFull(w.br, p); err != nil {
		return h, nil, err
	}
	if h.masked {
		unmask(h.key, 0, p)
	}
	return h, p, nil
}

// readClose reads frames until a close frame and returns its code and
// reason; it fails the test if the stream ends first.
func (w *rawWS) readClose() (int, string) {
	w.t.Helper()
	for {
		h, p, err := w.read()
		if err != nil {
			w.t.Fatalf("stream ended before a close frame: %v", err)
		}
		if h.opcode == opClose {
			if h.masked {
				w.t.Errorf("close frame to the client is masked")
			}
			if len(p) < 2 {
				return 1005, ""
			}
			return int(binary.BigEndian.Uint16(p)), string(p[2:])
		}
	}
}

func closeCodeOf(p []byte) int {
	if len(p) < 2 {
		return 0
	}
	return int(binary.BigEndian.Uint16(p))
}

// Any answer the backend gives an upgrade other than 101 reaches the
// client as it is: status, headers and body. It used to be cut to its
// status, and a 302 or 200 became a 503.
func TestUpgradeRefusalPassesThrough(t *testing.T) {
	b := startWSBackend(t)
	p := startProxy(t, Options{Kind: KindHTTP, Backend: b.backend()})
	for _, code := range []int{200, 302, 401, 403, 404, 426, 500} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			w := dialRawWS(t, p, "/refuse?code="+strconv.Itoa(code), "")
			body, _ := io.ReadAll(io.LimitReader(w.resp.Body, 1<<10))
			if w.resp.StatusCode != code {
				t.Fatalf("status %d, want %d", w.resp.StatusCode, code)
			}
			if got := w.resp.Header.Get("WWW-Authenticate"); got != `Basic realm="broker"` {
				t.Errorf("WWW-Authenticate %q lost", got)
			}
			if got := w.resp.Header.Get("X-Backend-Reason"); got != "refused by test" {
				t.Errorf("X-Backend-Reason %q lost", got)
			}
			if code == 302 && w.resp.Header.Get("Location") != "/login" {
				t.Errorf("Location %q lost", w.resp.Header.Get("Location"))
			}
			if w.resp.Header.Get("Retry-After") != "" {
				t.Errorf("Retry-After added to the backend's answer")
			}
			if string(body) != "backend says "+strconv.Itoa(code) {
				t.Errorf("body %q, want the backend's", body)
			}
		})
	}
}

// Ordinary answers to upgrades are the backend working: ten 403s in a row
// do not open a breaker that opens after three failures.
func TestUpgradeRefusalsDoNotTripBreaker(t *testing.T) {
	b := startWSBackend(t)
	rec := newRecorder()
	p := startProxy(t, Options{Kind: KindHTTP, Backend: b.backend(), Reporter: rec,
		Limiter: newLimiter(t, limits.Config{BreakerFailures: 3, BreakerCooldown: time.Minute})})
	for i := range 10 {
		w := dialRawWS(t, p, "/refuse?code=403", "")
		if w.resp.StatusCode != 403 {
			t.Fatalf("refusal %d: status %d, want 403", i, w.resp.StatusCode)
		}
	}
	d := websocket.Dialer{TLSClientConfig: p.ca.ClientConfig("localhost")}
	c, resp, err := d.Dial("wss://"+p.addr+"/echo", nil)
	if err != nil {
		t.Fatalf("good upgrade after 10 refusals: %v (resp %v)", err, resp)
	}
	c.Close()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, r := range rec.refusals {
		t.Errorf("refusal reported: %+v", r)
	}
}

// Transport failures do count: a backend that accepts and closes without
// a byte of answer, for three clients, opens a breaker that opens after
// three failures, for plain requests and upgrades alike.
func TestNoAnswerTripsBreaker(t *testing.T) {
	for _, upgrade := range []bool{false, true} {
		t.Run(fmt.Sprintf("upgrade=%v", upgrade), func(t *testing.T) {
			ln := testnet.Listen(t)
			testnet.Serve(t, ln, func(c net.Conn) { http.ReadRequest(bufio.NewReader(c)) })
			rec := newRecorder()
			p := startProxy(t, Options{Kind: KindHTTP, Backend: Backend{Network: "tcp", Address: ln.Addr().String()}, Reporter: rec,
				Limiter: newLimiter(t, limits.Config{BreakerFailures: 3, BreakerCooldown: time.Minute})})
			for i, want := range []int{502, 502, 502, 503} {
				// Three clients: one client's requests count against the
				// backend once (see dialer.unanswered).
				c := httpsClientFrom(p, false, fmt.Sprintf("127.0.5.%d", i+1))
				req, _ := http.NewRequest("GET", "https://"+p.addr+"/x", nil)
				if upgrade {
					req.Header.Set("Connection", "Upgrade")
					req.Header.Set("Upgrade", "websocket")
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != want {
					t.Fatalf("request %d: status %d, want %d", i, resp.StatusCode, want)
				}
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if len(rec.refusals) != 1 || rec.refusals[0].Limit != "backend_down" {
				t.Errorf("refusals %+v, want one backend_down", rec.refusals)
			}
		})
	}
}

// The upgrade reaches the backend with every end-to-end header: the
// client's Host, extensions, custom auth and request IDs; compression is
// negotiated between client and backend and works through the relay.
func TestUpgradeForwardsEndToEnd(t *testing.T) {
	b := startWSBackend(t)
	for _, tt := range []struct {
		name        string
		rewriteHost bool
	}{{"preserve host", false}, {"rewrite host", true}} {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxy(t, Options{Kind: KindHTTP, Backend: b.backend(), HTTP: HTTPOptions{RewriteHost: tt.rewriteHost}})
			d := websocket.Dialer{TLSClientConfig: p.ca.ClientConfig("localhost"), EnableCompression: true, Subprotocols: []string{"mqtt"}}
			hdr := http.Header{"Origin": {"https://app.example"}, "X-Request-Id": {"req-42"}, "X-Api-Key": {"k1"},
				"X-Forwarded-For": {"6.6.6.6"}, "X-Forwarded-Client-Cert": {"Hash=forged"}}
			c, resp, err := d.Dial("wss://"+p.addr+"/echo", hdr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if !strings.Contains(resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate") {
				t.Errorf("extensions %q: compression not negotiated end to end", resp.Header.Get("Sec-WebSocket-Extensions"))
			}
			if c.Subprotocol() != "mqtt" {
				t.Errorf("subprotocol %q", c.Subprotocol())
			}
			r := <-b.requests
			want := map[string]string{
				"Origin": "https://app.example", "X-Request-Id": "req-42", "X-Api-Key": "k1",
				"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https", "X-Forwarded-Host": p.addr,
				"X-Forwarded-Client-Cert": "", "User-Agent": "Go-http-client/1.1",
			}
			for k, v := range want {
				if got := r.Header.Get(k); got != v {
					t.Errorf("backend saw %s %q, want %q", k, got, v)
				}
			}
			if !strings.Contains(r.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate") {
				t.Errorf("backend saw Sec-WebSocket-Extensions %q", r.Header.Get("Sec-WebSocket-Extensions"))
			}
			wantHost := p.addr
			if tt.rewriteHost {
				wantHost = b.addr
			}
			if r.Host != wantHost {
				t.Errorf("backend saw Host %q, want %q", r.Host, wantHost)
			}
			c.EnableWriteCompression(true)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			for _, msg := range []string{strings.Repeat("compressible ", 10_000), "short"} {
				if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
					t.Fatal(err)
				}
				_, got, err := c.ReadMessage()
				if err != nil || string(got) != msg {
					t.Fatalf("compressed echo: err %v, %d bytes back of %d", err, len(got), len(msg))
				}
			}
		})
	}
}

// paho (Python) answers pings with an unmasked pong. tlsfront's own
// pings are answered to tlsfront, which takes the pong whether masked or
// not; the session outlives many ping intervals and the backend (which
// would reject an unmasked frame) never sees one.
func TestUnmaskedPongKeepsSession(t *testing.T) {
	b := startWSBackend(t)
	// Long enough that a loaded machine answers each ping in time.
	p := startProxy(t, Options{Kind: KindHTTP, Backend: b.backend(), HTTP: HTTPOptions{PingInterval: 100 * time.Millisecond}})
	for _, masked := range []bool{false, true} {
		t.Run(fmt.Sprintf("masked=%v", masked), func(t *testing.T) {
			w := dialRawWS(t, p, "/echo", "")
			if w.resp.StatusCode != 101 {
				t.Fatalf("status %d", w.resp.StatusCode)
			}
			w.c.SetDeadline(time.Now().Add(10 * time.Second))
			for pings := 0; pings < 5; {
				h, pl, err := w.read()
				if err != nil {
					t.Fatalf("after %d pings: %v", pings, err)
				}
				if h.opcode != opPing {
					t.Fatalf("got opcode %d (payload %q), want pings only", h.opcode, pl)
				}
				if h.masked {
					t.Fatal("ping to the client is masked")
				}
				pings++
				w.write(opPong, pl, masked)
			}
			w.write(opText, []byte("still here"), true)
			for {
				h, pl, err := w.read()
				if err != nil {
					t.Fatal(err)
				}
				if h.opcode == opText {
					if string(pl) != "still here" {
						t.Fatalf("echo %q", pl)
					}
					break
				}
			}
			if n := b.pongs.Load(); n != 0 {
				t.Errorf("backend received %d pongs meant for tlsfront", n)
			}
			// A pong that answers no ping of tlsfront's is the backend's.
			w.write(opPong, []byte("heartbeat"), true)
			eventually(t, "unsolicited pong forwarded", 5*time.Second, func() bool { return b.pongs.Load() == 1 })
			b.pongs.Store(0)
		})
	}
}

// A backend that drops in the middle of a frame: the client's stream ends
// there, with no close frame written inside the cut frame.
func TestBackendDropsMidFrame(t *testing.T) {
	ln := testnet.Listen(t)
	testnet.Serve(t, ln, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
		c.Write([]byte{0x82, 0x7e, 0x03, 0xe8}) // a 1000-byte binary frame...
		c.Write([]byte("only ten b"))           // ...cut after 10 bytes
	})
	p := startProxy(t, Options{Kind: KindHTTP, Backend: Backend{Network: "tcp", Address: ln.Addr().String()}})
	w := dialRawWS(t, p, "/", "")
	if w.resp.StatusCode != 101 {
		t.Fatalf("status %d", w.resp.StatusCode)
	}
	var hb [maxFrameHeader]byte
	h, err := readFrameHeader(w.br, &hb)
	if err != nil || h.length != 1000 {
		t.Fatalf("header %+v err %v", h, err)
	}
	rest, err := io.ReadAll(w.br)
	if string(rest) != "only ten b" {
		t.Fatalf("after the cut frame's 10 bytes: %q (err %v), want nothing more", rest, err)
	}
}

// No close code reserved for local use (1005, 1006, 1015) goes on the
// wire, and every close tlsfront makes says why.
func TestCloseCodes(t *testing.T) {
	b := startWSBackend(t)
	t.Run("backend drops", func(t *testing.T) {
		p := startProxy(t, Options{Kind: KindHTTP, Backend: b.backend()})
		w := dialRawWS(t, p, "/drop", "")
		w.write(opText, []byte("bye"), true)
		code, reason := w.readClose()
		if code != closeInternalError || reason == "" {
			t.Fatalf("close %d %q, want 1011 with a reason", code, reason)
		}
	})
	t.Run("message too big", func(t *testing.T) {
		p := startProxy(t, Options{Kind: KindHTTP, Backend: b.backend(), HTTP: HTTPOptions{MaxMessageSize: 1000}})
		// Several times: the close frame must be delivered, not lost to
		// a socket closed at once.
		for range 5 {
			w := dialRawWS(t, p, "/echo", "")
			// Fragments count together: 600 + 600 is over 1000.
			w.writeErr(opBinary, make([]byte, 600), true, false)
			w.writeErr(opContinuation, make([]byte, 600), true, true)
			code, _ := w.readClose()
			if code != closeMessageTooBig {
				t.Fatalf("close %d, want 1009", code)
			}
			select {
			case c := <-b.closes:
				if c != closeGoingAway && c != closeMessageTooBig {
					t.Fatalf("backend got close %d, want 1001 or 1009", c)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("backend got no close frame")
			}
		}
	})
	t.Run("ping timeout", func(t *testing.T) {
		p := startProxy(t, Options{Kind: KindHTTP, Backend: b.backend(), HTTP: HTTPOptions{PingInterval: 30 * time.Millisecond}})
		w := dialRawWS(t, p, "/echo", "")
		code, reason := w.readClose() // reads pings, answers none
		if (code != closeGoingAway && code != closeInternalError) || !strings.Contains(reason, "ping timeout") {
			t.Fatalf("close %d %q, want 1001 or 1011 saying ping timeout", code, reason)
		}
		select {
		case c := <-b.closes:
			if c != closeGoingAway {
				t.Fatalf("backend got close %d, want 1001", c)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("backend got no close frame")
		}
	})
	t.Run("shutdown", func(t *testing.T) {
		p := startProxy(t, Options{Kind: KindHTTP, Backend: b.backend()})
		w := dialRawWS(t, p, "/echo", "")
		w.write(opText, []byte("hi"), true)
		if h, _, err := w.read(); err != nil || h.opcode != opText {
			t.Fatalf("echo: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- p.Shutdown(ctx) }()
		code, reason := w.readClose()
		if code != closeGoingAway || reason == "" {
			t.Fatalf("close %d %q, want 1001 with a reason", code, reason)
		}
		w.write(opClose, closePayload(closeGoingAway, ""), true)
		select {
		case c := <-b.closes:
			if c != closeGoingAway {
				t.Fatalf("backend got close %d, want 1001", c)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("backend got no close frame")
		}
		<-done
	})
	t.Run("client codes pass both ways", func(t *testing.T) {
		p := startProxy(t, Options{Kind: KindHTTP, Backend: b.backend()})
		for _, code := range []int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 3000, 4000, 4999} {
			w := dialRawWS(t, p, "/echo", "")
			w.write(opClose, closePayload(uint16(code), "bye"), true)
			got, reason := w.readClose()
			if got != code || reason != "bye" {
				t.Errorf("sent %d, the backend's answer came back as %d %q", code, got, reason)
			}
			if c := <-b.closes; c != code {
				t.Errorf("sent %d, the backend got %d", code, c)
			}
			w.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, _, err := w.read(); !errors.Is(err, io.EOF) {
				t.Errorf("after the close handshake: %v, want the end of the stream", err)
			}
		}
	})
}

// Shutdown with a deadline ends WebSockets with 1001 one after another
// over the grace period, so that their clients do not all reconnect at
// once; the backend hears 1001 too.
func TestShutdownDrainsWebSocketsSpreadOut(t *testing.T) {
	const n = 50
	const grace = 2 * time.Second
	b := startWSBackend(t)
	p := startProxy(t, Options{Kind: KindHTTP, Backend: b.backend()})
	d := websocket.Dialer{TLSClientConfig: p.ca.ClientConfig("localhost")}
	conns := make([]*websocket.Conn, n)
	for i := range n {
		c, _, err := d.Dial("wss://"+p.addr+"/echo", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	ends := make([]time.Time, n)
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			_, _, err := c.ReadMessage()
			ends[i] = time.Now()
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				codes[i] = ce.Code
			}
		})
	}
	start := shutdownWithin(t, p, grace)
	wg.Wait()
	for i := range n {
		if codes[i] != websocket.CloseGoingAway {
			t.Fatalf("client %d: close code %d, want 1001", i, codes[i])
		}
	}
	checkSpread(t, "WebSockets", start, ends, grace*(100-drainMargin)/100)
	for range n {
		select {
		case code := <-b.closes:
			if code != websocket.CloseGoingAway {
				t.Errorf("backend heard close %d, want 1001", code)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the backend did not hear every close")
		}
	}
}
