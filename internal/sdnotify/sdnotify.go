package sdnotify

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Notify tells systemd (Type=notify) about tlsfront's state: READY=1
// once serving, RELOADING=1 and READY=1 around a reload, STOPPING=1 on
// shutdown, WATCHDOG=1 while alive. Without NOTIFY_SOCKET it does
// nothing; a failed send is ignored, as systemd's own sd_notify does.
func Notify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if strings.HasPrefix(path, "@") {
		path = "\x00" + path[1:] // abstract namespace
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	c.Write([]byte(state))
}

// Reloading is the RELOADING=1 message, which systemd wants with the
// monotonic time it was sent.
func Reloading() string {
	return fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec())
}

// Watchdog sends WATCHDOG=1 at half the interval systemd asked for
// (WatchdogSec=), until ctx ends. Without a watchdog it returns at once.
func Watchdog(ctx context.Context) error {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return nil
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return nil
	}
	t := time.NewTicker(time.Duration(usec) * time.Microsecond / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			Notify("WATCHDOG=1")
		}
	}
}

// Listeners returns the sockets systemd passed (socket
// activation: LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES), by name: the
// FileDescriptorName= of each socket unit, which should be the tlsfront
// listener's name (or "admin"). Sockets without a name are keyed by their
// address. Nil without socket activation.
func Listeners() (map[string]net.Listener, error) {
	if os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) {
		return nil, nil
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n <= 0 {
		return nil, nil
	}
	names := strings.Split(os.Getenv("LISTEN_FDNAMES"), ":")
	out := map[string]net.Listener{}
	for i := range n {
		fd := 3 + i // SD_LISTEN_FDS_START
		f := os.NewFile(uintptr(fd), fmt.Sprintf("LISTEN_FD_%d", fd))
		ln, err := net.FileListener(f)
		f.Close() // FileListener dups the descriptor
		if err != nil {
			return nil, fmt.Errorf("socket activation: descriptor %d is not a listening socket: %w", fd, err)
		}
		name := ""
		if i < len(names) && names[i] != "" && names[i] != "unknown" {
			name = names[i]
		} else {
			name = ln.Addr().String()
		}
		out[name] = ln
	}
	// Unsetting them keeps children (none today) from taking them too.
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	return out, nil
}
