package filewatch

import (
	"context"
	"crypto/sha256"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// maxSymlinkHops bounds symlink chains, as the kernel does (ELOOP).
const maxSymlinkHops = 40

// Watch calls Reload when the files behind Paths, or anything in Folders,
// change.
//
// It watches folders, never the files: renewals replace files rather than
// write them (an atomic rename, certbot re-pointing live/ symlinks at
// archive/, Kubernetes swapping the ..data symlink of a secret volume), and
// a watch on a replaced file stays on the old inode. For each path it
// watches the folder holding it and the folder of every symlink hop on the
// way to the real file; after any event the set is worked out again, so a
// symlink now pointing elsewhere moves the watch with it.
//
// Events start a quiet period (debounce); once nothing has happened for
// that long, the watched files' contents are compared with what they were,
// and reload runs only when one of them changed: other files in the same
// folders (a broker's log, say) never cause a reload. Waiting for quiet
// means a certificate written before its key is never read half-way. When
// reload says the files looked mid-update it runs once more, final, after
// another quiet period.
//
// A certificate folder (folders) is watched with each of its subfolders
// and the targets of Kubernetes ..data symlinks, so that a customer added,
// a certbot renewal or a secret swap is seen. Any change there reloads
// without comparing contents here: the certificate manager compares
// each pair's stats and hashes itself, which scales to thousands of
// pairs. The subfolders are listed again after each quiet period, and at
// once when a folder is created in a certificate folder.
type Watch struct {
	// Paths are files whose content counts; Folders are watched whole.
	Paths    []string
	Folders  []string
	Debounce time.Duration
	Log      *slog.Logger
	// Reload reloads; with final false it may hold back failures that
	// look mid-update and ask for a retry. changed lists where events
	// happened in the certificate folders, so that only the pairs there
	// are checked; nil: check everything.
	Reload func(ctx context.Context, final bool, changed []string) (retry bool)

	// folderDirs are the folders watched for folders, folderRoots the
	// folders themselves; folderChanged says an event happened in one,
	// relist that the subfolders must be listed again.
	folderDirs, folderRoots map[string]bool
	folderChanged, relist   bool
	// changed collects the paths of the events in certificate folders
	// since the last reload, up to maxChangedPaths; nil once events were
	// lost or too many: then everything is checked.
	changed map[string]bool
	lost    bool
	// pathDirs are the folders the listed paths resolved through at the
	// last sync; dirty says the watched set must be compared in full.
	pathDirs map[string]bool
	dirty    bool
}

// maxChangedPaths bounds the event paths handed to a reload; beyond it
// (a mass renewal) the reload checks every pair.
const maxChangedPaths = 1024

// Run watches until ctx ends.
func (w *Watch) Run(ctx context.Context) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		w.Log.Error("file watch unavailable; reload with SIGHUP or POST /reload", "err", err)
		return nil
	}
	defer fw.Close()
	watched := map[string]bool{}
	w.listFolders()
	w.sync(fw, watched)
	w.Log.Debug("watching certificate files", "folders", slices.Sorted(maps.Keys(watched)))

	sums := fingerprints(w.Paths)
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	defer quiet.Stop()
	retrying := false
	// changed is what the last reload was told had changed, for its
	// retry.
	var changed []string
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return nil
			}
			if w.Log.Enabled(ctx, slog.LevelDebug) {
				w.Log.Debug("certificate folder changed", "path", ev.Name, "op", ev.Op.String())
			}
			if w.inFolders(ev) {
				w.folderChanged = true
				w.note(ev.Name)
			}
			w.sync(fw, watched)
			retrying = false
			quiet.Reset(w.Debounce)
		case err, ok := <-fw.Errors:
			if !ok {
				return nil
			}
			// Usually a queue overflow: events were lost, so reload to
			// be sure.
			w.Log.Warn("file watch error; reloading to be sure", "err", err)
			w.dirty = true
			w.sync(fw, watched)
			sums = nil
			w.folderChanged, w.relist = len(w.Folders) > 0, len(w.Folders) > 0
			w.lost = true
			quiet.Reset(w.Debounce)
		case <-quiet.C:
			if !retrying {
				changed = w.takeChanged()
			}
			if w.folderChanged && !retrying {
				w.folderChanged = false
				if w.relist {
					w.relist = false
					w.listFolders()
					w.sync(fw, watched)
				}
				sums = fingerprints(w.Paths)
				w.Log.Info("certificate folder changed, reloading")
			} else if !retrying {
				now := fingerprints(w.Paths)
				changed := changedPaths(sums, now)
				sums = now
				if len(changed) == 0 {
					w.Log.Debug("certificate folders changed but no watched file did; not reloading")
					continue
				}
				w.Log.Info("certificate files changed, reloading", "files", changed)
			}
			if w.Reload(ctx, retrying, changed) && !retrying {
				retrying = true
				quiet.Reset(w.Debounce)
				continue
			}
			retrying = false
		}
	}
}

// sync makes fw watch exactly the folders paths resolve through now, and
// those of the certificate folders as last listed.
//
// With thousands of subfolders watched, an event costs only the walk of
// the listed paths: the whole set is compared only when those moved or
// the folders were listed again (dirty).
func (w *Watch) sync(fw *fsnotify.Watcher, watched map[string]bool) {
	pathDirs := map[string]bool{}
	for _, p := range w.Paths {
		for _, d := range watchDirs(p) {
			pathDirs[d] = true
		}
	}
	if !w.dirty && w.pathDirs != nil && maps.Equal(pathDirs, w.pathDirs) {
		return
	}
	w.pathDirs, w.dirty = pathDirs, false
	want := maps.Clone(pathDirs)
	for d := range w.folderDirs {
		want[d] = true
	}
	for d := range watched {
		if !want[d] {
			// The folder may be gone already (an old Kubernetes
			// ..timestamp folder); then the watch went with it.
			fw.Remove(d)
			delete(watched, d)
		}
	}
	for d := range want {
		if watched[d] {
			continue
		}
		if err := fw.Add(d); err != nil {
			// Retried on the next event in a folder that is watched.
			w.Log.Warn("cannot watch certificate folder", "folder", d, "err", err)
			w.dirty = true
			continue
		}
		watched[d] = true
	}
}

// note keeps path as one where an event happened in a certificate folder.
func (w *Watch) note(path string) {
	if w.changed == nil {
		w.changed = map[string]bool{}
	}
	if len(w.changed) >= maxChangedPaths {
		w.lost = true
		return
	}
	w.changed[path] = true
}

// takeChanged returns the paths noted since the last call, nil when
// events were lost or too many, and starts over.
func (w *Watch) takeChanged() []string {
	defer func() { w.changed, w.lost = nil, false }()
	if w.lost {
		return nil
	}
	// Not nil when empty: listed files changed, folders did not.
	return append([]string{}, slices.Sorted(maps.Keys(w.changed))...)
}

// listFolders lists what to watch of the certificate folders: each, its
// subfolders, and the folders their ..data symlinks point at.
func (w *Watch) listFolders() {
	w.dirty = true
	w.folderDirs = map[string]bool{}
	w.folderRoots = map[string]bool{}
	for _, f := range w.Folders {
		for i, d := range folderWatchDirs(f) {
			w.folderDirs[d] = true
			if i == 0 {
				w.folderRoots[d] = true
			}
		}
	}
}

// inFolders reports whether ev happened in a certificate folder or one of
// its subfolders. A folder created in a certificate folder (a customer
// added) is watched at once, so that the files written into it next are
// seen too.
func (w *Watch) inFolders(ev fsnotify.Event) bool {
	dir := filepath.Dir(ev.Name)
	if w.folderRoots[dir] && ev.Has(fsnotify.Create) {
		if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
			if real, err := filepath.EvalSymlinks(ev.Name); err == nil {
				w.folderDirs[real] = true
				w.dirty = true
			}
		}
	}
	in := w.folderDirs[dir] || w.folderDirs[ev.Name]
	if in && (w.folderRoots[dir] || w.folderRoots[ev.Name] || filepath.Base(ev.Name) == "..data") {
		// A subfolder added or removed, or a secret's ..data swapped:
		// what to watch changed. A renewal inside a subfolder does not
		// change it.
		w.relist = true
	}
	return in
}

// folderWatchDirs returns the real path of dir first, then those of its
// subfolders and of the targets of ..data symlinks in dir and in them.
// Other entries starting with "." are skipped. Only symlinks are
// resolved: with ten thousand subfolders this is one lstat each.
func folderWatchDirs(dir string) []string {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil
	}
	out := []string{real}
	addData := func(d string) {
		p := filepath.Join(d, "..data")
		if fi, err := os.Lstat(p); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			return
		}
		if t, err := filepath.EvalSymlinks(p); err == nil {
			out = append(out, t)
		}
	}
	addData(real)
	entries, err := os.ReadDir(real)
	if err != nil {
		return out
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(real, e.Name())
		if e.Type()&os.ModeSymlink != 0 {
			if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
				continue
			}
			if p, err = filepath.EvalSymlinks(p); err != nil {
				continue
			}
		} else if !e.IsDir() {
			continue
		}
		out = append(out, p)
		addData(p)
	}
	return out
}

// watchDirs returns the real folders whose changes can change what path
// resolves to: the one holding path and, for each symlink hop, the one
// holding its target. Symlinks higher up, on the folders themselves, are
// resolved but not followed for changes.
func watchDirs(path string) []string {
	var out []string
	cur, err := filepath.Abs(path)
	if err != nil {
		return nil
	}
	for range maxSymlinkHops {
		dir := filepath.Dir(cur)
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			dir = real
		}
		if !slices.Contains(out, dir) {
			out = append(out, dir)
		}
		fi, err := os.Lstat(cur)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			break
		}
		target, err := os.Readlink(cur)
		if err != nil {
			break
		}
		if !filepath.IsAbs(target) {
			// Relative to where the link really is, as the kernel
			// resolves it.
			target = filepath.Join(dir, target)
		}
		cur = target
	}
	return out
}

// maxFingerprintRead bounds what is read of one watched file; certificate
// files are far smaller, and a larger file is refused by the load anyway.
const maxFingerprintRead = 1 << 20

// fingerprint tells whether a file's content changed: a hash of what is
// at path now (through symlinks), or how it cannot be read. Anything but
// a regular file is not opened, so a FIFO cannot block the watch.
func fingerprint(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return "error: " + err.Error()
	}
	if !fi.Mode().IsRegular() {
		return "not a regular file: " + fi.Mode().String()
	}
	f, err := os.Open(path)
	if err != nil {
		return "error: " + err.Error()
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, maxFingerprintRead)); err != nil {
		return "error: " + err.Error()
	}
	return string(h.Sum(nil))
}

func fingerprints(paths []string) map[string]string {
	out := make(map[string]string, len(paths))
	for _, p := range paths {
		out[p] = fingerprint(p)
	}
	return out
}

// changedPaths lists the paths whose fingerprint differs; with no earlier
// fingerprints (events were lost) every path counts as changed.
func changedPaths(before, now map[string]string) []string {
	var out []string
	for _, p := range slices.Sorted(maps.Keys(now)) {
		if old, ok := before[p]; !ok || old != now[p] {
			out = append(out, p)
		}
	}
	return out
}
