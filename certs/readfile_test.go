package certs_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/certs"
)

// readWithin runs certs.ReadFile in a goroutine and fails the test if it
// has not returned within d: a ReadFile that blocks must fail the test,
// not hang it.
func readWithin(t *testing.T, d time.Duration, path string, max int64) ([]byte, error) {
	t.Helper()
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		data, err := certs.ReadFile(path, max)
		done <- result{data, err}
	}()
	select {
	case r := <-done:
		return r.data, r.err
	case <-time.After(d):
		t.Fatalf("ReadFile(%s) still running after %v", path, d)
		return nil, nil
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	small := bytes.Repeat([]byte("x"), 1000)
	regular := write("regular.pem", small)
	exact := write("exact.pem", small[:100])
	empty := write("empty.pem", nil)
	link := filepath.Join(dir, "link.pem")
	if err := os.Symlink(regular, link); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling.pem")
	if err := os.Symlink(filepath.Join(dir, "missing"), dangling); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		path    string
		max     int64
		want    []byte
		wantErr error
	}{
		{"regular file", regular, 4096, small, nil},
		{"exactly the cap", exact, 100, small[:100], nil},
		{"empty file", empty, 100, []byte{}, nil},
		{"symlink to a regular file", link, 4096, small, nil},
		{"over the cap", regular, 999, nil, certs.ErrFileTooLarge},
		{"directory", dir, 4096, nil, certs.ErrNotRegularFile},
		{"missing", filepath.Join(dir, "nope.pem"), 4096, nil, fs.ErrNotExist},
		{"dangling symlink", dangling, 4096, nil, fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readWithin(t, 10*time.Second, tt.path, tt.max)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr != nil && err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			var pe *fs.PathError
			if err != nil && (!errors.As(err, &pe) || pe.Path != tt.path) {
				t.Errorf("err = %v, want an *fs.PathError naming %s", err, tt.path)
			}
			if tt.wantErr == nil && !bytes.Equal(got, tt.want) {
				t.Errorf("read %d bytes, want %d", len(got), len(tt.want))
			}
		})
	}
}

// TestReadFileLargeSparse: a 50 MB file behind a certificate path is
// refused without being read, so it costs no memory (os.ReadFile would
// allocate all of it).
func TestReadFileLargeSparse(t *testing.T) {
	p := filepath.Join(t.TempDir(), "huge.pem")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(50 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const runs = 10
	for range runs {
		if _, err := certs.ReadFile(p, certs.MaxFileBytes); !errors.Is(err, certs.ErrFileTooLarge) {
			t.Fatalf("err = %v, want ErrFileTooLarge", err)
		}
	}
	runtime.ReadMemStats(&after)
	// Allocation is process-wide; 4 MiB leaves room for anything else
	// running while being 125 times less than reading the file 10 times.
	got := after.TotalAlloc - before.TotalAlloc
	if got > 4<<20 {
		t.Errorf("%d refusals allocated %d bytes, want under 4 MiB", runs, got)
	}
	t.Logf("%d refusals of a 50 MB file allocated %d bytes in all", runs, got)
	_, err = certs.ReadFile(p, certs.MaxFileBytes)
	if want := "52428800 bytes"; err == nil || !bytes.Contains([]byte(err.Error()), []byte(want)) {
		t.Errorf("err = %v, want it to name the size (%s)", err, want)
	}
}

// TestReadFileGrowsPastCap: a file whose size is not known in advance (as
// in /proc, which reports 0) is cut at the cap and refused.
func TestReadFileGrowsPastCap(t *testing.T) {
	const p = "/proc/self/maps"
	if _, err := os.Stat(p); err != nil {
		t.Skipf("no %s: %v", p, err)
	}
	if _, err := certs.ReadFile(p, 16); !errors.Is(err, certs.ErrFileTooLarge) {
		t.Fatalf("err = %v, want ErrFileTooLarge", err)
	}
	data, err := certs.ReadFile(p, certs.MaxFileBytes)
	if err != nil || len(data) == 0 {
		t.Fatalf("reading %s whole: %d bytes, %v", p, len(data), err)
	}
}
