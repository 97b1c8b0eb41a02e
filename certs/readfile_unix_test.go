//go:build unix

package certs_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/certs"
)

// TestReadFileSpecialFiles: paths that would block a reload forever or
// read without end are refused at once.
func TestReadFileSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "cert.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Should a broken ReadFile be blocked in open, a writer frees it.
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	zero := filepath.Join(dir, "zero.pem")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	fifoLink := filepath.Join(dir, "fifo-link.pem")
	if err := os.Symlink(fifo, fifoLink); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
	}{
		{"fifo", fifo},
		{"symlink to a fifo", fifoLink},
		{"symlink to /dev/zero", zero},
		{"/dev/null", "/dev/null"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := readWithin(t, 5*time.Second, tt.path, certs.MaxFileBytes)
			if !errors.Is(err, certs.ErrNotRegularFile) {
				t.Fatalf("err = %v, want ErrNotRegularFile", err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("refusal took %v", d)
			}
			t.Log(err)
		})
	}
}

// TestLoadFileRefusesFIFO: a certificate path swapped for a FIFO fails
// the load instead of blocking it, and the error names the path.
func TestLoadFileRefusesFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "cert.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := certs.LoadFile(certs.Source{CertFile: fifo}, certs.Verify{})
		done <- err
	}()
	select {
	case err := <-done:
		var fe *certs.FileError
		if !errors.As(err, &fe) || fe.File != fifo || !errors.Is(err, certs.ErrNotRegularFile) {
			t.Fatalf("err = %v, want a FileError for %s wrapping ErrNotRegularFile", err, fifo)
		}
	case <-time.After(5 * time.Second):
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		t.Fatal("LoadFile blocked on a FIFO")
	}
}
