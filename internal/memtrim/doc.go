// Package memtrim gives free heap memory back to the operating system
// once a burst is over.
//
// A sidecar's memory limit is set by its peak RSS. After a burst of TLS
// handshakes (a fleet reconnecting, a rolling restart of the load
// balancer in front) the handshakes' garbage is freed by the garbage
// collector but stays resident: Go's background scavenger only returns
// memory above about 1.1× the heap goal, and with GOGC=100 the goal is
// twice the live heap. A process holding thousands of idle connections
// allocates almost nothing, so the goal never moves and that memory is
// kept for good. A Trimmer watches runtime/metrics and, when the burst is
// over and much of the heap is free, calls debug.FreeOSMemory, at most
// once per MinGap.
package memtrim
