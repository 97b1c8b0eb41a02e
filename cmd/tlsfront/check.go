package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/tlsfront/tlsfront/certs"
)

// checkOptions are the flags of tlsfront check.
type checkOptions struct {
	cert, key string
	names     []string
	connect   string
	noFetch   bool
	cacheDir  string
	json      bool
	timeout   time.Duration
	trust     certs.TrustOptions
}

func (o *checkOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.cert, "cert", "", "certificate `file` to diagnose (PEM or DER, any order)")
	fs.StringVar(&o.key, "key", "", "private key `file` for --cert (default: a key inside --cert, else the key is not checked)")
	fs.Func("name", "server `name` clients ask for; must be covered (repeatable; with --connect the first is sent as SNI)", func(s string) error {
		o.names = append(o.names, s)
		return nil
	})
	fs.StringVar(&o.connect, "connect", "", "diagnose what the server at `host:port` serves instead of a file")
	fs.BoolVar(&o.noFetch, "no-fetch", false, "do not fetch missing intermediates from their AIA URLs (same as --no-fetch-aia)")
	fs.StringVar(&o.cacheDir, "cache-dir", "", "`folder` of fetched intermediates to read and fill, e.g. <state_dir>/intermediates (default: none)")
	fs.BoolVar(&o.json, "json", false, "print the diagnosis as JSON")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "bound for --connect and each AIA fetch")
	bindTrustFlags(fs, &o.trust)
}

// runCheck diagnoses a certificate file or a live server: the chain
// clients get, every repair tlsfront makes and every problem. It fails
// when clients trusting the main store could not connect.
func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tlsfront check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: tlsfront check --cert FILE [--key FILE] [--name HOST]... [flags]
       tlsfront check --connect HOST:PORT [--name SNI]... [flags]

Diagnoses the certificate chain clients get: orders it, completes missing
intermediates (bundle folder, then AIA), drops the root and anything off
the path, and reports every repair and every problem. Exits 1 when clients
would fail.

`)
		fs.PrintDefaults()
	}
	o := checkOptions{trust: certs.DefaultTrust()}
	o.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return &usageError{err}
	}
	if fs.NArg() > 0 {
		return &usageError{fmt.Errorf("check: unexpected argument %q (flags start with --)", fs.Arg(0))}
	}
	if (o.cert == "") == (o.connect == "") {
		return &usageError{errors.New("check: give --cert FILE or --connect HOST:PORT (one of them)")}
	}
	if o.connect != "" && o.key != "" {
		return &usageError{errors.New("check: --key goes with --cert, not --connect")}
	}
	if err := o.trust.Validate(); err != nil {
		return &usageError{fmt.Errorf("check: %w", err)}
	}
	o.trust.CacheDir = o.cacheDir
	v, err := certs.LoadTrust(o.trust)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	v.FetchTimeout = o.timeout
	if o.noFetch {
		v.FetchAIA = false
	}

	var d *certs.Diagnosis
	var conn *tls.ConnectionState
	if o.connect != "" {
		d, conn, err = certs.DiagnoseServer(ctx, o.connect, o.names, o.timeout, v)
	} else {
		d, err = certs.Examine(ctx, certs.Source{CertFile: o.cert, KeyFile: o.key, Names: o.names}, v)
	}
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(d); err != nil {
			return fmt.Errorf("check: write JSON: %w", err)
		}
	} else {
		d.WriteText(stdout, certs.TextOptions{KeyFile: o.key, NamesGiven: len(o.names) > 0, Conn: conn, Verify: v})
	}
	if err := d.Err(); err != nil {
		return &silentError{err}
	}
	return nil
}
