package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
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
		d, conn, err = o.diagnoseServer(ctx, v)
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
		o.printText(stdout, d, conn, v)
	}
	if err := d.Err(); err != nil {
		return &silentError{err}
	}
	return nil
}

// diagnoseServer fetches the chain a server sends, without verifying it
// (the doctor does that, and says more than a handshake error would), and
// diagnoses it.
func (o *checkOptions) diagnoseServer(ctx context.Context, v certs.Verify) (*certs.Diagnosis, *tls.ConnectionState, error) {
	host, _, err := net.SplitHostPort(o.connect)
	if err != nil {
		return nil, nil, &usageError{fmt.Errorf("--connect %q: %w", o.connect, err)}
	}
	sni := ""
	if len(o.names) > 0 {
		sni = o.names[0]
	} else if net.ParseIP(host) == nil {
		sni = host
	}
	names := o.names
	if len(names) == 0 {
		names = []string{host}
	}
	dctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	dialer := &tls.Dialer{Config: &tls.Config{
		ServerName: sni,
		// The chain is verified by the doctor below, against the same
		// stores, so that a broken chain is described instead of refused.
		InsecureSkipVerify: true, //nolint:gosec // verified by certs.Diagnose
	}}
	c, err := dialer.DialContext(dctx, "tcp", o.connect)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", o.connect, err)
	}
	state := c.(*tls.Conn).ConnectionState()
	c.Close()
	if len(state.PeerCertificates) == 0 {
		return nil, nil, fmt.Errorf("connect to %s: the server sent no certificate", o.connect)
	}
	d := certs.Diagnose(ctx, certs.Input{Mode: certs.ModeServed, Certs: state.PeerCertificates, Names: names, CertFile: o.connect}, v)
	return d, &state, nil
}

func (o *checkOptions) printText(w io.Writer, d *certs.Diagnosis, conn *tls.ConnectionState, v certs.Verify) {
	if d.Mode == certs.ModeServed {
		fmt.Fprintf(w, "server %s", d.Source)
		if conn != nil {
			fmt.Fprintf(w, " (%s, SNI %q)", tls.VersionName(conn.Version), conn.ServerName)
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintf(w, "certificate %s", d.Source)
		if o.key != "" {
			fmt.Fprintf(w, ", key %s", o.key)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "checked at %s against %s", d.CheckedAt.UTC().Format(time.RFC3339), rootsLabel(v))
	if v.BundleDir != "" {
		fmt.Fprintf(w, ", bundle folder %s", v.BundleDir)
	}
	if v.FetchAIA {
		fmt.Fprint(w, ", AIA fetching on")
	} else {
		fmt.Fprint(w, ", AIA fetching off")
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w)
	for _, f := range d.Findings {
		fmt.Fprintf(w, "  %-5s  %s\n", f.Severity, f.Message)
	}
	if d.Mode == certs.ModeFile && len(o.names) == 0 {
		fmt.Fprintf(w, "  %-5s  %s\n", "info", "no --name given: the names clients ask for were not checked")
	}
	fmt.Fprintln(w)
	title, note := "chain tlsfront would serve (leaf first):", "not served"
	if d.Mode == certs.ModeServed {
		title, note = "chain the server sends (in its order):", "not sent"
	}
	printChain(w, title, d.Chain, d.Root, note)
	if len(d.ShouldServe) > 0 {
		fmt.Fprintln(w)
		printChain(w, "chain it should send:", d.ShouldServe, nil, "")
	}
	fmt.Fprintln(w)
	errs, warns := 0, 0
	for _, f := range d.Findings {
		switch f.Severity {
		case certs.SeverityError:
			errs++
		case certs.SeverityWarn:
			warns++
		}
	}
	switch {
	case errs > 0:
		fmt.Fprintf(w, "result: FAIL: %d problem(s) make clients fail, %d warning(s)\n", errs, warns)
	case warns > 0:
		fmt.Fprintf(w, "result: OK with %d warning(s): clients can connect\n", warns)
	default:
		fmt.Fprintln(w, "result: OK: clients can connect")
	}
}

func rootsLabel(v certs.Verify) string {
	if v.RootsName != "" {
		return v.RootsName
	}
	if v.Roots == nil {
		return "the system trust store"
	}
	return "the trust store"
}

func printChain(w io.Writer, title string, chain []certs.ChainCert, root *certs.ChainCert, rootNote string) {
	fmt.Fprintln(w, title)
	line := func(label string, c certs.ChainCert) {
		fmt.Fprintf(w, "  %-16s %s\n", label, c.Subject)
		fmt.Fprintf(w, "  %-16s issuer    %s\n", "", c.Issuer)
		left := fmt.Sprintf("%d days left", c.DaysLeft)
		if c.DaysLeft < 0 {
			left = "EXPIRED"
		}
		fmt.Fprintf(w, "  %-16s not after %s (%s)\n", "", c.NotAfter.Format("2006-01-02 15:04 MST"), left)
		if c.From != "" && !strings.HasPrefix(c.From, "the file") && !strings.HasPrefix(c.From, "the server") {
			fmt.Fprintf(w, "  %-16s from      %s\n", "", c.From)
		}
	}
	for i, c := range chain {
		line(fmt.Sprintf("%d %s", i, c.Role), c)
	}
	if root == nil {
		return
	}
	for _, c := range chain {
		if c.SHA256 == root.SHA256 {
			return // already listed: it is sent
		}
	}
	line("root", *root)
	fmt.Fprintf(w, "  %-16s (%s: clients must already trust it)\n", "", rootNote)
}
