package certs

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// FetchFunc gets the bytes at an AIA caIssuers URL. It must honour ctx and
// should cap what it reads.
type FetchFunc func(ctx context.Context, url string) ([]byte, error)

// HTTPFetch is the default FetchFunc: one GET of an http or https URL,
// following at most three redirects, reading at most 1 MiB.
func HTTPFetch(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return nil, fmt.Errorf("scheme %q is not http or https", req.URL.Scheme)
	}
	client := &http.Client{
		// No keep-alive: one fetch per missing issuer, rarely repeated, and
		// nothing owns a pool of idle connections.
		Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, DisableKeepAlives: true},
		CheckRedirect: func(_ *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("more than 3 redirects")
			}
			return nil
		},
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get: HTTP status %s", resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBundleBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if len(data) > maxBundleBytes {
		return nil, fmt.Errorf("response is larger than %d bytes", maxBundleBytes)
	}
	return data, nil
}

// aiaResult is the outcome of resolving one caIssuers URL.
type aiaResult struct {
	certs []*x509.Certificate
	from  string // "AIA URL" or "AIA cache file"
	err   error
}

// aiaResolver fetches caIssuers URLs for one diagnosis, each at most once,
// through the disk cache. It is not safe for concurrent use; separate
// diagnoses use separate resolvers and meet only in the cache folder,
// which is written by rename.
type aiaResolver struct {
	v       Verify
	now     time.Time
	results map[string]*aiaResult
	// cacheErr is the first failure to write the cache, reported once.
	cacheErr error
}

func newAIAResolver(v Verify, now time.Time) *aiaResolver {
	return &aiaResolver{v: v, now: now, results: map[string]*aiaResult{}}
}

// cachePath is where the certificates fetched from url are kept: keyed by
// a hash so that any URL makes a safe file name.
func cachePath(dir, url string) string {
	sum := sha256.Sum256([]byte(url))
	return filepath.Join(dir, hex.EncodeToString(sum[:])+".pem")
}

func (r *aiaResolver) resolve(ctx context.Context, url string) *aiaResult {
	if res, ok := r.results[url]; ok {
		return res
	}
	res := r.unsyncedResolve(ctx, url)
	r.results[url] = res
	return res
}

func (r *aiaResolver) unsyncedResolve(ctx context.Context, url string) *aiaResult {
	if r.v.CacheDir != "" {
		p := cachePath(r.v.CacheDir, url)
		if data, err := ReadFile(p, MaxFileBytes); err == nil {
			// A cached issuer that has expired is refetched: the CA has
			// probably published its successor at the same URL.
			if cs, err := parseBundle(data); err == nil && anyValidAt(cs, r.now) {
				return &aiaResult{certs: cs, from: "AIA cache " + p}
			}
		}
	}
	if !r.v.FetchAIA {
		return &aiaResult{err: errors.New("not in the AIA cache, and fetching is off")}
	}
	fetch := r.v.Fetch
	if fetch == nil {
		fetch = HTTPFetch
	}
	timeout := r.v.FetchTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	fctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	data, err := fetch(fctx, url)
	if err != nil {
		return &aiaResult{err: err}
	}
	if len(data) > maxBundleBytes {
		return &aiaResult{err: fmt.Errorf("response is larger than %d bytes", maxBundleBytes)}
	}
	cs, err := parseBundle(data)
	if err != nil {
		return &aiaResult{err: fmt.Errorf("parse response: %w", err)}
	}
	if r.v.CacheDir != "" {
		if err := writeCache(r.v.CacheDir, url, cs, r.now); err != nil && r.cacheErr == nil {
			r.cacheErr = err
		}
	}
	return &aiaResult{certs: cs, from: "AIA URL"}
}

func anyValidAt(cs []*x509.Certificate, t time.Time) bool {
	for _, c := range cs {
		if !t.Before(c.NotBefore) && !t.After(c.NotAfter) {
			return true
		}
	}
	return false
}

// writeCache stores cs as PEM, written to a temporary file and renamed so
// that a concurrent reader sees the old file or the new one.
func writeCache(dir, url string, cs []*x509.Certificate, now time.Time) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create AIA cache folder: %w", err)
	}
	f, err := os.CreateTemp(dir, ".fetch-*")
	if err != nil {
		return fmt.Errorf("write AIA cache: %w", err)
	}
	defer os.Remove(f.Name()) // no-op after the rename
	fmt.Fprintf(f, "# fetched by tlsfront from %s at %s\n", url, now.UTC().Format(time.RFC3339))
	for _, c := range cs {
		if err := pem.Encode(f, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}); err != nil {
			f.Close()
			return fmt.Errorf("write AIA cache: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write AIA cache: %w", err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return fmt.Errorf("write AIA cache: %w", err)
	}
	if err := os.Rename(f.Name(), cachePath(dir, url)); err != nil {
		return fmt.Errorf("write AIA cache: %w", err)
	}
	return nil
}

// PKCS#7 (RFC 2315) as CAs publish intermediates: a SignedData with
// certificates and no signers. Only DER is read; BER with indefinite
// lengths, which a few CAs still serve, is reported as unparseable.
var oidSignedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}

type pkcs7ContentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"explicit,optional,tag:0"`
}

type pkcs7SignedData struct {
	Version          int
	DigestAlgorithms asn1.RawValue
	ContentInfo      asn1.RawValue
	Certificates     asn1.RawValue `asn1:"optional,tag:0"`
	CRLs             asn1.RawValue `asn1:"optional,tag:1"`
	SignerInfos      asn1.RawValue
}

func parsePKCS7(der []byte) ([]*x509.Certificate, error) {
	var ci pkcs7ContentInfo
	rest, err := asn1.Unmarshal(der, &ci)
	if err != nil {
		return nil, fmt.Errorf("parse PKCS#7: %w", err)
	}
	if len(rest) > 0 {
		return nil, errors.New("parse PKCS#7: trailing data")
	}
	if !ci.ContentType.Equal(oidSignedData) {
		return nil, fmt.Errorf("parse PKCS#7: content type %v is not signedData", ci.ContentType)
	}
	var sd pkcs7SignedData
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil {
		return nil, fmt.Errorf("parse PKCS#7 signedData: %w", err)
	}
	if len(sd.Certificates.Bytes) == 0 {
		return nil, errors.New("parse PKCS#7: no certificates")
	}
	cs, err := x509.ParseCertificates(sd.Certificates.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse PKCS#7 certificates: %w", err)
	}
	return cs, nil
}
