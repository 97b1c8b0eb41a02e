package adminguard

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigGuard: the token comes from its file without white space; a
// missing or empty file is an error naming the key.
func TestConfigGuard(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name      string
		c         Config
		wantToken string
		wantErr   string
	}{
		{name: "no token", c: Config{Hosts: []string{"admin.example"}}},
		{name: "token", c: Config{TokenFile: write("tok", "  s3cret\n")}, wantToken: "s3cret"},
		{name: "empty", c: Config{TokenFile: write("empty", "\n")}, wantErr: "admin_guard.token_file: " + filepath.Join(dir, "empty") + " is empty"},
		{name: "missing", c: Config{TokenFile: filepath.Join(dir, "none")}, wantErr: "admin_guard.token_file: open "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, err := tc.c.Guard()
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g.Token != tc.wantToken || len(g.Hosts) != len(tc.c.Hosts) {
				t.Fatalf("guard %+v", g)
			}
		})
	}
}
