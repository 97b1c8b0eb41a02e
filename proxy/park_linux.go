package proxy

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Parking.
//
// A direction that had no data for ParkAfter returns from its goroutine
// and leaves its source socket registered in one epoll instance shared by
// the Server's pipes (the watcher). The first readable byte, end of
// stream or error on that socket starts a fresh goroutine that carries on
// copying. A parked direction holds no goroutine, no stack and no buffer
// of ours.
//
// Why the socket's readiness is enough to wake it: a direction parks only
// right after its Read returned a timeout error. For the client that Read
// went through crypto/tls, and the timeout proves that no layer above
// the socket holds bytes a Read could return:
//   - crypto/tls returns already decrypted plaintext without touching
//     the socket, so none was left;
//   - it decrypts a complete record already read from the socket without
//     touching the socket either, so none was buffered;
//   - a partial record may remain buffered in crypto/tls, but its missing
//     bytes have to come through the socket, which makes it readable;
//   - the PROXY header reader (go-proxyproto) hands over what it buffered
//     before it reads the socket again.
//
// crypto/tls keeps a partial record across a timeout: a timeout is a
// temporary net.Error, which it does not make permanent.
//
// The watcher itself waits in Go's netpoller: the epoll descriptor is
// pollable, so a goroutine waits on it through an os.File with no thread
// blocked in epoll_wait. Registrations are level-triggered one-shot and
// keyed by a token, never by descriptor number, and every epoll_ctl goes
// through the socket's RawConn, which keeps the descriptor open meanwhile:
// a descriptor closed and reused elsewhere can never be touched.

// watcher is the readiness watcher parked directions wait in.
type watcher struct {
	log  *slog.Logger
	file *os.File // the epoll instance
	rc   syscall.RawConn
	done chan struct{} // closed when loop returns

	mu     sync.Mutex
	closed bool
	next   uint32
	parked map[uint32]*half
}

func newWatcher(log *slog.Logger) (*watcher, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	// Non-blocking, so that os.NewFile hands it to the netpoller.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("epoll non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(fd), "park-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("epoll raw conn: %w", err)
	}
	w := &watcher{log: log, file: f, rc: rc, done: make(chan struct{}), parked: map[uint32]*half{}}
	go w.loop()
	return w, nil
}

// loop wakes parked directions until the watcher is closed.
func (w *watcher) loop() {
	defer close(w.done)
	events := make([]unix.EpollEvent, 64)
	for {
		var n int
		var werr syscall.Errno
		err := w.rc.Read(func(epfd uintptr) bool {
			for {
				// A zero timeout never blocks; EINTR is unlikely but must
				// not be taken for "nothing ready".
				if n, werr = sysEpollWait(epfd, events); werr != unix.EINTR {
					return n != 0 || werr != 0 // nothing ready: wait for the netpoller
				}
			}
		})
		if err != nil {
			return // closed
		}
		if werr != 0 {
			// Cannot happen with a valid descriptor and buffer; if it
			// does, parked directions are still ended by closeAll.
			w.log.Error("epoll_wait failed; parked connections wake no more", "err", werr)
			return
		}
		for _, ev := range events[:n] {
			w.mu.Lock()
			h := w.parked[uint32(ev.Fd)]
			if h != nil {
				delete(w.parked, uint32(ev.Fd))
				w.unsyncedDel(h)
			}
			w.mu.Unlock()
			if h != nil {
				go h.run(false)
			}
		}
	}
}

// park registers h's socket. When it reports true the watcher owns h
// until the socket is ready or unpark takes it back.
func (w *watcher) park(h *half) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	// A draining direction must not park: the drain looks for it here
	// under w.mu after setting the flag (pipe.drain).
	if w.closed || (h.fr != nil && h.p.draining.Load()) {
		return false
	}
	// Tokens wrap after 2^32 parks; skip any still held by a direction
	// parked since then.
	w.next++
	for w.parked[w.next] != nil {
		w.next++
	}
	tok := w.next
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(tok)}
	var cerr error
	err := w.rc.Control(func(epfd uintptr) {
		err := h.raw.Control(func(fd uintptr) {
			if errno := sysEpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &ev); errno != 0 {
				cerr = errno
			}
		})
		if cerr == nil {
			cerr = err
		}
	})
	if err != nil || cerr != nil {
		return false // the socket (or the watcher) is closed
	}
	h.token = tok
	w.parked[tok] = h
	return true
}

// unpark takes h back if it is parked, and reports whether it was.
func (w *watcher) unpark(h *half) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.parked[h.token] != h {
		return false
	}
	delete(w.parked, h.token)
	w.unsyncedDel(h)
	return true
}

// unsyncedDel removes h's registration; the caller holds w.mu. A closed
// socket has none left: the kernel dropped it at close.
func (w *watcher) unsyncedDel(h *half) {
	w.rc.Control(func(epfd uintptr) {
		h.raw.Control(func(fd uintptr) {
			sysEpollCtl(epfd, unix.EPOLL_CTL_DEL, fd, nil)
		})
	})
}

// len is how many directions are parked.
func (w *watcher) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.parked)
}

// close stops the watcher and waits for its goroutine. Directions still
// parked stay where they are: the caller ends them first.
func (w *watcher) close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.done
		return
	}
	w.closed = true
	w.mu.Unlock()
	w.file.Close()
	<-w.done
}

// pendingBytes is how many bytes the socket behind raw holds unread, or 0
// if that cannot be told.
func pendingBytes(raw syscall.RawConn) int {
	var n int
	raw.Control(func(fd uintptr) { n = sysPending(fd) })
	return n
}
