package ja4

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// addSeeds adds hellos built in code; the captured ones from real clients
// live under testdata/fuzz/<target>/.
func addSeeds(f *testing.F) {
	msg := specHello().message()
	f.Add(msg)
	f.Add(records(msg, 1<<14))
	f.Add(records(msg, 50))
	f.Add(testHello{legacy: 0x0301, ciphers: []uint16{0x002f}}.message())
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'T', 'T', 4, 2, 0, 60})
}

// FuzzFromClientHello feeds arbitrary bytes to the parser: it must never
// panic, must fail with one of its two sentinels, and when it succeeds must
// give a well-formed fingerprint that agrees with its raw form.
func FuzzFromClientHello(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := FromClientHello(raw)
		rawForm, rawErr := RawFromClientHello(raw)
		if _, nameErr := ServerName(raw); (nameErr == nil) != (err == nil) {
			t.Fatalf("ServerName err %v, FromClientHello err %v", nameErr, err)
		}
		if (err == nil) != (rawErr == nil) {
			t.Fatalf("FromClientHello err %v, RawFromClientHello err %v", err, rawErr)
		}
		if err != nil {
			if !errors.Is(err, ErrIncomplete) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v wraps neither sentinel", err)
			}
			return
		}
		if len(got) != fingerprintLen || got[0] != 't' || got[10] != '_' || got[23] != '_' {
			t.Fatalf("malformed fingerprint %q", got)
		}
		if !strings.HasPrefix(rawForm, got[:11]) {
			t.Fatalf("raw form %q does not share the prefix of %q", rawForm, got)
		}
	})
}

// FuzzFromInfoMatchesWire is a differential test against crypto/tls: when
// Go's own parser accepts the bytes as a ClientHello, FromInfo of what it
// parsed must equal FromClientHello of the bytes.
func FuzzFromInfoMatchesWire(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		info := goParse(raw)
		if info == nil {
			return
		}
		want, err := FromClientHello(raw)
		if err != nil {
			t.Fatalf("crypto/tls accepted a hello FromClientHello rejects: %v", err)
		}
		if name, err := ServerName(raw); err != nil || name != info.ServerName {
			t.Fatalf("ServerName = %q (%v), crypto/tls read %q", name, err, info.ServerName)
		}
		if !legacyVersionKnown(raw, info) {
			return // documented difference, see FromInfo
		}
		if got := FromInfo(info); got != want {
			t.Fatalf("FromInfo = %q, FromClientHello = %q\nraw: %s\ninfo: %s", got, want, mustRaw(raw), RawFromInfo(info))
		}
	})
}

func mustRaw(raw []byte) string { s, _ := RawFromClientHello(raw); return s }

// legacyVersionKnown reports whether crypto/tls passed on enough to know
// the legacy version: always with supported_versions, otherwise only for
// TLS 1.0 to 1.3 and SSL 3.0.
func legacyVersionKnown(raw []byte, info *tls.ClientHelloInfo) bool {
	for _, e := range info.Extensions {
		if e == extSupportedVersions {
			return true
		}
	}
	h, err := parseClientHello(raw)
	return err == nil && 0x0300 <= h.version && h.version <= tls.VersionTLS13
}

// goParse runs crypto/tls's server over an in-memory pipe on raw and
// returns the ClientHelloInfo it built, or nil when it did not get that
// far.
func goParse(raw []byte) *tls.ClientHelloInfo {
	client, server := net.Pipe()
	deadline := time.Now().Add(2 * time.Second)
	client.SetDeadline(deadline)
	server.SetDeadline(deadline)
	var info *tls.ClientHelloInfo
	srv := tls.Server(server, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			info = h
			return nil, errSeenHello
		},
	})
	var wg sync.WaitGroup
	wg.Go(func() {
		client.Write(raw)
		// Let crypto/tls see the end of input instead of waiting.
		client.Close()
	})
	// net.Pipe is unbuffered: drain the server's alerts so that it never
	// blocks writing while we are still writing.
	wg.Go(func() { io.Copy(io.Discard, client) })
	srv.Handshake()
	server.Close()
	wg.Wait()
	return info
}

// TestWriteFuzzSeeds refreshes the checked-in seed corpus from real
// clients. It only runs when asked:
//
//	JA4_WRITE_SEEDS=1 go test -run TestWriteFuzzSeeds ./internal/ja4/
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("JA4_WRITE_SEEDS") == "" {
		t.Skip("set JA4_WRITE_SEEDS=1 to rewrite testdata/fuzz")
	}
	seeds := map[string]func(string){
		"go-default":       goClient(&tls.Config{ServerName: "device.example", NextProtos: []string{"mqtt"}, InsecureSkipVerify: true}),
		"go-tls10":         goClient(&tls.Config{ServerName: "a.example", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10, InsecureSkipVerify: true}),
		"openssl-default":  execClient(t, "openssl", "s_client", "-connect", "ADDR", "-alpn", "h2,http/1.1", "-servername", "device.example"),
		"openssl-tls1":     execClient(t, "openssl", "s_client", "-connect", "ADDR", "-tls1", "-cipher", "DEFAULT@SECLEVEL=0"),
		"openssl-no-tls13": execClient(t, "openssl", "s_client", "-connect", "ADDR", "-no_tls1_3"),
		"curl":             execClient(t, "curl", "-sk", "--max-time", "5", "https://localhost:PORT/"),
	}
	for name, run := range seeds {
		h := captureHello(t, run)
		for _, target := range []string{"FuzzFromClientHello", "FuzzFromInfoMatchesWire"} {
			dir := filepath.Join("testdata", "fuzz", target)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(h.raw)))
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
