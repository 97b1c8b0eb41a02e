package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	exit(err)
}

// exit is the one place the process ends.
func exit(err error) {
	if err == nil || errors.Is(err, errHelp) {
		os.Exit(0)
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(os.Stderr, "tlsfront:", err)
		os.Exit(2)
	}
	var se *silentError
	if !errors.As(err, &se) {
		fmt.Fprintln(os.Stderr, "tlsfront:", err)
	}
	os.Exit(1)
}

// usageError is a mistake in the command line or configuration.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// silentError fails the command after it has already said why.
type silentError struct{ err error }

func (e *silentError) Error() string { return e.err.Error() }
func (e *silentError) Unwrap() error { return e.err }

// subcommands maps a first argument to its command. Serving is the default.
var subcommands = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) error{
	"serve":        runServe,
	"version":      runVersion,
	"check-config": runCheckConfig,
	"check":        runCheck,       // check.go
	"healthcheck":  runHealthcheck, // healthcheck.go
	"reload":       runReload,      // reloadcmd.go
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		if cmd, ok := subcommands[args[0]]; ok {
			return cmd(ctx, args[1:], stdout, stderr)
		}
		if args[0] == "--version" || args[0] == "-version" {
			return runVersion(ctx, nil, stdout, stderr)
		}
	}
	return runServe(ctx, args, stdout, stderr)
}

func runVersion(_ context.Context, _ []string, stdout, _ io.Writer) error {
	fmt.Fprintln(stdout, "tlsfront", version)
	return nil
}
