package tickets

import (
	"testing"
	"time"
)

// FuzzDecodeState: the stored key list comes from Redis or a file that
// other processes write; decoding it must never panic nor yield a key
// of the wrong size.
func FuzzDecodeState(f *testing.F) {
	f.Add([]byte(`{"keys":[{"created":"2026-12-01T15:00:00Z","key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}]}`))
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`{"keys":[{"key":null}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeState(b)
		if err != nil {
			return
		}
		for _, k := range st.Keys {
			if len(k.Key) != 32 {
				t.Fatalf("key of %d bytes accepted", len(k.Key))
			}
		}
		// A decoded state must be usable by fresh without panicking.
		s := &Stored{sched: Schedule{Period: time.Hour, Keep: 2}}
		if len(st.Keys) > 0 {
			s.fresh(st.Keys, time.Now())
		}
	})
}
