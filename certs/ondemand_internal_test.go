package certs

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestOnDemandNameTableBound: the names remembered are bounded; at the
// bound, names whose backoff has ended are forgotten to make room, and
// when none has, a new name is refused by the name_table cap.
func TestOnDemandNameTableBound(t *testing.T) {
	a, err := NewACME(ACMEOptions{Storage: t.TempDir(), OnDemand: &OnDemandOptions{Allow: []string{"*.example.com"}}})
	if err != nil {
		t.Fatal(err)
	}
	od := newOnDemand(a, nil, &OnDemandOptions{MaxPerMinute: 1000, MaxPerDomainPerHour: 1000})
	now := time.Now()
	od.now = func() time.Time { return now }
	for i := range maxODNames {
		od.names[fmt.Sprintf("n%d.example.com", i)] = &odState{phase: odFailing, retryAt: now.Add(time.Minute), err: errors.New("refused")}
	}
	err = od.enqueue("new.example.com", now)
	var ie *IssuanceError
	if !errors.Is(err, ErrIssuanceLimited) || !errors.As(err, &ie) || ie.Cause.Error() != "cap "+CapNameTable {
		t.Fatalf("with a full table: %v, want limited by %s", err, CapNameTable)
	}
	if got := od.stats().Refused[CapNameTable]; got != 1 {
		t.Errorf("Refused[%s] = %d, want 1", CapNameTable, got)
	}
	// A minute on, every backoff has ended: they make room.
	now = now.Add(time.Minute)
	if err := od.enqueue("new.example.com", now); !errors.Is(err, ErrIssuancePending) {
		t.Fatalf("after the backoffs ended: %v, want pending", err)
	}
	if st := od.stats(); st.Queued != 1 || st.Failing != 0 {
		t.Errorf("stats %+v, want 1 queued and nothing failing", st)
	}
}
