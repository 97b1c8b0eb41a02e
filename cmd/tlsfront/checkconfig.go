package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
)

// runCheckConfig validates a configuration and, with --load, also loads and
// checks its certificates, without serving. Examples are tested with it.
func runCheckConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	load := false
	var rest []string
	for _, a := range args {
		if a == "--load" || a == "-load" {
			load = true
			continue
		}
		rest = append(rest, a)
	}
	cfg, err := parseConfig("tlsfront check-config", rest, stderr)
	if err != nil {
		return err
	}
	if load {
		if _, err := newApp(ctx, cfg, slog.New(slog.DiscardHandler), appOptions{}); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "configuration ok: %d listener(s), %d certificate(s)\n", len(cfg.Listeners), len(cfg.Certificates))
	return nil
}
