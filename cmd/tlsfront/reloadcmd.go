package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/tlsfront/tlsfront/certs"
	"github.com/tlsfront/tlsfront/internal/adminguard"
)

// runReload asks a running tlsfront's admin listener to reload its
// certificates and prints the result of each. It is what renewal hooks
// (certbot --deploy-hook, acme.sh --reloadcmd, win-acme, docker compose
// exec) run: the image has no curl, only this binary.
func runReload(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tlsfront reload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := adminFlag(fs, "reload")
	timeout := fs.Duration("timeout", 60*time.Second, "how long to wait for the reload")
	tokenFile := fs.String("admin-token-file", os.Getenv(envName("admin-token-file")), "`file` with the admin listener's bearer token, if it has one ("+envName("admin-token-file")+")")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: tlsfront reload [--admin ADDR]\n\nAsks a running tlsfront to reload its certificates and CA bundles, prints\nthe result of each, and exits 1 if any was refused (the previous one keeps\nserving).\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return &usageError{err}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+*admin+"/reload", nil)
	if err != nil {
		return &usageError{err}
	}
	// A JSON body type: the admin listener refuses the simple requests a
	// web page could send cross-site.
	req.Header.Set("Content-Type", "application/json")
	if *tokenFile != "" {
		tok, err := adminguard.ReadTokenFile(*tokenFile)
		if err != nil {
			return &usageError{fmt.Errorf("reload: %w", err)}
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("reload: %w (is tlsfront running with its admin listener on %s? set --admin)", err, *admin)
	}
	defer resp.Body.Close()
	var out certs.ReloadReport
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err := json.Unmarshal(body, &out); err != nil {
		return fmt.Errorf("reload: %s answered %s: %s", *admin, resp.Status, body)
	}
	out.WriteText(stdout)
	if !out.OK {
		return &silentError{errors.New("reload refused")}
	}
	return nil
}
