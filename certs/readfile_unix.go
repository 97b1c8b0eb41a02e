//go:build unix

package certs

import (
	"os"
	"syscall"
)

// openNonBlocking opens path for reading without blocking: open(2) of a
// FIFO with no writer blocks unless O_NONBLOCK is set. On the regular
// files ReadFile goes on to read, O_NONBLOCK changes nothing.
func openNonBlocking(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}
