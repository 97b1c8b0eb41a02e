package main

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDemoRunsOnAFreshMachine is `make run` with --check: certificates,
// broker, tlsfront, and a message over mqtts and wss each way.
func TestDemoRunsOnAFreshMachine(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "tlsfront")
	if out, err := exec.Command("go", "build", "-o", bin, "../tlsfront").CombinedOutput(); err != nil {
		t.Fatalf("build tlsfront: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	state := t.TempDir()
	// Hold a port and ask for it everywhere: the demo must fall back to
	// free ports, as it does when 8883 is taken.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := strconv.Itoa(taken.Addr().(*net.TCPAddr).Port)
	err = run(ctx, []string{"--bin", bin, "--state", state, "--check", "--mqtts-port", port, "--wss-port", port, "--admin-port", port}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
	}
	for _, want := range []string{"checked end to end over mqtts and wss", "mosquitto_pub", filepath.Join(state, "ca.pem")} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, &stdout)
		}
	}
}
