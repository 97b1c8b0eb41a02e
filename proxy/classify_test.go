package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/internal/ja4"
	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/pki/pkitest"
	"github.com/tlsfront/tlsfront/internal/testnet"
)

func TestClassifyFirstBytes(t *testing.T) {
	tests := []struct {
		name  string
		bytes []byte
		want  Reason
	}{
		{"nothing", nil, ""},
		{"tls handshake", []byte{0x16, 3, 1, 2, 0, 1, 0, 1}, ""},
		{"tls alert", []byte{0x15, 3, 3, 0, 2}, ""},
		{"get", []byte("GET / HT"), ReasonNotTLSHTTP},
		{"post", []byte("POST /x "), ReasonNotTLSHTTP},
		{"options", []byte("OPTIONS "), ReasonNotTLSHTTP},
		{"connect", []byte("CONNECT "), ReasonNotTLSHTTP},
		{"h2 preface", []byte("PRI * HT"), ReasonNotTLSHTTP},
		{"stalled mid-method", []byte("DEL"), ReasonNotTLSHTTP},
		{"lowercase is not http", []byte("get / ht"), ReasonNotTLS},
		{"mqtt 3.1.1 connect", []byte{0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'T', 'T'}, ReasonNotTLSMQTT},
		{"mqtt 3.1 connect", []byte{0x10, 0x0e, 0x00, 0x06, 'M', 'Q', 'I', 's'}, ReasonNotTLSMQTT},
		{"mqtt long remaining length", []byte{0x10, 0x80, 0x01, 0x00, 0x04, 'M', 'Q', 'T'}, ReasonNotTLSMQTT},
		{"mqtt first byte only", []byte{0x10}, ReasonNotTLSMQTT},
		{"0x10 then junk", []byte{0x10, 0x0c, 0x00, 0x05, 'x'}, ReasonNotTLS},
		{"ssh", []byte("SSH-2.0-"), ReasonNotTLS},
		{"sslv2 client hello", []byte{0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00}, ReasonNoSharedVersion},
		{"binary junk", []byte{0x00, 0xff, 0x13}, ReasonNotTLS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classifyFirstBytes(tt.bytes); got != tt.want {
				t.Errorf("classifyFirstBytes(%q) = %q, want %q", tt.bytes, got, tt.want)
			}
		})
	}
}

func TestReasonsAreUnique(t *testing.T) {
	seen := map[Reason]bool{}
	for _, r := range Reasons() {
		if r == "" || seen[r] || strings.ToLower(string(r)) != string(r) {
			t.Errorf("bad or duplicate reason %q", r)
		}
		seen[r] = true
	}
	for _, r := range alertReasons {
		if !seen[r] {
			t.Errorf("alert reason %q missing from Reasons()", r)
		}
	}
	for _, f := range localFailures {
		if !seen[f.reason] {
			t.Errorf("local reason %q missing from Reasons()", f.reason)
		}
	}
}

// TestAlertTexts pins the alert texts classify depends on (see
// alertReasons) to what crypto/tls really reports: a fake server answers a
// Go client's hello with each alert, and the client's error must map to
// the expected reason.
func TestAlertTexts(t *testing.T) {
	tests := []struct {
		code byte
		want Reason
	}{
		{48, ReasonClientAlertUnknownCA},
		{42, ReasonClientAlertBadCertificate},
		{46, ReasonClientAlertCertificateUnknown},
		{45, ReasonClientAlertCertificateExpired},
		{44, ReasonClientAlertCertificateRevoked},
		{43, ReasonClientAlertUnsupportedCertificate},
		{40, ReasonClientAlertHandshakeFailure},
		{70, ReasonClientAlertProtocolVersion},
		{71, ReasonClientAlertInsufficientSecurity},
		{51, ReasonClientAlertDecryptError},
		{112, ReasonClientAlertUnrecognizedName},
		{90, ReasonClientAlertUserCanceled},
		{80, ReasonClientAlertOther},  // internal error
		{50, ReasonClientAlertOther},  // decode error
		{200, ReasonClientAlertOther}, // unassigned
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			err := alertFromRealPeer(t, tt.code)
			got, ok := clientAlert(err)
			if !ok || got != tt.want {
				t.Errorf("alert %d (%v) -> %q, %v; want %q", tt.code, err, got, ok, tt.want)
			}
			if r, ok := alertCodes[tt.code]; ok != (tt.want != ReasonClientAlertOther) || ok && r != tt.want {
				t.Errorf("alertCodes[%d] = %q, %v; want %q", tt.code, r, ok, tt.want)
			}
		})
	}
	if _, ok := clientAlert(io.EOF); ok {
		t.Error("io.EOF taken for an alert")
	}
}

// alertFromRealPeer returns the error a crypto/tls client reports when the
// server answers its hello with a fatal alert of the given code.
func alertFromRealPeer(t *testing.T, code byte) error {
	t.Helper()
	ln := testnet.Listen(t)
	done := make(chan struct{})
	testnet.Serve(t, ln, func(c net.Conn) {
		defer close(done)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(c, hdr); err != nil {
			return
		}
		io.CopyN(io.Discard, c, int64(hdr[3])<<8|int64(hdr[4]))
		c.Write([]byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x02, code})
	})
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	err = tls.Client(c, &tls.Config{ServerName: "x.example"}).Handshake()
	<-done
	return err
}

// goHello returns the bytes of a real ClientHello from crypto/tls.
func goHello(t *testing.T, cfg *tls.Config) []byte {
	t.Helper()
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		tls.Client(client, cfg).Handshake()
		client.Close()
	}()
	server.SetDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(server, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(server, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// rawClient connects, writes payload, then either closes (hangUp) or
// waits for the proxy to close. It returns once the connection is done.
func rawClient(addr string, payload []byte, hangUp bool) func(t *testing.T) {
	return func(t *testing.T) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if len(payload) > 0 {
			if _, err := c.Write(payload); err != nil {
				t.Fatal(err)
			}
		}
		if hangUp {
			return
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, c) // until the proxy gives up on us
	}
}

func goTLSClient(addr string, cfg *tls.Config) func(t *testing.T) {
	return func(t *testing.T) {
		d := &net.Dialer{Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
		if err == nil {
			c.Close()
		}
	}
}

func opensslClient(addr string, args ...string) func(t *testing.T) {
	return func(t *testing.T) {
		if _, err := exec.LookPath("openssl"); err != nil {
			t.Skip("openssl not installed")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a := append([]string{"s_client", "-connect", addr}, args...)
		out, _ := exec.CommandContext(ctx, "openssl", a...).CombinedOutput()
		t.Logf("openssl %s: %.400s", strings.Join(a, " "), out)
	}
}

// TestHandshakeFailuresClassified makes real clients fail against a real
// proxy in each way an operator needs to tell apart, and checks the
// reason and fingerprint reported with each handshake.
func TestHandshakeFailuresClassified(t *testing.T) {
	be := newEchoBackend(t, false)
	other := pkitest.NewCA(t) // a CA the proxy's certificate is not from
	otherRoot := other.RootFile()
	helloBytes := goHello(t, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true})

	tests := []struct {
		name    string
		opts    func(*Options)
		client  func(p *testProxy) func(t *testing.T)
		want    Reason
		orWant  Reason // also accepted when set
		wantJA4 bool
		ja4     string // exact JA4 prefix when set
	}{
		{
			name:    "success",
			client:  func(p *testProxy) func(*testing.T) { return goTLSClient(p.addr, p.ca.ClientConfig("localhost")) },
			want:    "",
			wantJA4: true,
			ja4:     "t13d",
		},
		{
			name:    "go client trusting another CA",
			client:  func(p *testProxy) func(*testing.T) { return goTLSClient(p.addr, other.ClientConfig("localhost")) },
			want:    ReasonClientAlertBadCertificate, // Go sends bad_certificate for every verify failure
			wantJA4: true,
		},
		{
			name: "openssl TLS 1.2 trusting another CA",
			client: func(p *testProxy) func(*testing.T) {
				return opensslClient(p.addr, "-tls1_2", "-verify_return_error", "-CAfile", otherRoot, "-servername", "localhost")
			},
			want:    ReasonClientAlertUnknownCA,
			wantJA4: true,
		},
		{
			// OpenSSL sends this alert unencrypted, which crypto/tls cannot
			// read; unless the connection keeps its last bytes, the
			// precise alert is lost (see unencryptedAlert).
			name: "openssl TLS 1.3 trusting another CA",
			client: func(p *testProxy) func(*testing.T) {
				return opensslClient(p.addr, "-tls1_3", "-verify_return_error", "-CAfile", otherRoot, "-servername", "localhost")
			},
			want:    ReasonClientAlertUnencrypted,
			orWant:  ReasonClientAlertUnknownCA,
			wantJA4: true,
		},
		{
			// crypto/tls refuses a hello whose SNI ends in a dot before
			// any callback; the name is read from the raw bytes.
			name: "openssl SNI with a trailing dot",
			client: func(p *testProxy) func(*testing.T) {
				return opensslClient(p.addr, "-servername", "localhost.")
			},
			want:    ReasonSNITrailingDot,
			wantJA4: true,
			ja4:     "t13d",
		},
		{
			name: "openssl TLS 1.2 SNI with a trailing dot",
			client: func(p *testProxy) func(*testing.T) {
				return opensslClient(p.addr, "-tls1_2", "-servername", "localhost.")
			},
			want:    ReasonSNITrailingDot,
			wantJA4: true,
			ja4:     "t12d",
		},
		{
			name: "go client TLS 1.0 only",
			client: func(p *testProxy) func(*testing.T) {
				cfg := p.ca.ClientConfig("localhost")
				cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS10
				return goTLSClient(p.addr, cfg)
			},
			want:    ReasonNoSharedVersion,
			wantJA4: true,
			ja4:     "t10d",
		},
		{
			name: "openssl TLS 1.0 only",
			client: func(p *testProxy) func(*testing.T) {
				return opensslClient(p.addr, "-tls1", "-cipher", "DEFAULT@SECLEVEL=0")
			},
			want:    ReasonNoSharedVersion,
			wantJA4: true,
			ja4:     "t10i",
		},
		{
			name: "no shared cipher",
			client: func(p *testProxy) func(*testing.T) {
				cfg := p.ca.ClientConfig("localhost")
				cfg.MaxVersion = tls.VersionTLS12
				cfg.CipherSuites = []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}
				return goTLSClient(p.addr, cfg)
			},
			want:    ReasonNoSharedCipher,
			wantJA4: true,
			ja4:     "t12d03",
		},
		{
			name: "no shared ALPN",
			opts: func(o *Options) { o.TLS.NextProtos = []string{"mqtt"} },
			client: func(p *testProxy) func(*testing.T) {
				cfg := p.ca.ClientConfig("localhost")
				cfg.NextProtos = []string{"h2", "http/1.1"}
				return goTLSClient(p.addr, cfg)
			},
			want:    ReasonNoSharedALPN,
			wantJA4: true,
		},
		{
			// Our leaf is ECDSA; a client that verifies only RSA-PSS
			// signatures cannot accept it.
			name: "no shared signature algorithm",
			client: func(p *testProxy) func(*testing.T) {
				return opensslClient(p.addr, "-tls1_3", "-sigalgs", "rsa_pss_rsae_sha256")
			},
			want:    ReasonNoSharedSignatureAlgorithm,
			wantJA4: true,
		},
		{
			name: "plain http",
			client: func(p *testProxy) func(*testing.T) {
				return rawClient(p.addr, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), false)
			},
			want: ReasonNotTLSHTTP,
		},
		{
			name: "plain mqtt connect",
			client: func(p *testProxy) func(*testing.T) {
				return rawClient(p.addr, []byte{0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00}, false)
			},
			want: ReasonNotTLSMQTT,
		},
		{
			name: "ssh banner",
			client: func(p *testProxy) func(*testing.T) {
				return rawClient(p.addr, []byte("SSH-2.0-OpenSSH_9.2\r\n"), false)
			},
			want: ReasonNotTLS,
		},
		{
			name:   "silent client",
			opts:   func(o *Options) { o.HandshakeTimeout = 300 * time.Millisecond },
			client: func(p *testProxy) func(*testing.T) { return rawClient(p.addr, nil, false) },
			want:   ReasonNoClientHello,
		},
		{
			name:   "half a hello then stall",
			opts:   func(o *Options) { o.HandshakeTimeout = 300 * time.Millisecond },
			client: func(p *testProxy) func(*testing.T) { return rawClient(p.addr, helloBytes[:len(helloBytes)/2], false) },
			want:   ReasonStalledMidHandshake,
		},
		{
			// The whole hello arrives, the proxy answers, and the client
			// never finishes: the fingerprint is known.
			name:    "full hello then stall",
			opts:    func(o *Options) { o.HandshakeTimeout = 300 * time.Millisecond },
			client:  func(p *testProxy) func(*testing.T) { return rawClient(p.addr, helloBytes, false) },
			want:    ReasonStalledMidHandshake,
			wantJA4: true,
		},
		{
			name:   "connect and close",
			client: func(p *testProxy) func(*testing.T) { return rawClient(p.addr, nil, true) },
			want:   ReasonClosedBeforeHello,
		},
		{
			name:   "half a hello then close",
			client: func(p *testProxy) func(*testing.T) { return rawClient(p.addr, helloBytes[:20], true) },
			want:   ReasonClosedBeforeHello,
		},
		{
			name:    "hello then close",
			client:  func(p *testProxy) func(*testing.T) { return rawClient(p.addr, helloBytes, true) },
			want:    ReasonClientClosed,
			wantJA4: true,
		},
		{
			name: "sslv2 format hello",
			client: func(p *testProxy) func(*testing.T) {
				// SSL 2.0 record: length 0x2e with the top bit set,
				// CLIENT-HELLO, version 3.1, then cipher specs.
				return rawClient(p.addr, []byte{0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10}, false)
			},
			want: ReasonNoSharedVersion,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Options{Backend: be.backend(), HandshakeTimeout: 5 * time.Second}
			p := startProxyWith(t, o, tt.opts)
			tt.client(p)(t)
			ev := p.waitEvent(t)
			if ev.Reason != tt.want && (tt.orWant == "" || ev.Reason != tt.orWant) {
				t.Errorf("reason = %q, want %q (err: %v, first bytes %q, timed out %v)", ev.Reason, tt.want, ev.Err, ev.FirstBytes, ev.TimedOut)
			}
			if tt.wantJA4 != (ev.JA4 != "") {
				t.Errorf("JA4 = %q, want one: %v", ev.JA4, tt.wantJA4)
			}
			if tt.ja4 != "" && !strings.HasPrefix(ev.JA4, tt.ja4) {
				t.Errorf("JA4 = %q, want prefix %q", ev.JA4, tt.ja4)
			}
			t.Logf("reason=%s ja4=%s err=%v", ev.Reason, ev.JA4, ev.Err)
		})
	}
}

// startProxyWith is startProxy with a hook that can change the options
// after the test certificate is in place.
func startProxyWith(t *testing.T, o Options, edit func(*Options)) *testProxy {
	t.Helper()
	if edit == nil {
		return startProxy(t, o)
	}
	// Build the TLS config the way startProxy would, so edit can change it.
	ca := pkitest.NewCA(t)
	leaf := ca.Leaf(pki.Options{})
	o.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.DER, ca.Intermediate.DER}, PrivateKey: leaf.Key}}}
	edit(&o)
	p := startProxy(t, o)
	p.ca = ca
	return p
}

// TestUnknownSNI checks that, with a name lookup, a client rejecting the
// default certificate it got for a name we do not serve is reported as
// unknown_sni rather than as the alert it sent.
func TestUnknownSNI(t *testing.T) {
	be := newEchoBackend(t, false)
	p := startProxy(t, Options{Backend: be.backend()})
	goTLSClient(p.addr, p.ca.ClientConfig("unknown.example"))(t)
	ev := p.waitEvent(t)
	if ev.Reason != ReasonClientAlertBadCertificate {
		t.Fatalf("without lookup: %q, want %q (%v)", ev.Reason, ReasonClientAlertBadCertificate, ev.Err)
	}
	known := func(name string) bool { return name == "localhost" }
	cl := classifier{knownName: known}
	if got := cl.classify(ev); got != ReasonUnknownSNI {
		t.Errorf("with lookup: %q, want %q", got, ReasonUnknownSNI)
	}
	// A known name keeps its real reason.
	goTLSClient(p.addr, pkitest.NewCA(t).ClientConfig("localhost"))(t)
	ev = p.waitEvent(t)
	if got := cl.classify(ev); got != ReasonClientAlertBadCertificate {
		t.Errorf("known name: %q, want %q", got, ReasonClientAlertBadCertificate)
	}
	// A version problem outranks the name.
	old := p.ca.ClientConfig("unknown.example")
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS10
	goTLSClient(p.addr, old)(t)
	if got := cl.classify(p.waitEvent(t)); got != ReasonNoSharedVersion {
		t.Errorf("old client, unknown name: %q, want %q", got, ReasonNoSharedVersion)
	}
}

func TestClassifyShutdownAndMinVersion(t *testing.T) {
	hello := &tls.ClientHelloInfo{SupportedVersions: []uint16{tls.VersionTLS12, tls.VersionTLS11}}
	tests := []struct {
		name string
		cl   classifier
		ev   *HandshakeEvent
		want Reason
	}{
		{"success", classifier{}, &HandshakeEvent{}, ""},
		{"shutdown", classifier{}, &HandshakeEvent{Err: context.Canceled, FirstBytes: []byte{0x16}}, ReasonServerShutdown},
		{"tls 1.2 client, 1.3 minimum", classifier{minVersion: tls.VersionTLS13}, &HandshakeEvent{Err: errors.New("x"), Hello: hello}, ReasonNoSharedVersion},
		{"tls 1.2 client, default minimum", classifier{}, &HandshakeEvent{Err: errors.New("x"), Hello: hello}, ReasonOther},
		{"sslv3 client", classifier{}, &HandshakeEvent{Err: errors.New("x"), Hello: &tls.ClientHelloInfo{}}, ReasonNoSharedVersion},
		{"old client that alerted was accepted", classifier{minVersion: tls.VersionTLS13}, &HandshakeEvent{Err: &net.OpError{Op: "remote error", Err: errors.New("tls: bad certificate")}, Hello: hello}, ReasonClientAlertBadCertificate},
		{"reset before hello", classifier{}, &HandshakeEvent{Err: &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}}, ReasonClosedBeforeHello},
		{"broken pipe after hello", classifier{}, &HandshakeEvent{Err: &net.OpError{Op: "write", Err: os.NewSyscallError("write", syscall.EPIPE)}, Hello: &tls.ClientHelloInfo{SupportedVersions: []uint16{tls.VersionTLS13}}}, ReasonClientClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cl.classify(tt.ev); got != tt.want {
				t.Errorf("classify = %q, want %q", got, tt.want)
			}
		})
	}
}

// BenchmarkFingerprint measures the per-handshake cost of the JA4 on a
// real Go ClientHello (with a post-quantum key share, 13 suites, 11
// extensions).
func BenchmarkFingerprint(b *testing.B) {
	info := captureInfo(b, &tls.Config{ServerName: "device.example", NextProtos: []string{"mqtt"}, InsecureSkipVerify: true})
	want := ja4.FromInfo(info)
	b.ReportAllocs()
	for b.Loop() {
		if fingerprint(info) != want {
			b.Fatal("unstable fingerprint")
		}
	}
}

// captureInfo returns the ClientHelloInfo crypto/tls builds for a hello
// from a client with cfg.
func captureInfo(tb testing.TB, cfg *tls.Config) *tls.ClientHelloInfo {
	tb.Helper()
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		tls.Client(client, cfg).Handshake()
		client.Close()
	}()
	got := make(chan *tls.ClientHelloInfo, 1)
	tls.Server(server, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		got <- h
		return nil, errors.New("captured")
	}}).Handshake()
	select {
	case h := <-got:
		return h
	default:
		tb.Fatal("no ClientHello captured")
		return nil
	}
}

// tailConn stands for a connection that remembers the last bytes it read.
type tailConn struct {
	net.Conn
	tail []byte
}

func (c tailConn) lastBytes() []byte { return c.tail }

func TestUnencryptedAlert(t *testing.T) {
	badMAC := &net.OpError{Op: "local error", Err: errors.New("tls: bad record MAC")}
	tls13 := []uint16{tls.VersionTLS13, tls.VersionTLS12}
	tests := []struct {
		name string
		h    *tls.ClientHelloInfo
		err  error
		want Reason
	}{
		{"tls 1.3 without tail", &tls.ClientHelloInfo{SupportedVersions: tls13}, badMAC, ReasonClientAlertUnencrypted},
		{"unknown ca in tail", &tls.ClientHelloInfo{SupportedVersions: tls13, Conn: tailConn{tail: []byte{0xaa, 0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x30}}}, badMAC, ReasonClientAlertUnknownCA},
		{"odd alert in tail", &tls.ClientHelloInfo{SupportedVersions: tls13, Conn: tailConn{tail: []byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x50}}}, badMAC, ReasonClientAlertOther},
		{"tail is not an alert", &tls.ClientHelloInfo{SupportedVersions: tls13, Conn: tailConn{tail: []byte{0x17, 0x03, 0x03, 0x00, 0x02, 0x02, 0x30}}}, badMAC, ReasonClientAlertUnencrypted},
		{"tls 1.2 client: real corruption", &tls.ClientHelloInfo{SupportedVersions: []uint16{tls.VersionTLS12}}, badMAC, ReasonOther},
		{"other local error", &tls.ClientHelloInfo{SupportedVersions: tls13}, &net.OpError{Op: "local error", Err: errors.New("tls: unexpected message")}, ReasonOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := &HandshakeEvent{Hello: tt.h, Err: tt.err, FirstBytes: []byte{0x16, 0x03, 0x01}}
			if got := classify(ev); got != tt.want {
				t.Errorf("classify = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestFleetShowsAsOneFingerprint is the incident this code exists for: a
// fleet of devices on an old TLS stack, mixed with healthy clients, must
// stand out as one fingerprint failing every time with one reason, while
// the healthy fingerprint keeps succeeding.
func TestFleetShowsAsOneFingerprint(t *testing.T) {
	be := newEchoBackend(t, false)
	p := startProxy(t, Options{Backend: be.backend()})
	const fleet, healthy = 6, 4
	for i := range fleet + healthy {
		cfg := p.ca.ClientConfig("localhost")
		if i < fleet {
			cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
		}
		goTLSClient(p.addr, cfg)(t)
	}
	type tally struct {
		total, failed int
		reasons       map[Reason]int
	}
	byJA4 := map[string]*tally{}
	for range fleet + healthy {
		ev := p.waitEvent(t)
		tl := byJA4[ev.JA4]
		if tl == nil {
			tl = &tally{reasons: map[Reason]int{}}
			byJA4[ev.JA4] = tl
		}
		tl.total++
		if ev.Err != nil {
			tl.failed++
			tl.reasons[ev.Reason]++
		}
	}
	if len(byJA4) != 2 {
		t.Fatalf("want 2 fingerprints, got %d: %v", len(byJA4), byJA4)
	}
	for fp, tl := range byJA4 {
		t.Logf("%s: %d/%d failed %v", fp, tl.failed, tl.total, tl.reasons)
		switch tl.total {
		case fleet:
			if tl.failed != fleet || tl.reasons[ReasonNoSharedVersion] != fleet || !strings.HasPrefix(fp, "t11d") {
				t.Errorf("old fleet %s: %d/%d failed %v, want all no_shared_version", fp, tl.failed, tl.total, tl.reasons)
			}
		case healthy:
			if tl.failed != 0 {
				t.Errorf("healthy clients %s: %d failures %v", fp, tl.failed, tl.reasons)
			}
		default:
			t.Errorf("%s: unexpected count %d", fp, tl.total)
		}
	}
}
