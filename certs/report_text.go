package certs

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// DiagnoseServer fetches the chain the server at addr sends, without
// verifying it (the doctor does that, and says more than a handshake error
// would), and diagnoses it for names (the first is sent as SNI; by
// default the host of addr). timeout bounds the connection.
func DiagnoseServer(ctx context.Context, addr string, names []string, timeout time.Duration, v Verify) (*Diagnosis, *tls.ConnectionState, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("%q: %w", addr, err)
	}
	sni := ""
	if len(names) > 0 {
		sni = names[0]
	} else if net.ParseIP(host) == nil {
		sni = host
	}
	if len(names) == 0 {
		names = []string{host}
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dialer := &tls.Dialer{Config: &tls.Config{
		ServerName: sni,
		// The chain is verified by the doctor below, against the same
		// stores, so that a broken chain is described instead of refused.
		InsecureSkipVerify: true, //nolint:gosec // verified by Diagnose
	}}
	c, err := dialer.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	state := c.(*tls.Conn).ConnectionState()
	c.Close()
	if len(state.PeerCertificates) == 0 {
		return nil, nil, fmt.Errorf("connect to %s: the server sent no certificate", addr)
	}
	d := Diagnose(ctx, Input{Mode: ModeServed, Certs: state.PeerCertificates, Names: names, CertFile: addr}, v)
	return d, &state, nil
}

// TextOptions say what a text report mentions besides the diagnosis.
type TextOptions struct {
	// KeyFile is the key checked with a file, if any.
	KeyFile string
	// NamesGiven says whether names were checked; a file diagnosed
	// without them says so.
	NamesGiven bool
	// Conn is the connection a served chain came over.
	Conn *tls.ConnectionState
	// Verify is what the chain was checked against.
	Verify Verify
}

// WriteText writes d as a person reads it: the findings, the chain served
// and the one that should be, and the verdict.
func (d *Diagnosis) WriteText(w io.Writer, o TextOptions) {
	conn, v := o.Conn, o.Verify
	if d.Mode == ModeServed {
		fmt.Fprintf(w, "server %s", d.Source)
		if conn != nil {
			fmt.Fprintf(w, " (%s, SNI %q)", tls.VersionName(conn.Version), conn.ServerName)
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintf(w, "certificate %s", d.Source)
		if o.KeyFile != "" {
			fmt.Fprintf(w, ", key %s", o.KeyFile)
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
	if d.Mode == ModeFile && !o.NamesGiven {
		fmt.Fprintf(w, "  %-5s  %s\n", "info", "no --name given: the names clients ask for were not checked")
	}
	fmt.Fprintln(w)
	title, note := "chain tlsfront would serve (leaf first):", "not served"
	if d.Mode == ModeServed {
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
		case SeverityError:
			errs++
		case SeverityWarn:
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

func rootsLabel(v Verify) string {
	if v.RootsName != "" {
		return v.RootsName
	}
	if v.Roots == nil {
		return "the system trust store"
	}
	return "the trust store"
}

func printChain(w io.Writer, title string, chain []ChainCert, root *ChainCert, rootNote string) {
	fmt.Fprintln(w, title)
	line := func(label string, c ChainCert) {
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
