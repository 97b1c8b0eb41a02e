package ja4

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

var fingerprintRE = regexp.MustCompile(`^t(13|12|11|10|s3|s2|s1|d1|d2|d3|00)[di][0-9]{2}[0-9]{2}[0-9A-Za-z]{2}_[0-9a-f]{12}_[0-9a-f]{12}$`)

// specHello is the worked example of the JA4 spec, FoxIO-LLC/ja4
// technical_details/JA4.md ("Example" and "Raw Output"), rebuilt as bytes
// from its JA4_ro line (original order), with GREASE values added to check
// they are ignored. The same lists are the unit test in FoxIO-LLC/ja4
// rust/ja4/src/tls.rs (test_client_stats_into_out).
func specHello() testHello {
	return testHello{
		legacy: 0x0303,
		ciphers: []uint16{0x3a3a, // GREASE
			0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035},
		exts: []testExt{
			emptyExt(0xdada), // GREASE
			emptyExt(0x001b), sniExt("example.com"), emptyExt(0x0033), alpnExt("h2", "http/1.1"),
			emptyExt(0x4469), emptyExt(0x0017), emptyExt(0x002d),
			sigExt(0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601),
			emptyExt(0x0005), emptyExt(0x0023), emptyExt(0x0012),
			versionsExt(0x8a8a /* GREASE */, 0x0304, 0x0303),
			emptyExt(0xff01), emptyExt(0x000b), emptyExt(0x000a), emptyExt(0x0015),
		},
	}
}

// TestPublishedVectors checks fingerprints published with their inputs.
func TestPublishedVectors(t *testing.T) {
	noSigs := specHello()
	for i, e := range noSigs.exts {
		if e.typ == extSignatureAlgs {
			// The spec's "no signature algorithms" example keeps 000d in
			// the extension list; an empty body gives exactly that.
			noSigs.exts[i] = emptyExt(extSignatureAlgs)
		}
	}
	// Chrome 143 as reported by browserleaks.com, from its JA4_ro line,
	// quoted in service0427/v2_cp_app tls.md (ja4 and ja4_ro fields).
	chrome := testHello{
		legacy: 0x0303,
		ciphers: []uint16{0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014,
			0x009c, 0x009d, 0x002f, 0x0035},
		exts: []testExt{
			emptyExt(0x002d), emptyExt(0x0033), alpnExt("h2", "http/1.1"), emptyExt(0xfe0d), emptyExt(0x0017),
			emptyExt(0x44cd), sniExt("tls.browserleaks.com"), emptyExt(0x000b), emptyExt(0x000a),
			versionsExt(0x0304, 0x0303), emptyExt(0xff01), emptyExt(0x0023), emptyExt(0x0012), emptyExt(0x0005),
			sigExt(0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601), emptyExt(0x001b),
		},
	}
	tests := []struct {
		name    string
		hello   testHello
		want    string
		wantRaw string
	}{
		{
			name:    "spec example",
			hello:   specHello(),
			want:    "t13d1516h2_8daaf6152771_e5627efa2ab1",
			wantRaw: "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601",
		},
		{
			// JA4.md, "Extension hash": without signature algorithms the
			// string has no underscore and hashes to 6d807ffa2a79.
			name:    "spec example without signature algorithms",
			hello:   noSigs,
			want:    "t13d1516h2_8daaf6152771_6d807ffa2a79",
			wantRaw: "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01",
		},
		{
			name:    "chrome 143 from browserleaks",
			hello:   chrome,
			want:    "t13d1516h2_8daaf6152771_d8a2da3f94cd",
			wantRaw: "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0017,001b,0023,002b,002d,0033,44cd,fe0d,ff01_0403,0804,0401,0503,0805,0501,0806,0601",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := tt.hello.message()
			for _, in := range []struct {
				name string
				raw  []byte
			}{
				{"message", msg},
				{"record", records(msg, 1<<14)},
				{"fragmented", records(msg, 7)},
			} {
				got, err := FromClientHello(in.raw)
				if err != nil || got != tt.want {
					t.Errorf("%s: FromClientHello = %q, %v; want %q", in.name, got, err, tt.want)
				}
				raw, err := RawFromClientHello(in.raw)
				if err != nil || raw != tt.wantRaw {
					t.Errorf("%s: RawFromClientHello =\n%q, %v; want\n%q", in.name, raw, err, tt.wantRaw)
				}
			}
		})
	}
}

func TestALPN(t *testing.T) {
	// The cases listed in JA4.md, "ALPN Extension Value".
	tests := []struct {
		name  string
		alpn  []string // nil: no ALPN extension
		want  string
		empty bool // extension present with an empty list
	}{
		{name: "none", want: "00"},
		{name: "empty list", empty: true, want: "00"},
		{name: "h2", alpn: []string{"h2", "http/1.1"}, want: "h2"},
		{name: "http/1.1", alpn: []string{"http/1.1"}, want: "h1"},
		{name: "mqtt", alpn: []string{"mqtt"}, want: "mt"},
		{name: "single character counts twice", alpn: []string{"x"}, want: "xx"},
		{name: "0xAB", alpn: []string{"\xab"}, want: "ab"},
		{name: "0xAB 0xCD", alpn: []string{"\xab\xcd"}, want: "ad"},
		{name: "0x30 0xAB", alpn: []string{"\x30\xab"}, want: "3b"},
		{name: "0x30 0x31 0xAB 0xCD", alpn: []string{"\x30\x31\xab\xcd"}, want: "3d"},
		{name: "0x30 0xAB 0xCD 0x31", alpn: []string{"\x30\xab\xcd\x31"}, want: "01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := testHello{legacy: 0x0303, ciphers: []uint16{0x1301}, exts: []testExt{emptyExt(0x0017)}}
			switch {
			case tt.empty:
				h.exts = append(h.exts, testExt{extALPN, []byte{0, 0}})
			case tt.alpn != nil:
				h.exts = append(h.exts, alpnExt(tt.alpn...))
			}
			got, err := FromClientHello(h.message())
			if err != nil {
				t.Fatal(err)
			}
			if got[8:10] != tt.want {
				t.Errorf("ALPN part of %q = %q, want %q", got, got[8:10], tt.want)
			}
		})
	}
}

func TestPrefix(t *testing.T) {
	many := make([]uint16, 120)
	for i := range many {
		many[i] = uint16(i + 1)
	}
	manyExts := make([]testExt, 120)
	for i := range manyExts {
		manyExts[i] = emptyExt(uint16(0x1000 + i))
	}
	tests := []struct {
		name  string
		hello testHello
		want  string // prefix, or whole fingerprint when longer
	}{
		{name: "legacy TLS 1.0", hello: testHello{legacy: 0x0301, ciphers: []uint16{0x002f}}, want: "t10i0100"},
		{name: "legacy TLS 1.1", hello: testHello{legacy: 0x0302, ciphers: []uint16{0x002f}}, want: "t11i0100"},
		{name: "SSL 3.0", hello: testHello{legacy: 0x0300, ciphers: []uint16{0x002f}}, want: "ts3i0100"},
		{name: "unknown version", hello: testHello{legacy: 0x0305, ciphers: []uint16{0x002f}}, want: "t00i0100"},
		{name: "supported_versions wins over legacy", hello: testHello{legacy: 0x0303, ciphers: []uint16{0x1301}, exts: []testExt{versionsExt(0x0303, 0x0304)}}, want: "t13i0101"},
		{name: "supported_versions of GREASE only", hello: testHello{legacy: 0x0303, ciphers: []uint16{0x1301}, exts: []testExt{versionsExt(0x1a1a)}}, want: "t00i0101"},
		{name: "counts cap at 99", hello: testHello{legacy: 0x0303, ciphers: many, exts: manyExts}, want: "t12i9999"},
		{
			name:  "no ciphers and no extensions",
			hello: testHello{legacy: 0x0303},
			want:  "t12i000000_000000000000_000000000000",
		},
		{
			// Only SNI and ALPN: both leave the c list, which is then empty.
			name:  "only SNI and ALPN",
			hello: testHello{legacy: 0x0303, ciphers: []uint16{0x1301}, exts: []testExt{sniExt("a.example"), alpnExt("h2")}},
			want:  "t12d0102h2_",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromClientHello(tt.hello.message())
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(got, tt.want) {
				t.Errorf("got %q, want prefix %q", got, tt.want)
			}
			if !fingerprintRE.MatchString(got) {
				t.Errorf("%q does not look like a JA4 fingerprint", got)
			}
		})
	}
	t.Run("only SNI and ALPN zeroes c", func(t *testing.T) {
		h := testHello{legacy: 0x0303, ciphers: []uint16{0x1301}, exts: []testExt{sniExt("a.example"), alpnExt("h2")}}
		got, _ := FromClientHello(h.message())
		if !strings.HasSuffix(got, "_"+emptyHash) {
			t.Errorf("got %q, want c part %s", got, emptyHash)
		}
	})
}

func TestGREASE(t *testing.T) {
	var n int
	for v := range 1 << 16 {
		if isGREASE(uint16(v)) {
			n++
			if v>>8 != v&0xff || v&0x0f != 0x0a {
				t.Errorf("%#04x is not a GREASE value", v)
			}
		}
	}
	if n != 16 {
		t.Errorf("%d GREASE values, want 16", n)
	}
}

func TestMalformed(t *testing.T) {
	good := records(specHello().message(), 1<<14)
	tests := []struct {
		name string
		raw  []byte
		want error
	}{
		{"empty", nil, ErrIncomplete},
		{"http", []byte("GET / HTTP/1.1\r\n"), ErrMalformed},
		{"mqtt connect", []byte{0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'T', 'T'}, ErrMalformed},
		{"sslv2 hello", []byte{0x80, 0x2e, 0x01, 0x03, 0x01}, ErrMalformed},
		{"alert record", []byte{0x15, 3, 1, 0, 2, 2, 40}, ErrMalformed},
		{"record header only", good[:5], ErrIncomplete},
		{"half a hello", good[:len(good)/2], ErrIncomplete},
		{"server hello", records([]byte{0x02, 0, 0, 2, 3, 3}, 100), ErrMalformed},
		{"empty record", []byte{0x16, 3, 1, 0, 0}, ErrMalformed},
		{"oversized record", []byte{0x16, 3, 1, 0xff, 0xff}, ErrMalformed},
		{"fragment then alert", append(records(specHello().message()[:10], 10), 0x15, 3, 1, 0, 2, 2, 40), ErrMalformed},
		{"trailing bytes after extensions", func() []byte {
			m := testHello{legacy: 0x0303, ciphers: []uint16{0x1301}, exts: []testExt{emptyExt(1)}}.message()
			m = append(m, 0xff)
			m[3]++
			return m
		}(), ErrMalformed},
		{"odd cipher list", func() []byte {
			body := append([]byte{3, 3}, make([]byte, 33)...) // version, random, no session id
			body = append(body, 0, 1, 0x13, 1, 0)             // 1-byte cipher list, compression
			return append([]byte{1, 0, 0, byte(len(body))}, body...)
		}(), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromClientHello(tt.raw)
			if !errors.Is(err, tt.want) {
				t.Errorf("FromClientHello = %q, %v; want %v", got, err, tt.want)
			}
		})
	}
	// Every prefix of a good hello fails cleanly, never panics, and says
	// more bytes may help.
	for i := range len(good) {
		if _, err := FromClientHello(good[:i]); !errors.Is(err, ErrIncomplete) {
			t.Errorf("prefix of %d bytes: %v, want ErrIncomplete", i, err)
		}
	}
}

func ExampleFromClientHello() {
	// The worked example of the JA4 spec, as a bare handshake message.
	fp, err := FromClientHello(specHello().message())
	fmt.Println(fp, err)
	// Output: t13d1516h2_8daaf6152771_e5627efa2ab1 <nil>
}
