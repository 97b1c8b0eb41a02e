package filewatch

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// The folders watched for a path are the one holding it and that of every
// symlink hop, as renewals lay files out.
func TestWatchDirs(t *testing.T) {
	dir := t.TempDir()
	real, err := filepath.EvalSymlinks(dir)
	mustDo(t, err)
	// Kubernetes: tls.crt -> ..data/tls.crt, ..data -> ..2026_11_23_06_00_01.101
	k8s := filepath.Join(dir, "k8s")
	ts := filepath.Join(k8s, "..2026_11_23_06_00_01.101")
	mustDo(t, os.MkdirAll(ts, 0o755))
	mustDo(t, os.WriteFile(filepath.Join(ts, "tls.crt"), []byte("x"), 0o600))
	mustDo(t, os.Symlink("..2026_11_23_06_00_01.101", filepath.Join(k8s, "..data")))
	mustDo(t, os.Symlink("..data/tls.crt", filepath.Join(k8s, "tls.crt")))
	// certbot: live/NAME/privkey.pem -> ../../archive/NAME/privkey1.pem
	live, archive := filepath.Join(dir, "le", "live", "mqtt.example"), filepath.Join(dir, "le", "archive", "mqtt.example")
	mustDo(t, os.MkdirAll(live, 0o755))
	mustDo(t, os.MkdirAll(archive, 0o755))
	mustDo(t, os.WriteFile(filepath.Join(archive, "privkey1.pem"), []byte("x"), 0o600))
	mustDo(t, os.Symlink("../../archive/mqtt.example/privkey1.pem", filepath.Join(live, "privkey.pem")))
	tests := []struct {
		name string
		path string
		want []string
	}{
		{name: "plain file", path: filepath.Join(k8s, "..data_none"), want: []string{filepath.Join(real, "k8s")}},
		{name: "kubernetes", path: filepath.Join(k8s, "tls.crt"), want: []string{filepath.Join(real, "k8s"), filepath.Join(real, "k8s", "..2026_11_23_06_00_01.101")}},
		{name: "certbot", path: filepath.Join(live, "privkey.pem"), want: []string{filepath.Join(real, "le", "live", "mqtt.example"), filepath.Join(real, "le", "archive", "mqtt.example")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := watchDirs(tc.path)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("watchDirs(%s) = %q, want %q", tc.path, got, tc.want)
			}
		})
	}
}
