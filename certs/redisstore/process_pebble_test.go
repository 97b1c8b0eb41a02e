package redisstore_test

// A fleet member in another process: it shares nothing with the test's
// instances but Redis, so certmagic's in-process challenge map cannot
// help it answer.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/certs"
	"github.com/tlsfront/tlsfront/certs/redisstore"
	"github.com/tlsfront/tlsfront/internal/pebbletest"
	"github.com/tlsfront/tlsfront/internal/redistest"
	"github.com/tlsfront/tlsfront/internal/testnet"
)

const helperEnv = "REDISSTORE_TEST_HELPER"

// TestMain runs the test binary as a challenge-answering instance when
// helperEnv is set (see runHelper), and the tests otherwise.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		if err := runHelper(os.Getenv(helperEnv), os.Getenv(helperEnv+"_CA")); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

// runHelper is an instance that only answers HTTP-01: it starts an ACME
// manager on the Redis at redisURL for the CA at ca, serves its
// challenge handler on a loopback port, prints "addr <host:port>", and
// runs until its standard input closes.
func runHelper(redisURL, ca string) error {
	st, err := redisstore.Open(redisURL, redisstore.Options{Prefix: "fleet"})
	if err != nil {
		return err
	}
	defer st.Close()
	a, err := certs.NewACME(certs.ACMEOptions{CA: ca, StorageBackend: st})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	if err := a.Start(certs.ChallengeAddrs{HTTP: ln.Addr()}); err != nil {
		return err
	}
	defer a.Stop()
	srv := &http.Server{Handler: a.HTTPChallengeHandler(http.NotFoundHandler()), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	fmt.Printf("addr %s\n", ln.Addr())
	io.Copy(io.Discard, os.Stdin)
	return nil
}

// startHelper runs runHelper in a child process and returns its address.
// Closing its standard input at cleanup ends it; it is waited for.
func startHelper(t *testing.T, redisURL, ca string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+redisURL, helperEnv+"_CA="+ca)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errOut := &testnet.Buffer{}
	cmd.Stderr = errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-waited
		}
		if t.Failed() {
			t.Logf("helper stderr:\n%s", errOut.String())
		}
	})
	lines := make(chan string, 1)
	go func() {
		defer close(waited)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		cmd.Wait()
	}()
	select {
	case l := <-lines:
		addr, ok := strings.CutPrefix(l, "addr ")
		if !ok {
			t.Fatalf("helper said %q", l)
		}
		return addr
	case <-waited:
		t.Fatalf("helper exited:\n%s", errOut.String())
	case <-time.After(30 * time.Second):
		t.Fatal("helper did not start within 30s")
	}
	return ""
}

// TestChallengeAnsweredByAnotherProcess: an instance orders a
// certificate while the CA's HTTP-01 request can reach only another
// process, which knows the token from Redis alone.
func TestChallengeAnsweredByAnotherProcess(t *testing.T) {
	srv := redistest.Start(t)
	front := testnet.Listen(t)
	p := pebbletest.Start(t, pebbletest.Options{HTTPPort: port(front), TLSPort: 1})

	helper := startHelper(t, srv.URL, p.DirectoryURL)
	var forwarded atomic.Int64
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: helper})
	serveHTTP(t, front, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		forwarded.Add(1)
		rp.ServeHTTP(w, r)
	}))

	// Its own HTTP listener is one the CA never reaches.
	in := newFleet(t, srv.URL, p, redisstore.Options{Prefix: "fleet"}).start(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	const name = "elsewhere.tlsfront.test"
	if err := in.acme.Manage(ctx, []string{name}); err != nil {
		t.Fatal(err)
	}
	waitServed(t, in.tlsLn.Addr(), name, p.IssuedRoots(t))
	if forwarded.Load() == 0 {
		t.Fatal("the CA's validation never reached the other process")
	}
	t.Logf("validation requests answered by the other process: %d; events %q", forwarded.Load(), in.snapshot())
}
