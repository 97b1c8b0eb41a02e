//go:build !unix

package certs

import "os"

// openNonBlocking opens path for reading. Without O_NONBLOCK, the Stat
// before it is what keeps FIFOs and devices from being opened.
func openNonBlocking(path string) (*os.File, error) {
	return os.Open(path)
}
