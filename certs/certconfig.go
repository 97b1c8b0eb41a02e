package certs

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// CertConfig is one entry of the certificates section of the
// configuration: one certificate and its key, or, with Dir, a folder of
// pairs.
type CertConfig struct {
	// Name identifies the certificate in logs and status; default its
	// file name. For a folder it prefixes the IDs of its pairs
	// (name/subfolder).
	Name string `yaml:"name"`
	Cert string `yaml:"cert"`
	// Key defaults to Cert (a combined PEM).
	Key string `yaml:"key"`
	// Dir makes the entry a folder of pairs (FolderSource): without
	// cert, certbot's live/ or Kubernetes TLS secrets; with cert, a
	// pattern with one * ("*.crt") and key saying where each key is
	// ("{name}.key").
	Dir string `yaml:"dir"`
}

// Folder is the entry as a folder of pairs; ok is false for one
// certificate.
func (c CertConfig) Folder() (f FolderSource, ok bool) {
	return FolderSource{Dir: c.Dir, Cert: c.Cert, Key: c.Key, Prefix: c.Name}, c.Dir != ""
}

// ID names the certificate in logs, metrics and reload results.
func (c CertConfig) ID() string {
	if c.Name != "" {
		return c.Name
	}
	return filepath.Base(c.Cert)
}

// Validate checks the entry without reading a file. Its error starts with
// at, where the entry sits (e.g. "certificates[0]"), and names the key.
func (c CertConfig) Validate(at string) error {
	if f, ok := c.Folder(); ok {
		if err := f.Validate(); err != nil {
			return fmt.Errorf("%s: %s", at, strings.ReplaceAll(err.Error(), "\n", "; "))
		}
		return nil
	}
	if c.Cert == "" {
		return errors.New(at + ".cert: missing: path of the PEM certificate (leaf first), or dir: a folder of them")
	}
	return nil
}

// Sources sorts the section's entries into the files and folders
// ManagerOptions takes; a file's Entry is its place in the section.
func Sources(entries []CertConfig) (files []FileCert, folders []FolderSource) {
	for i, c := range entries {
		if f, ok := c.Folder(); ok {
			folders = append(folders, f)
			continue
		}
		files = append(files, FileCert{ID: c.ID(), CertFile: c.Cert, KeyFile: c.Key, Entry: fmt.Sprintf("certificates[%d]", i)})
	}
	return files, folders
}
