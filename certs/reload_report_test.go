package certs_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/certs"
)

// TestReloadReport: one refused certificate makes the reload not OK, and
// the text gives each certificate a line, with the reason under a refusal.
func TestReloadReport(t *testing.T) {
	until := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	ok := certs.NewReloadReport([]certs.Result{{ID: "main", Result: certs.Unchanged}})
	if !ok.OK {
		t.Fatal("an unchanged certificate made the reload fail")
	}
	r := certs.NewReloadReport([]certs.Result{
		{ID: "main", Result: certs.Reloaded, Serial: "0a", NotAfter: &until},
		{ID: "rsa", Result: certs.Failed, Error: "key does not match"},
	})
	if r.OK {
		t.Fatal("a refused certificate left the reload OK")
	}
	var b strings.Builder
	r.WriteText(&b)
	want := "main                     " + string(certs.Reloaded) + " serial 0a until 2030-01-02T03:04:05Z\n" +
		"rsa                      " + string(certs.Failed) + "\n  key does not match\n"
	if b.String() != want {
		t.Fatalf("text\n%s\nwant\n%s", b.String(), want)
	}
}
