package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
)

// runCheckConfig checks a configuration as start-up does: the file, the
// environment and the flags, then (unless --no-load) every certificate
// through the same pipeline the start uses, the chain doctor and the
// in-memory handshake included, and that every routed name is covered. It
// binds no port, so it can run beside a running tlsfront.
func runCheckConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	load := true
	var rest []string
	for _, a := range args {
		switch a {
		case "--no-load", "-no-load":
			load = false
		case "--load", "-load": // the default; kept for scripts that say it
		default:
			rest = append(rest, a)
		}
	}
	cfg, err := parseConfig("tlsfront check-config", rest, stderr)
	if err != nil {
		return err
	}
	what := "validated"
	if load {
		if _, err := newApp(ctx, cfg, slog.New(slog.DiscardHandler), appOptions{}); err != nil {
			return err
		}
		what = "certificates loaded and proven"
	}
	fmt.Fprintf(stdout, "configuration ok: %d listener(s), %d certificate(s); %s\n", len(cfg.Listeners), len(cfg.Certificates), what)
	return nil
}
