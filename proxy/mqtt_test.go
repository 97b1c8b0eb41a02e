package proxy

import (
	"bytes"
	"testing"
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

// FuzzParseConnect feeds arbitrary first packets, as a hostile client
// would after the handshake. The parser must never panic and must only
// claim success for packets it fully read.
func FuzzParseConnect(f *testing.F) {
	f.Add([]byte{0x10, 0x0e, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 2, 'i', 'd'})
	f.Add([]byte{0x10, 0x14, 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 60, 5, 0x11, 0, 0, 0, 10, 0, 2, 'i', 'd'})
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := parseConnect(b)
		if err != nil {
			return
		}
		if info.Level == 0 && len(b) < 2 {
			t.Fatal("success on an impossible packet")
		}
		// A parsed packet re-read through the streaming reader agrees.
		_, again, err := readConnect(bytes.NewReader(b))
		if err != nil || again != info {
			t.Fatalf("readConnect disagrees: %+v %v vs %+v", again, err, info)
		}
	})
}
