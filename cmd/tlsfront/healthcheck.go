package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// runHealthcheck asks a running tlsfront's admin listener whether it is
// healthy. It exists for container HEALTHCHECKs: the image has no shell or
// curl, only this binary.
func runHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tlsfront healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := adminFlag(fs, "check")
	path := fs.String("path", "/readyz", "endpoint to ask: /healthz (alive) or /readyz (serving and probes pass)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for an answer")
	if err := fs.Parse(args); err != nil {
		return &usageError{err}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+*admin+*path, nil)
	if err != nil {
		return &usageError{err}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s: %s", *path, resp.Status, body)
	}
	fmt.Fprintf(stdout, "%s", body)
	return nil
}

// adminFlag is the --admin flag of the commands that talk to a running
// tlsfront, defaulting to its TLSFRONT_ADMIN, else the default address.
func adminFlag(fs *flag.FlagSet, verb string) *string {
	def := os.Getenv(envName("admin"))
	if def == "" {
		def = defaultConfig().Admin
	}
	return fs.String("admin", def, "admin listener `address` of the tlsfront to "+verb+" ("+envName("admin")+")")
}
