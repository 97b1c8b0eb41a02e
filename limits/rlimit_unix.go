//go:build unix

package limits

import "syscall"

// SuggestedMaxConns derives a cap on open connections from the process's
// descriptor limit: each proxied connection holds two descriptors (client
// and backend), and some are kept for listeners, files and the admin
// server. It returns 0 (no cap) when the limit cannot be read or is
// effectively unlimited.
func SuggestedMaxConns() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	// Go raises the soft limit to the hard one at start-up, so Cur is
	// what this process can really open.
	if rl.Cur > 1<<30 {
		return 0
	}
	return max(16, (int(rl.Cur)-64)/2)
}
