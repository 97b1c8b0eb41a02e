// Package filewatch watches certificate files and folders the way
// renewals change them: through their folders (a watch on a replaced file
// stays on the old inode), following symlink hops (certbot's live/,
// Kubernetes' ..data swap), waiting for a quiet period so that a pair is
// never read half-written, and calling a reload only when a watched
// file's content changed or something happened in a watched folder. It is
// the trigger; what a reload does is the caller's.
package filewatch
