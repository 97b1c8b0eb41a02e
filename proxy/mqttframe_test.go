package proxy

import (
	"bytes"
	"slices"
	"testing"
)

// publish builds an MQTT PUBLISH (QoS 0) of topic and a payload of size
// bytes.
func publish(topic string, size int) []byte {
	body := append([]byte{byte(len(topic) >> 8), byte(len(topic))}, topic...)
	body = append(body, bytes.Repeat([]byte{'x'}, size)...)
	return append(append([]byte{0x30}, mqttVarint(len(body))...), body...)
}

func mqttVarint(n int) []byte {
	var out []byte
	for {
		c := byte(n % 128)
		n /= 128
		if n > 0 {
			c |= 0x80
		}
		out = append(out, c)
		if n == 0 {
			return out
		}
	}
}

// refBoundaries is what the framer should find, worked out with the whole
// stream in hand: the offsets where packets end, and whether the framing
// broke.
func refBoundaries(b []byte) (ends []int, broken bool) {
	i := 0
	for i < len(b) {
		if b[i]>>4 == 0 {
			return ends, true
		}
		rem, n, err := decodeVarint(b[i+1:])
		if err == errShort {
			return ends, false
		}
		if err != nil {
			return ends, true
		}
		if i+1+n+rem > len(b) {
			return ends, false
		}
		i += 1 + n + rem
		ends = append(ends, i)
	}
	return ends, false
}

// framerBoundaries feeds b to a framer in chunks of the given sizes
// (cycled), stopping at every boundary, and returns where they were.
func framerBoundaries(b []byte, chunks []byte) (ends []int, f *mqttFramer) {
	f = new(mqttFramer)
	off := 0
	for c := 0; off < len(b); c++ {
		size := len(b) - off
		if len(chunks) > 0 {
			size = min(size, int(chunks[c%len(chunks)])+1)
		}
		chunk := b[off : off+size]
		for len(chunk) > 0 {
			if f.atBoundary() && off > 0 && (len(ends) == 0 || ends[len(ends)-1] != off) {
				ends = append(ends, off)
			}
			k := f.advance(chunk, true)
			if k == 0 {
				k = f.advance(chunk[:1], false) // past the boundary
			}
			chunk, off = chunk[k:], off+k
		}
	}
	if f.atBoundary() && off > 0 && (len(ends) == 0 || ends[len(ends)-1] != off) {
		ends = append(ends, off)
	}
	return ends, f
}

func TestMQTTFramer(t *testing.T) {
	big := publish("t/big", 70_000) // a 3-byte remaining length
	stream := slices.Concat(
		[]byte{0x20, 0x03, 0x00, 0x00, 0x00}, // CONNACK
		publish("a", 3),
		[]byte{0xD0, 0x00}, // PINGRESP: no body
		big,
		publish("b", 200), // a 2-byte remaining length
	)
	for _, tc := range []struct {
		name   string
		b      []byte
		chunks []byte
		broken bool
	}{
		{name: "whole", b: stream},
		{name: "byte by byte", b: stream, chunks: []byte{0}},
		{name: "odd splits", b: stream, chunks: []byte{2, 6, 0, 250, 1}},
		{name: "torn at the end", b: stream[:len(stream)-7]},
		{name: "reserved type 0", b: slices.Concat(publish("a", 1), []byte{0x00, 0x00}), broken: true},
		{name: "length of 5 bytes", b: []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}, broken: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, wantBroken := refBoundaries(tc.b)
			got, f := framerBoundaries(tc.b, tc.chunks)
			if !slices.Equal(got, want) {
				t.Errorf("boundaries %v, want %v", got, want)
			}
			if f.broken() != wantBroken || wantBroken != tc.broken {
				t.Errorf("broken %v, reference %v, want %v", f.broken(), wantBroken, tc.broken)
			}
			if int(f.packets) != len(want) {
				t.Errorf("%d packets counted, want %d", f.packets, len(want))
			}
			if f.connack != (tc.b[0] == 0x20) {
				t.Errorf("CONNACK seen: %v", f.connack)
			}
		})
	}
}

func TestConnectSniffer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		b     []byte
		level uint32
	}{
		{name: "mqtt 5", b: bigConnect(5, 40), level: 5},
		{name: "mqtt 3.1.1", b: bigConnect(4, 40), level: 4},
		{name: "mqtt 3.1", b: []byte{0x10, 20, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, 2, 0, 60}, level: 3},
		{name: "http", b: []byte("GET / HTTP/1.1\r\n"), level: levelNotMQTT},
		{name: "wrong name", b: []byte{0x10, 20, 0, 4, 'M', 'Q', 'T', 'X', 5, 2, 0, 60}, level: levelNotMQTT},
		{name: "level 9", b: []byte{0x10, 20, 0, 4, 'M', 'Q', 'T', 'T', 9, 2, 0, 60}, level: levelNotMQTT},
		{name: "short", b: []byte{0x10, 20, 0, 4, 'M'}, level: levelUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Byte by byte, the answer must be the same as at once.
			var s connectSniffer
			got := levelUnknown
			for i := 0; i < len(tc.b) && got == levelUnknown; i++ {
				got = s.feed(tc.b[i : i+1])
			}
			var whole connectSniffer
			if got != tc.level || whole.feed(tc.b) != tc.level {
				t.Errorf("level %d (byte by byte), want %d", got, tc.level)
			}
		})
	}
}

// FuzzMQTTFramer checks the boundary tracker against a reference parser
// that has the whole stream, for any split of the stream into reads, and
// the CONNECT sniffer for panics and for agreeing with itself across
// splits.
func FuzzMQTTFramer(f *testing.F) {
	f.Add(slices.Concat([]byte{0x20, 0x03, 0x00, 0x00, 0x00}, publish("a/b", 10), []byte{0xD0, 0x00}), []byte{3, 1})
	f.Add(publish("t", 300), []byte{200, 0, 17})
	f.Add(bigConnect(5, 64), []byte{0})
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0x7f}, []byte{1})
	f.Add([]byte{0xE0, 0x02, 0x8B, 0x00}, []byte(nil))
	f.Fuzz(func(t *testing.T, b, chunks []byte) {
		// Longer inputs find nothing new (lengths are arithmetic) and
		// make minimising slow.
		b, chunks = b[:min(len(b), 2048)], chunks[:min(len(chunks), 16)]
		want, wantBroken := refBoundaries(b)
		got, fr := framerBoundaries(b, chunks)
		if !slices.Equal(got, want) {
			t.Fatalf("boundaries %v, want %v", got, want)
		}
		if fr.broken() != wantBroken {
			t.Fatalf("broken %v, want %v", fr.broken(), wantBroken)
		}
		var whole, split connectSniffer
		a := whole.feed(b)
		s := levelUnknown
		for i := 0; i < len(b) && s == levelUnknown; i++ {
			s = split.feed(b[i : i+1])
		}
		if a != s {
			t.Fatalf("level %d at once, %d byte by byte", a, s)
		}
	})
}
