package certs

import (
	"crypto/sha256"
	"os"
	"time"
)

// fileStat is what says, without reading a file, that it is the same as
// before: a renewal writes a new file (new inode) or rewrites one (new
// size, modification or change time).
type fileStat struct {
	dev, ino     uint64
	size         int64
	mtime, ctime time.Time
}

// pairPrint fingerprints the files of one pair as last checked: their
// stats, and a hash of their content for when only the stats changed
// (the same bytes written again).
type pairPrint struct {
	cert, key fileStat
	sum       [sha256.Size]byte
}

// statFile stats path through symlinks; ok is false when it cannot.
func statFile(path string) (fileStat, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStat{}, false
	}
	return statOf(fi), true
}

func statOf(fi os.FileInfo) fileStat {
	s := fileStat{size: fi.Size(), mtime: fi.ModTime()}
	statSys(fi, &s)
	return s
}

// statPair stats f's files; cert, when ok, is the certificate file's
// stats taken a moment ago (by the folder scan). ok is false when one
// cannot be stat'ed: the pair is then read, which says why.
func statPair(f FileCert, cert fileStat, certOK bool) (p pairPrint, ok bool) {
	p.cert, ok = cert, certOK
	if !ok {
		if p.cert, ok = statFile(f.CertFile); !ok {
			return p, false
		}
	}
	if f.KeyFile == "" {
		p.key = p.cert
		return p, true
	}
	p.key, ok = statFile(f.KeyFile)
	return p, ok
}

// sameStats reports whether the files look untouched since p was taken.
func (p pairPrint) sameStats(q pairPrint) bool { return p.cert == q.cert && p.key == q.key }

// contentSum hashes a pair's bytes.
func contentSum(cert, key []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write(cert)
	h.Write([]byte{0})
	h.Write(key)
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}
