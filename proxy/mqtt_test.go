package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestParseConnect(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		level   byte
		id      string
		wantErr error
	}{
		{"3.1.1", []byte{0x10, 0x0e, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 2, 'i', 'd'}, 4, "id", nil},
		{"3.1", []byte{0x10, 0x10, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, 2, 0, 60, 0, 2, 'i', 'd'}, 3, "id", nil},
		{"5 with properties", []byte{0x10, 0x14, 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 60, 5, 0x11, 0, 0, 0, 10, 0, 2, 'i', 'd'}, 5, "id", nil},
		{"short", []byte{0x10, 0x0e, 0, 4, 'M'}, 0, "", errShort},
		{"not connect", []byte{0x30, 0x02, 0, 0}, 0, "", errNotConnect},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseConnect(tt.in)
			if tt.wantErr != nil {
				if err != tt.wantErr {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || got.Level != tt.level || got.ClientID != tt.id {
				t.Fatalf("got %+v, %v", got, err)
			}
		})
	}
}

// bigConnect builds a CONNECT of the given level for client id "id",
// user "u", whose password field takes it to size bytes in all (size over
// 40). Above 64 KiB the password is longer than MQTT allows (a real client
// would carry a large will payload); the parser stops after the client id,
// so the filler only has to have the right size.
func bigConnect(level byte, size int) []byte {
	vh := []byte{0, 4, 'M', 'Q', 'T', 'T', level, 0xC2, 0, 60} // username, password, clean
	if level == 5 {
		vh = append(vh, 0)
	}
	vh = append(vh, 0, 2, 'i', 'd', 0, 1, 'u')
	varint := func(v int) []byte {
		var out []byte
		for {
			c := byte(v % 128)
			if v /= 128; v > 0 {
				c |= 0x80
			}
			out = append(out, c)
			if v == 0 {
				return out
			}
		}
	}
	for hl := 2; hl <= 5; hl++ {
		rem := size - hl
		if l := varint(rem); len(l) == hl-1 {
			pw := rem - len(vh) - 2
			out := append([]byte{0x10}, l...)
			out = append(out, vh...)
			out = binary.BigEndian.AppendUint16(out, uint16(min(pw, 0xffff)))
			return append(out, bytes.Repeat([]byte{'p'}, pw)...)
		}
	}
	panic("bigConnect: no header length fits")
}

func TestReadConnect(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		max     int
		level   byte
		tooBig  bool
		wantErr error
	}{
		{"small", bigConnect(4, 300), DefaultMQTTMaxConnectSize, 4, false, nil},
		{"100 KiB, 3.1.1", bigConnect(4, 100<<10), DefaultMQTTMaxConnectSize, 4, false, nil},
		{"exactly the maximum", bigConnect(5, 4096), 4096, 5, false, nil},
		{"one over the maximum, 5", bigConnect(5, 4097), 4096, 5, true, nil},
		{"300 KiB over the default, 3.1.1", bigConnect(4, 300<<10), DefaultMQTTMaxConnectSize, 4, true, nil},
		{"3 MB over the default, 5", bigConnect(5, 3<<20), DefaultMQTTMaxConnectSize, 5, true, nil},
		{"not connect", []byte{0x30, 0x02, 0, 0}, DefaultMQTTMaxConnectSize, 0, false, errNotConnect},
		{"truncated", bigConnect(4, 300)[:200], DefaultMQTTMaxConnectSize, 0, false, errShort},
	}
	for _, tt := range tests {
		for _, oneByte := range []bool{false, true} {
			name := tt.name
			if oneByte {
				name += ", one byte a read"
			}
			t.Run(name, func(t *testing.T) {
				var r io.Reader = bytes.NewReader(tt.in)
				if oneByte {
					r = iotest.OneByteReader(r)
				}
				head, info, err := readConnect(r, tt.max)
				var big *connectTooLargeError
				switch {
				case tt.tooBig:
					if !errors.As(err, &big) || big.Size != len(tt.in) || big.Level != tt.level {
						t.Fatalf("err = %v (%+v), want too large with size %d level %d", err, big, len(tt.in), tt.level)
					}
					if len(head) > 16 {
						t.Fatalf("read %d bytes of a packet it refuses", len(head))
					}
				case tt.wantErr != nil:
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("err = %v, want %v", err, tt.wantErr)
					}
				default:
					if err != nil || info.Level != tt.level || info.ClientID != "id" || !bytes.Equal(head, tt.in) {
						t.Fatalf("got %+v, %v, %d bytes of %d", info, err, len(head), len(tt.in))
					}
				}
			})
		}
	}
}

// TestReadConnectMemoryFollowsArrival: a CONNECT claiming 200 KiB whose
// sender stops after a few bytes costs a few bytes, not 200 KiB.
func TestReadConnectMemoryFollowsArrival(t *testing.T) {
	pkt := bigConnect(5, 200<<10)
	head, _, err := readConnect(bytes.NewReader(pkt[:100]), DefaultMQTTMaxConnectSize)
	if !errors.Is(err, errShort) {
		t.Fatalf("err = %v, want errShort", err)
	}
	if cap(head) > 256 {
		t.Fatalf("buffer of %d bytes for 100 received", cap(head))
	}
}

// FuzzParseConnect feeds arbitrary first packets, as a hostile client
// would after the handshake, through the whole-packet parser and the
// streaming reader with a fuzzed maximum. Neither may panic; they must
// agree; the reader must never hold more than the maximum, nor more than
// about twice what arrived.
func FuzzParseConnect(f *testing.F) {
	f.Add([]byte{0x10, 0x0e, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 2, 'i', 'd'}, uint32(DefaultMQTTMaxConnectSize), false)
	f.Add([]byte{0x10, 0x14, 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 60, 5, 0x11, 0, 0, 0, 10, 0, 2, 'i', 'd'}, uint32(20), true)
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0x7f}, uint32(DefaultMQTTMaxConnectSize), false)
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0x7f, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3}, uint32(MaxMQTTPacketSize), true)
	f.Add(bigConnect(4, 1000), uint32(999), false)
	f.Add(bigConnect(5, 1000), uint32(1000), true)
	f.Fuzz(func(t *testing.T, b []byte, max32 uint32, oneByte bool) {
		limit := int(max32 % (MaxMQTTPacketSize + 1))
		info, perr := parseConnect(b)
		var r io.Reader = bytes.NewReader(b)
		if oneByte {
			r = iotest.OneByteReader(r)
		}
		head, again, err := readConnect(r, limit)
		if cap(head) > max(2*len(b), 64) {
			t.Fatalf("buffer of %d bytes for %d sent", cap(head), len(b))
		}
		var big *connectTooLargeError
		if errors.As(err, &big) {
			if big.Size <= limit {
				t.Fatalf("too large at %d bytes with a maximum of %d", big.Size, limit)
			}
			return
		}
		if err != nil {
			return
		}
		if len(head) > limit {
			t.Fatalf("read a CONNECT of %d bytes over the maximum of %d", len(head), limit)
		}
		// What the reader accepted, the parser accepts alike, from the
		// bytes the reader returned.
		if perr != nil || again != info || !bytes.Equal(head, b[:len(head)]) {
			t.Fatalf("readConnect disagrees: %+v %v vs %+v %v", again, err, info, perr)
		}
	})
}
