package certs_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tlsfront/tlsfront/certs"
)

// Configuration may name any path; ReadFile says what is wrong with it
// instead of blocking on a FIFO or reading a huge file whole.
func ExampleReadFile() {
	dir, err := os.MkdirTemp("", "readfile")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n"), 0o644); err != nil {
		panic(err)
	}
	for _, p := range []string{ca, dir, filepath.Join(dir, "missing.pem")} {
		data, err := certs.ReadFile(p, certs.MaxFileBytes)
		switch {
		case errors.Is(err, certs.ErrNotRegularFile):
			fmt.Println("not a regular file")
		case errors.Is(err, os.ErrNotExist):
			fmt.Println("missing")
		case err != nil:
			fmt.Println(err)
		default:
			fmt.Println(len(data), "bytes")
		}
	}
	// Output:
	// 28 bytes
	// not a regular file
	// missing
}
