// Package sdnotify speaks to systemd: readiness and watchdog
// notifications (sd_notify), the listening sockets of socket activation,
// and SO_REUSEPORT for a process that takes over another's ports. Without
// systemd every function does nothing, so tlsfront runs the same either
// way.
package sdnotify
