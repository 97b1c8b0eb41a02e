package certs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// Problems ReadFile refuses a path for. Callers branch on them to tell a
// misconfigured path (it will not get better by retrying) from a file
// that is missing or unreadable for now.
var (
	ErrNotRegularFile = errors.New("not a regular file")
	ErrFileTooLarge   = errors.New("file too large")
)

// MaxFileBytes is the cap certs uses for certificate, key and CA files:
// far more than any real bundle (a chain of a dozen 4096-bit RSA
// certificates is under 25 KiB), small enough that a wrong path costs
// nothing.
const MaxFileBytes = maxBundleBytes

// ReadFile reads the regular file at path, at most max bytes of it. It is
// for files named in configuration and read again on every reload, whose
// path may be wrong or hostile, and never blocks or reads without bound
// because of what is there:
//
//   - anything but a regular file (after following symlinks) is refused
//     with ErrNotRegularFile before it is read: a FIFO, whose open would
//     block a reload forever until a writer appears; a device such as
//     /dev/zero, which never ends; a socket; a directory. On unix the
//     file is opened non-blocking and checked again on the open
//     descriptor, so swapping the path for a FIFO between the checks
//     does not block either;
//   - a file larger than max is refused with ErrFileTooLarge before it is
//     read, or, if it grows (or its size is not known, as in /proc), once
//     max+1 bytes have been read.
//
// Errors are *fs.PathError naming path; a missing file (or a dangling
// symlink) matches fs.ErrNotExist. ReadFile is safe for concurrent use.
func ReadFile(path string, max int64) ([]byte, error) {
	// Stat first, so that a device or FIFO is never even opened: opening
	// some devices has effects (a tape rewinds, a watchdog starts).
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if err := checkFileInfo(path, fi, max); err != nil {
		return nil, err
	}
	f, err := openNonBlocking(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, err
	}
	if err := checkFileInfo(path, fi, max); err != nil {
		return nil, err
	}
	// Room for the size fstat reported, capped, and one byte more to see
	// whether the file has grown past max.
	buf := make([]byte, 0, min(fi.Size(), max)+1)
	r := io.LimitReader(f, max+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
	}
	if int64(len(buf)) > max {
		return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w: more than %d bytes; is this the right file?", ErrFileTooLarge, max)}
	}
	return buf, nil
}

// checkFileInfo refuses what ReadFile must not read, saying what to do.
func checkFileInfo(path string, fi fs.FileInfo, max int64) error {
	m := fi.Mode()
	if !m.IsRegular() {
		return &fs.PathError{Op: "open", Path: path, Err: fmt.Errorf("%w but %s; give the path of the file itself (a symlink to a regular file is fine)", ErrNotRegularFile, fileKind(m))}
	}
	if fi.Size() > max {
		return &fs.PathError{Op: "open", Path: path, Err: fmt.Errorf("%w: %d bytes, more than the %d allowed; is this the right file?", ErrFileTooLarge, fi.Size(), max)}
	}
	return nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	default:
		return "an irregular file (" + m.Type().String() + ")"
	}
}
