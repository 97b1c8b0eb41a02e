//go:build unix

package certs

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestOpenNonBlockingFIFO covers the race ReadFile's first Stat cannot:
// the path becomes a FIFO after it. The open must not block, and the check
// on the open descriptor must refuse it.
func TestOpenNonBlockingFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "cert.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		f, err := openNonBlocking(fifo)
		if err != nil {
			done <- err
			return
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			done <- err
			return
		}
		done <- checkFileInfo(fifo, fi, MaxFileBytes)
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrNotRegularFile) {
			t.Fatalf("err = %v, want ErrNotRegularFile", err)
		}
	case <-time.After(5 * time.Second):
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		t.Fatal("opening a FIFO blocked")
	}
}

func TestClientCAsRefusesFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "ca.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := NewClientCAs(true).Reload(fifo)
		done <- err
	}()
	select {
	case err := <-done:
		var fe *FileError
		if !errors.As(err, &fe) || fe.File != fifo || !errors.Is(err, ErrNotRegularFile) {
			t.Fatalf("err = %v, want a FileError for %s wrapping ErrNotRegularFile", err, fifo)
		}
	case <-time.After(5 * time.Second):
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		t.Fatal("Reload blocked on a FIFO")
	}
}
