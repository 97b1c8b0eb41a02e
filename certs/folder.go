package certs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// FolderSource is a folder of certificate and key pairs, listed again on
// every reload: a pair that appears is loaded, one that disappears stops
// being served. Each pair's ID is the part of its path the pattern's "*"
// matched (a subfolder or file name); the names it serves are its SANs.
//
// With Cert empty, Dir is read in the two layouts tools write:
//
//   - certbot's live/ folder: each subfolder's fullchain.pem and
//     privkey.pem (the README beside them is not a subfolder, and is
//     skipped);
//   - Kubernetes TLS secrets: tls.crt and tls.key in Dir itself (one
//     secret volume; the ID is Dir's name) or in each subfolder (a folder
//     of secret volumes). The ..data symlinks are followed; entries whose
//     name starts with "." (..data itself, ..2024_01_01_…) are never
//     pairs.
//
// With Cert set, pairs are the files matching it: see Cert and Key.
type FolderSource struct {
	// Dir is the folder.
	Dir string
	// Cert is the path of each certificate file under Dir, with one "*"
	// standing for the pair's name within one path element:
	// "*.crt" (example.com.crt), "*/fullchain.pem",
	// "customer-*/tls.crt". Names starting with "." never match.
	Cert string
	// Key is the path of each pair's key under Dir, "{name}" standing for
	// what "*" matched in Cert: "{name}.key", "{name}/privkey.pem".
	// Empty: the key is in the certificate file (a combined PEM).
	Key string
	// Prefix, when set, makes each ID Prefix + "/" + name, to keep two
	// folders holding the same names apart.
	Prefix string
}

// Layouts read from a folder without a Cert pattern.
var autoLayouts = []FolderSource{
	{Cert: "*/fullchain.pem", Key: "{name}/privkey.pem"}, // certbot live/
	{Cert: "*/tls.crt", Key: "{name}/tls.key"},           // folder of Kubernetes secrets
}

// Validate checks f without reading anything; errors name the YAML keys of
// a certificates entry (dir, cert, key).
func (f FolderSource) Validate() error {
	var errs []error
	if f.Dir == "" {
		errs = append(errs, errors.New("dir: missing"))
	}
	if f.Cert == "" {
		if f.Key != "" {
			errs = append(errs, errors.New("key: needs cert, the pattern of the certificate files (e.g. cert: \"*.crt\", key: \"{name}.key\")"))
		}
		return errors.Join(errs...)
	}
	if err := checkPattern(f.Cert); err != nil {
		errs = append(errs, fmt.Errorf("cert: %w", err))
	}
	if f.Key != "" {
		if !strings.Contains(f.Key, "{name}") {
			errs = append(errs, fmt.Errorf("key: %q does not say where the name goes; write {name} where cert has *, e.g. \"{name}.key\"", f.Key))
		}
		if filepath.IsAbs(f.Key) || slices.Contains(strings.Split(filepath.ToSlash(f.Key), "/"), "..") {
			errs = append(errs, fmt.Errorf("key: %q must be a path under dir, without \"..\" elements", f.Key))
		}
	}
	return errors.Join(errs...)
}

func checkPattern(p string) error {
	switch {
	case strings.Count(p, "*") != 1:
		return fmt.Errorf("%q must hold exactly one *, standing for the name (e.g. \"*.crt\" or \"*/fullchain.pem\")", p)
	case strings.ContainsAny(p, "?[\\"):
		return fmt.Errorf("%q: only * is a wildcard here", p)
	case filepath.IsAbs(p) || slices.Contains(strings.Split(filepath.ToSlash(p), "/"), ".."):
		return fmt.Errorf("%q must be a path under dir, without \"..\" elements", p)
	}
	return nil
}

// FolderError is a folder that cannot be listed. Its pairs are kept as
// they were served.
type FolderError struct {
	Dir string
	Err error
}

func (e *FolderError) Error() string { return "certificates folder " + e.Dir + ": " + e.Err.Error() }
func (e *FolderError) Unwrap() error { return e.Err }

// ID names a folder in reload results when it cannot be listed.
func (f FolderSource) ID() string { return "dir:" + f.Dir }

// Scan lists f's pairs now, sorted by ID. The error is a *FolderError when
// Dir cannot be read; a pair whose key is missing is still listed, so that
// loading it reports the problem.
func (f FolderSource) Scan() ([]FileCert, error) {
	found, err := f.scan()
	out := make([]FileCert, len(found))
	for i, p := range found {
		out[i] = p.FileCert
	}
	return out, err
}

// found is a pair a scan found, with the stats of its certificate file;
// or, when known is set, a pair taken as it was without a stat (see
// scanPatterns).
type found struct {
	FileCert
	cert  fileStat
	known bool
}

func (f FolderSource) scan() ([]found, error) { return f.scanWith(nil) }

// scanWith is scan; keep, when not nil, is asked about each pair an entry
// would be before anything is stat'ed (see scanPatterns).
func (f FolderSource) scanWith(keep func(fc FileCert, elem string) bool) ([]found, error) {
	fi, err := os.Stat(f.Dir)
	if err != nil {
		return nil, &FolderError{f.Dir, err}
	}
	if !fi.IsDir() {
		return nil, &FolderError{f.Dir, errors.New("not a folder")}
	}
	var out []found
	layouts := []FolderSource{f}
	if f.Cert == "" {
		layouts = autoLayouts
		// One secret volume (or one certbot name) mounted as Dir itself.
		for _, l := range [][2]string{{"tls.crt", "tls.key"}, {"fullchain.pem", "privkey.pem"}} {
			if st, ok := statRegular(filepath.Join(f.Dir, l[0])); ok {
				out = append(out, found{FileCert{ID: f.id(filepath.Base(filepath.Clean(f.Dir))), CertFile: filepath.Join(f.Dir, l[0]), KeyFile: filepath.Join(f.Dir, l[1])}, st, false})
				break
			}
		}
	}
	pairs, err := f.scanPatterns(layouts, keep)
	if err != nil {
		return nil, &FolderError{f.Dir, err}
	}
	out = append(out, pairs...)
	slices.SortStableFunc(out, func(a, b found) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (f FolderSource) id(name string) string {
	if f.Prefix != "" {
		return f.Prefix + "/" + name
	}
	return name
}

// patternParts splits a Cert pattern around its "*", which lies within
// one path element: the folder holding that element (parent), what the
// element must start and end with, and the rest of the path after it.
func patternParts(cert string) (parent, before, after, rest string) {
	pat := filepath.ToSlash(cert)
	star := strings.Index(pat, "*")
	start := strings.LastIndex(pat[:star], "/") + 1
	end := len(pat)
	if i := strings.Index(pat[star:], "/"); i >= 0 {
		end = star + i
	}
	return pat[:start], pat[start:star], pat[star+1 : end], pat[end:]
}

// scanPatterns lists the files matching the Cert pattern of each layout
// (all of whose "*" must lie in the same folder), the first layout that
// matches an entry winning. Each folder entry costs one stat, made on
// GOMAXPROCS goroutines: a folder of ten thousand is listed in tens of
// milliseconds. When keep says a pair an entry would be is known and
// untouched, it is taken as it is, known, without any stat; an entry that
// is a symlink is always stat'ed (its changes happen elsewhere).
func (f FolderSource) scanPatterns(layouts []FolderSource, keep func(fc FileCert, elem string) bool) ([]found, error) {
	parentRel, _, _, _ := patternParts(layouts[0].Cert)
	parent := filepath.Join(f.Dir, filepath.FromSlash(parentRel))
	entries, err := os.ReadDir(parent)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && parentRel != "" {
			return nil, nil // a fixed subfolder of the pattern not there (yet)
		}
		return nil, err
	}
	res := make([]found, len(entries))
	each(len(entries), func(i int) {
		n := entries[i].Name()
		if strings.HasPrefix(n, ".") {
			return
		}
		if keep != nil && entries[i].Type()&fs.ModeSymlink == 0 {
			for _, l := range layouts {
				if fc, ok := f.pairFor(l, parent, n); ok && keep(fc, filepath.Join(parent, n)) {
					res[i] = found{FileCert: fc, known: true}
					return
				}
			}
		}
		for _, l := range layouts {
			fc, ok := f.pairFor(l, parent, n)
			if !ok {
				continue
			}
			st, ok := statRegular(fc.CertFile)
			if !ok {
				// A subfolder without the file (certbot's README is not
				// even a folder), or a folder matching "*.crt": not a
				// pair.
				continue
			}
			res[i] = found{FileCert: fc, cert: st}
			return
		}
	})
	out := res[:0]
	for _, p := range res {
		if p.CertFile != "" {
			out = append(out, p)
		}
	}
	return out, nil
}

// pairFor is the pair the entry n of parent would be under layout l,
// without looking at the disk; ok is false when n does not fit l.
func (f FolderSource) pairFor(l FolderSource, parent, n string) (FileCert, bool) {
	_, before, after, rest := patternParts(l.Cert)
	if len(n) < len(before)+len(after) || !strings.HasPrefix(n, before) || !strings.HasSuffix(n, after) {
		return FileCert{}, false
	}
	name := n[len(before) : len(n)-len(after)]
	if name == "" {
		return FileCert{}, false
	}
	fc := FileCert{ID: f.id(name), CertFile: filepath.Join(parent, n) + filepath.FromSlash(rest)}
	if l.Key != "" {
		fc.KeyFile = filepath.Join(f.Dir, filepath.FromSlash(strings.ReplaceAll(filepath.ToSlash(l.Key), "{name}", name)))
	}
	return fc, true
}

// statRegular stats path through symlinks, ok when it is not a folder.
// ReadFile refuses what is not a regular file, saying why.
func statRegular(path string) (fileStat, bool) {
	fi, err := os.Stat(path)
	if err != nil || fi.IsDir() {
		return fileStat{}, false
	}
	return statOf(fi), true
}
