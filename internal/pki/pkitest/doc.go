// Package pkitest builds certificate hierarchies for tests: a root, an
// intermediate and leaves, written as PEM files under t.TempDir.
package pkitest
