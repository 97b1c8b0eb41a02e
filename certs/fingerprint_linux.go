package certs

import (
	"io/fs"
	"syscall"
	"time"
)

// statSys adds the inode and change time, which a rewrite in place within
// the modification time's granularity still changes.
func statSys(fi fs.FileInfo, s *fileStat) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.dev, s.ino = uint64(st.Dev), st.Ino
		s.ctime = time.Unix(int64(st.Ctim.Sec), int64(st.Ctim.Nsec))
	}
}
