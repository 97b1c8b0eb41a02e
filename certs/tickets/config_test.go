package tickets_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"gopkg.in/yaml.v3"

	"github.com/tlsfront/tlsfront/certs/tickets"
)

func TestConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "ticket.key")
	os.WriteFile(good, []byte(secret), 0o600)
	open := filepath.Join(dir, "open.key")
	os.WriteFile(open, []byte(secret), 0o644)
	short := filepath.Join(dir, "short.key")
	os.WriteFile(short, []byte("short"), 0o600)

	for _, tc := range []struct {
		name    string
		yaml    string
		invalid string // a YAML key the Validate error names
		source  string // a word the NewSource error has
		kind    any
	}{
		{"off", "{}", "", "", nil},
		{"key file", "key_file: " + good + "\nrotate_every: 30m\nkeep: 3\nmax_age: 1h", "", "", &tickets.Derived{}},
		{"shared", "shared: true", "", "", &tickets.Stored{}},
		{"both", "key_file: x\nshared: true", "key_file and shared", "", nil},
		{"short rotation", "shared: true\nrotate_every: 10s", "rotate_every", "", nil},
		{"negative max age", "shared: true\nmax_age: -1s", "max_age", "", nil},
		{"bad keep", "shared: true\nkeep: 1000", "keep", "", nil},
		{"key file readable by others", "key_file: " + open, "", "chmod 600", nil},
		{"key file too short", "key_file: " + short, "", "at least 32", nil},
		{"key file missing", "key_file: " + filepath.Join(dir, "none"), "", "key_file", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c tickets.Config
			if err := yaml.Unmarshal([]byte(tc.yaml), &c); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			if tc.invalid != "" {
				if err == nil || !strings.Contains(err.Error(), tc.invalid) {
					t.Fatalf("Validate: %v, want an error about %s", err, tc.invalid)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			src, err := c.NewSource(&certmagic.FileStorage{Path: t.TempDir()})
			if tc.source != "" {
				if err == nil || !strings.Contains(err.Error(), tc.source) {
					t.Fatalf("NewSource: %v, want an error with %q", err, tc.source)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch tc.kind.(type) {
			case nil:
				if src != nil || c.Enabled() {
					t.Fatalf("got a source %T while off", src)
				}
			case *tickets.Derived:
				if _, ok := src.(*tickets.Derived); !ok {
					t.Fatalf("got %T", src)
				}
			case *tickets.Stored:
				if _, ok := src.(*tickets.Stored); !ok {
					t.Fatalf("got %T", src)
				}
			}
		})
	}
	var c tickets.Config
	yaml.Unmarshal([]byte("rotate_every: 90m"), &c)
	if c.RotateEvery != 90*time.Minute {
		t.Fatalf("rotate_every 90m read as %v", c.RotateEvery)
	}
}
