//go:build !linux

package proxy

import (
	"errors"
	"log/slog"
	"syscall"
)

// watcher would hold parked directions; without epoll there is none, and
// quiet directions keep waiting on their goroutines (see park_linux.go).
type watcher struct{}

func newWatcher(*slog.Logger) (*watcher, error) {
	return nil, errors.New("parking needs epoll (linux)")
}

func (w *watcher) park(*half) bool   { return false }
func (w *watcher) unpark(*half) bool { return false }
func (w *watcher) len() int          { return 0 }
func (w *watcher) close()            {}

// pendingBytes returns 0: without SIOCINQ each record is written alone.
func pendingBytes(syscall.RawConn) int { return 0 }
