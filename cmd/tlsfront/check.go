package main

import (
	"context"
	"errors"
	"io"
)

// runCheck diagnoses a certificate file or a live server.
func runCheck(_ context.Context, _ []string, _, _ io.Writer) error {
	return errors.New("check: not implemented yet")
}
