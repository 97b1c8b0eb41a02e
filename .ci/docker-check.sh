#!/usr/bin/env bash
# docker-check.sh: what CI can check of the container image without a
# Docker engine (our machines have only the client).
#
#   (a) lint the Dockerfile with dockerfilelint (rules in .dockerfilelintrc),
#       and check the contract the docs rely on: pinned tags, the builder's
#       Go matches go.mod, EXPOSE, VOLUME, HEALTHCHECK, ENTRYPOINT;
#   (b) build the binary exactly as the Dockerfile's build stage does (same
#       command, same ENV, from a copy of the build context with
#       .dockerignore applied) and check that it is static;
#   (c) check the image runs as non-root: the final stage's base and USER,
#       then run the built binary as uid/gid 65532 the way the image does
#       (configured by TLSFRONT_* variables only, a state folder owned by
#       65532), push TLS traffic through both listeners, and ask its admin
#       listener with `tlsfront healthcheck`, as the HEALTHCHECK does.
#
# Runs as root on a fresh Debian machine with Go and npm. Prints what it
# checked; exits non-zero on the first failure. Every wait is bounded.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
DOCKERFILE=$ROOT/Dockerfile
RUN_UID=65532
# The dockerfilelint release this script was written against; a new one
# may bring new rules, so it is bumped on purpose, not by chance.
DOCKERFILELINT_VERSION=1.8.0

WORK=$(mktemp -d /tmp/tlsfront-docker-check.XXXXXX)
PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
ok() { printf '   ok: %s\n' "$*"; }
fail() {
	printf 'docker-check: FAIL: %s\n' "$*" >&2
	exit 1
}

# dockerfilelint lints its argument as Dockerfile *text* when no such file
# exists, which would pass; make sure we lint the real file.
[[ -f $DOCKERFILE ]] || fail "no Dockerfile at $DOCKERFILE"

# stage_lines N prints the instructions of build stage N (0-based), with
# comments dropped and continuation lines joined.
joined=$WORK/Dockerfile.joined
sed -e '/^[[:space:]]*#/d' "$DOCKERFILE" | sed -e ':a' -e '/\\$/N; s/\\\n[[:space:]]*/ /; ta' | sed -e '/^[[:space:]]*$/d' >"$joined"
nstages=$(grep -ciE '^FROM[[:space:]]' "$joined")
stage_lines() {
	awk -v want="$1" 'toupper($1) == "FROM" { n++ } n - 1 == want' "$joined"
}

# ---------------------------------------------------------------------------
step "(a) lint the Dockerfile"

if command -v dockerfilelint >/dev/null 2>&1; then
	DFL=$(command -v dockerfilelint)
else
	npm install --prefix "$WORK/npm" --no-audit --no-fund --loglevel=error "dockerfilelint@$DOCKERFILELINT_VERSION" >"$WORK/npm.log" 2>&1 ||
		{ cat "$WORK/npm.log" >&2; fail "npm install dockerfilelint@$DOCKERFILELINT_VERSION"; }
	DFL=$WORK/npm/node_modules/.bin/dockerfilelint
fi
if ! "$DFL" -c "$ROOT" "$DOCKERFILE" >"$WORK/lint.out" 2>&1; then
	cat "$WORK/lint.out" >&2
	fail "dockerfilelint found issues (rules we deliberately break are turned off, with the reason, in .dockerfilelintrc)"
fi
ok "dockerfilelint $("$DFL" --version 2>/dev/null || echo "$DOCKERFILELINT_VERSION"): no issues (config .dockerfilelintrc)"

(( nstages >= 2 )) || fail "expected a multi-stage Dockerfile (builder + final), found $nstages stage(s)"
ok "$nstages stages"

# Every FROM names an explicit tag (or digest), never latest.
while read -r line; do
	image=$(awk '{ for (i = 2; i <= NF; i++) if ($i !~ /^--/) { print $i; exit } }' <<<"$line")
	ref=${image%%@*}
	tag=${ref##*/}
	[[ $tag == *:* ]] || fail "FROM $image has no tag: pin one (golang:1.26.8-bookworm, static-debian12:nonroot)"
	[[ ${tag##*:} != latest ]] || fail "FROM $image uses :latest: pin a version"
	ok "FROM $image is pinned"
done < <(grep -iE '^FROM[[:space:]]' "$joined")

# The builder's Go is the one go.mod asks for.
builder_image=$(stage_lines 0 | head -1 | awk '{ for (i = 2; i <= NF; i++) if ($i !~ /^--/) { print $i; exit } }')
[[ $builder_image =~ ^(docker\.io/)?(library/)?golang:([0-9]+\.[0-9]+)(\.[0-9]+)?(-[a-z0-9]+)?(@sha256:[0-9a-f]+)?$ ]] ||
	fail "builder $builder_image is not an official golang:X.Y.Z image"
builder_go=${BASH_REMATCH[3]}${BASH_REMATCH[4]}
mod_go=$(awk '$1 == "go" { print $2; exit }' go.mod)
mod_toolchain=$(awk '$1 == "toolchain" { sub(/^go/, "", $2); print $2; exit }' go.mod)
# go.mod's go line is a minimum (1.26 or 1.26.0): the builder must speak the
# same language version (1.26) and be at least that release.
[[ ${builder_go%.*} == "$(cut -d. -f1,2 <<<"$mod_go")" ]] ||
	fail "builder Go $builder_go is not the language version go.mod asks for (go $mod_go)"
[[ $(printf '%s\n' "$mod_go" "$builder_go" | sort -V | head -1) == "$mod_go" ]] ||
	fail "builder Go $builder_go is older than go.mod's go $mod_go"
if [[ -n $mod_toolchain && $builder_go != "$mod_toolchain" ]]; then
	fail "builder Go $builder_go does not match go.mod's toolchain go$mod_toolchain"
fi
ok "builder Go $builder_go matches go.mod (go $mod_go${mod_toolchain:+, toolchain go$mod_toolchain})"

final=$WORK/final.stage
stage_lines $((nstages - 1)) >"$final"
grep -qE '^ENTRYPOINT \["/tlsfront"\]$' "$final" || fail 'final stage: ENTRYPOINT must be ["/tlsfront"] (exec form: there is no shell)'
ok 'ENTRYPOINT ["/tlsfront"]'
grep -qE '^HEALTHCHECK .*CMD \["/tlsfront", "healthcheck"' "$final" ||
	fail 'final stage: HEALTHCHECK must run CMD ["/tlsfront", "healthcheck", ...] in exec form (no shell, no curl in the image)'
ok "HEALTHCHECK runs /tlsfront healthcheck (exec form)"
expose=$(awk 'toupper($1) == "EXPOSE" { $1 = ""; print }' "$final" | xargs -n1 | sort -u | xargs)
[[ $expose == "8084 8883" ]] || fail "final stage exposes '$expose'; want only 8883 and 8084 (the admin port stays on loopback)"
ok "EXPOSE $expose (admin 9901 not exposed)"
grep -qE '^VOLUME \[?"?/var/lib/tlsfront"?\]?$' "$final" || fail "final stage: VOLUME /var/lib/tlsfront missing"
grep -qE '^ENV .*TLSFRONT_STATE_DIR=/var/lib/tlsfront' "$final" || fail "final stage: ENV TLSFRONT_STATE_DIR=/var/lib/tlsfront missing"
ok "VOLUME /var/lib/tlsfront with TLSFRONT_STATE_DIR set"

# ---------------------------------------------------------------------------
step "(b) build the binary as the Dockerfile does, check it is static"

build_stage=$WORK/build.stage
stage_lines 0 >"$build_stage"
build_run=$(grep -E '^RUN .*go build ' "$build_stage" || true)
[[ $(grep -cE '^RUN .*go build ' "$build_stage" || true) == 1 ]] || fail "expected exactly one RUN ... go build line in the build stage"
build_cmd=${build_run#RUN }
for want in 'CGO_ENABLED=0' '-trimpath' '-s -w -X main.version=${VERSION}' '-o /out/tlsfront' './cmd/tlsfront'; do
	[[ $build_cmd == *"$want"* ]] || fail "the Dockerfile's go build line lacks $want: $build_cmd"
done
ok "Dockerfile builds with: $build_cmd"

# The build stage's ENV, applied here too.
build_env=()
while read -r kv; do
	build_env+=("$kv")
done < <(awk 'toupper($1) == "ENV" { for (i = 2; i <= NF; i++) print $i }' "$build_stage")
for want in CGO_ENABLED=0 GOTOOLCHAIN=local; do
	[[ " ${build_env[*]} " == *" $want "* ]] || fail "build stage ENV lacks $want"
done
ok "build stage ENV: ${build_env[*]}"

local_go=$(go env GOVERSION)
if [[ $local_go != "go$builder_go" ]]; then
	echo "   note: this machine has $local_go, the image builds with go$builder_go; the binary checked here is built with $local_go"
fi

# The build context as docker would send it: a copy with .dockerignore
# applied. Docker matches patterns from the context root and `**` across
# folders; bash's globstar does the same for the patterns we use. `!`
# exceptions are not emulated, so they are refused rather than misread.
ctx=$WORK/context
mkdir -p "$ctx"
tar -C "$ROOT" --exclude=./.git -cf - . | tar -C "$ctx" -xf -
(
	cd "$ctx"
	shopt -s globstar dotglob nullglob
	while IFS= read -r pat || [[ -n $pat ]]; do
		pat=${pat%%[[:space:]]}
		[[ -z $pat || $pat == \#* ]] && continue
		[[ $pat == !* ]] && fail ".dockerignore exception '$pat' is not emulated by docker-check.sh; extend the script"
		pat=${pat#/}
		# shellcheck disable=SC2086 # the pattern is meant to glob
		rm -rf -- $pat
	done <"$ROOT/.dockerignore"
)
for need in go.mod go.sum cmd/tlsfront/main.go; do
	[[ -e $ctx/$need ]] || fail ".dockerignore drops $need, which the build needs"
done
leaked=$(cd "$ctx" && find . \( -name '*.pem' -o -name '*.key' -o -name '.git' -o -name '.env' \) -print | head -5)
[[ -z $leaked ]] || fail ".dockerignore lets key material or .git into the build context: $leaked"
elves=$(cd "$ctx" && find . -type f -size +1k -exec sh -c 'head -c4 "$1" | grep -q "ELF" && echo "$1"' sh {} \; | head -5)
[[ -z $elves ]] || fail ".dockerignore lets compiled binaries into the build context (slow builds, stale layers): $(xargs <<<"$elves")"
ok "build context after .dockerignore: $(find "$ctx" -type f | wc -l) files, $(du -sh "$ctx" | cut -f1); no .git, *.pem, *.key, .env, binaries"

version=docker-check-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
out=$WORK/out
mkdir -p "$out"
(
	cd "$ctx"
	export "${build_env[@]}"
	go mod download
	go mod verify >/dev/null
	# The Dockerfile's own line, with /out moved into our work folder.
	# TARGETOS and TARGETARCH are empty outside buildx: a native build.
	cmd=${build_cmd//\/out\//$out/}
	VERSION=$version TARGETOS='' TARGETARCH='' bash -c "$cmd"
) || fail "go build as in the Dockerfile failed"
BIN=$out/tlsfront
[[ -x $BIN ]] || fail "build produced no $BIN"
ok "built $BIN ($(du -h "$BIN" | cut -f1)) with VERSION=$version"

buildinfo=$(go version -m "$BIN")
grep -qE '^[[:space:]]+build[[:space:]]+CGO_ENABLED=0$' <<<"$buildinfo" || fail "go version -m: not built with CGO_ENABLED=0"
grep -qE '^[[:space:]]+build[[:space:]]+-trimpath=true$' <<<"$buildinfo" || fail "go version -m: not built with -trimpath"
# With -trimpath Go leaves -ldflags out of the build info; that -X
# main.version took effect is checked below, by `tlsfront version`.
ok "go version -m: CGO_ENABLED=0, -trimpath=true"

# A tiny Go program (standard library only) does what would otherwise need
# binutils, openssl or python on the CI machine: inspect the ELF, make test
# certificates, run a backend, read tlsfront's JSON log, push TLS traffic.
helper_dir=$WORK/helper
mkdir -p "$helper_dir"
cat >"$helper_dir/go.mod" <<'EOF'
module dockercheck

go 1.26
EOF
cat >"$helper_dir/main.go" <<'EOF'
// Command dockercheck helps .ci/docker-check.sh. Standard library only.
package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"debug/elf"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: dockercheck elf|certs|backend|wait|tcp|https ...")
		os.Exit(2)
	}
	var err error
	switch args := os.Args[2:]; os.Args[1] {
	case "elf":
		err = checkStatic(args[0])
	case "certs":
		err = makeCerts(args[0])
	case "backend":
		err = backend()
	case "wait":
		err = waitStarted(args[0], args[1])
	case "tcp":
		err = roundTripTCP(args[0], args[1])
	case "https":
		err = roundTripHTTPS(args[0], args[1])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dockercheck:", err)
		os.Exit(1)
	}
}

// checkStatic fails unless path is an ELF executable that needs no dynamic
// loader and no shared library: what runs on distroless/static.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s has a PT_INTERP program header: it needs a dynamic loader", path)
		}
		if p.Type == elf.PT_DYNAMIC {
			return fmt.Errorf("%s has a PT_DYNAMIC segment: it is dynamically linked", path)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return err
	}
	if len(libs) > 0 {
		return fmt.Errorf("%s needs shared libraries %v", path, libs)
	}
	fmt.Printf("%s %s %s, no PT_INTERP, no PT_DYNAMIC, no DT_NEEDED\n", f.Class, f.Machine, f.Type)
	return nil
}

// makeCerts writes a test CA (ca.pem) and a leaf for localhost and
// 127.0.0.1 (cert.pem, key.pem) into dir.
func makeCerts(dir string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "docker-check test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(90 * 24 * time.Hour), // past the expiry warnings
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	write := func(name, typ string, der []byte, mode os.FileMode) error {
		return os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
	}
	if err := write("ca.pem", "CERTIFICATE", caDER, 0o644); err != nil {
		return err
	}
	if err := write("cert.pem", "CERTIFICATE", leafDER, 0o644); err != nil {
		return err
	}
	return write("key.pem", "PRIVATE KEY", keyDER, 0o600)
}

// backend serves a TCP echo and an HTTP "hello" on loopback, prints their
// addresses as shell assignments, and runs until stdin closes or SIGTERM,
// two minutes at most.
func backend() error {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	web, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				io.Copy(c, c)
			}()
		}
	}()
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "hello from backend\n")
	})}
	go srv.Serve(web)
	fmt.Printf("ECHO=%s\nWEB=%s\n", echo.Addr(), web.Addr())
	os.Stdout.Sync()
	done := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
	}
	echo.Close()
	return srv.Close()
}

// waitStarted polls tlsfront's JSON log until it says it started (20 s at
// most, less if pid exits) and prints the admin and listener addresses as
// shell assignments.
func waitStarted(logFile, pidStr string) error {
	pid, err := strconv.Atoi(pidStr)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile(logFile)
		var admin, tcp, web string
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) != nil {
				continue
			}
			switch rec["msg"] {
			case "listening":
				addr, _ := rec["addr"].(string)
				switch rec["kind"] {
				case "tcp":
					tcp = addr
				case "http":
					web = addr
				}
			case "tlsfront started":
				admin, _ = rec["admin"].(string)
			}
		}
		if admin != "" && tcp != "" && web != "" {
			fmt.Printf("ADMIN=%s\nTLS_TCP=%s\nTLS_WEB=%s\n", admin, tcp, web)
			return nil
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("tlsfront (pid %d) exited before it started serving", pid)
		}
		time.Sleep(50 * time.Millisecond) // polling a log file: nothing to wait on
	}
	return errors.New("tlsfront did not log that it started (admin, a tcp and an http listener) within 20s")
}

func clientTLS(caFile string) (*tls.Config, error) {
	pemData, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("%s: no certificate", caFile)
	}
	return &tls.Config{RootCAs: pool, ServerName: "localhost"}, nil
}

// roundTripTCP sends an MQTT CONNECT through a tcp listener to the echo
// backend and checks it comes back.
func roundTripTCP(addr, caFile string) error {
	cfg, err := clientTLS(caFile)
	if err != nil {
		return err
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return fmt.Errorf("tls dial %s: %w", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// A real MQTT 3.1.1 CONNECT (client ID "docker-check"): an mqtt
	// listener reads the CONNECT before it dials the backend, and closes
	// anything else. The echo backend sends it back unchanged.
	id := "docker-check"
	vh := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, byte(len(id))}
	msg := append([]byte{0x10, byte(len(vh) + len(id))}, append(vh, id...)...)
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo: got %q, want %q", got, msg)
	}
	st := c.ConnectionState()
	fmt.Printf("%s %s, MQTT CONNECT (%d bytes) forwarded and echoed\n", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), len(got))
	return nil
}

// roundTripHTTPS asks the HTTP backend through an http listener.
func roundTripHTTPS(addr, caFile string) error {
	cfg, err := clientTLS(caFile)
	if err != nil {
		return err
	}
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	resp, err := cl.Get("https://" + addr + "/")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("hello from backend")) {
		return fmt.Errorf("GET https://%s/: %s %q", addr, resp.Status, body)
	}
	fmt.Printf("%s %s\n", resp.Proto, resp.Status)
	return nil
}
EOF
HELPER=$WORK/dockercheck
(cd "$helper_dir" && GOFLAGS= GOTOOLCHAIN=local CGO_ENABLED=0 go build -o "$HELPER" .) || fail "build the check helper"

static=$("$HELPER" elf "$BIN") || fail "the binary is not static"
ok "debug/elf: $static"
if command -v ldd >/dev/null 2>&1; then
	lddout=$(ldd "$BIN" 2>&1 || true)
	[[ $lddout == *"not a dynamic executable"* || $lddout == *"statically linked"* ]] || fail "ldd: $lddout"
	ok "ldd: $(xargs <<<"$lddout")"
fi

# ---------------------------------------------------------------------------
step "(c) the image runs as non-root"

final_from=$(head -1 "$final" | awk '{ for (i = 2; i <= NF; i++) if ($i !~ /^--/) { print $i; exit } }')
[[ $final_from =~ ^gcr\.io/distroless/static-debian[0-9]+:nonroot(@sha256:[0-9a-f]{64})?$ ]] ||
	fail "final stage FROM $final_from: want gcr.io/distroless/static-debian12:nonroot (optionally @sha256:...)"
ok "final stage FROM $final_from (uid/gid 65532, no shell)"
user=$(awk 'toupper($1) == "USER" { u = $2 } END { print u }' "$final")
case $user in
65532 | 65532:65532 | nonroot | nonroot:nonroot) ok "final stage USER $user" ;;
"") fail "final stage sets no USER: set USER 65532:65532 (numeric, so Kubernetes runAsNonRoot can verify it)" ;;
*) fail "final stage USER $user: want 65532:65532" ;;
esac
[[ $user == 65532* ]] || echo "   note: USER $user is not numeric; Kubernetes runAsNonRoot cannot verify it"
grep -qE '^COPY --from=[^ ]+ --chown=65532:65532 [^ ]+ /var/lib/tlsfront$' "$final" ||
	fail "final stage: /var/lib/tlsfront must be copied in owned by 65532:65532, or a fresh volume on it is not writable"
ok "/var/lib/tlsfront is created owned by 65532:65532"

command -v setpriv >/dev/null 2>&1 || fail "setpriv (util-linux) is needed to run as uid $RUN_UID"
[[ $(id -u) == 0 ]] || fail "run as root: switching to uid $RUN_UID needs it"
as_nonroot() { setpriv --reuid="$RUN_UID" --regid="$RUN_UID" --clear-groups "$@"; }

# Lay the files out as in the image: the binary readable by anyone, the
# state folder owned by 65532 (mode 0700), certificates readable by it.
chmod 0755 "$WORK" "$out"
run=$WORK/run
mkdir -p "$run/state" "$run/certs"
cp "$BIN" "$run/tlsfront"
chmod 0755 "$run" "$run/tlsfront"
"$HELPER" certs "$run/certs" || fail "make test certificates"
chown -R "$RUN_UID:$RUN_UID" "$run/state" "$run/certs"
chmod 0700 "$run/state"
chmod 0750 "$run/certs"

got=$(as_nonroot "$run/tlsfront" version) || fail "tlsfront version as uid $RUN_UID"
[[ $got == "tlsfront $version" ]] || fail "tlsfront version printed '$got', want 'tlsfront $version'"
ok "as uid $RUN_UID: '$got'"

coproc BACKEND { exec "$HELPER" backend; }
PIDS+=("$BACKEND_PID")
read -r -t 10 echo_line <&"${BACKEND[0]}" || fail "test backend did not start"
read -r -t 10 web_line <&"${BACKEND[0]}" || fail "test backend did not start"
ECHO=${echo_line#ECHO=}
WEB=${web_line#WEB=}
ok "test backends: tcp echo $ECHO, http $WEB"

# Configured only by environment variables, as the image is; nothing else
# from this shell leaks in (env -i).
log=$WORK/tlsfront.log
env -i PATH=/usr/bin:/bin \
	TLSFRONT_STATE_DIR="$run/state" \
	TLSFRONT_LISTEN=127.0.0.1:0 TLSFRONT_BACKEND="$ECHO" \
	TLSFRONT_WS_LISTEN=127.0.0.1:0 TLSFRONT_WS_BACKEND="$WEB" \
	TLSFRONT_CERT="$run/certs/cert.pem" TLSFRONT_KEY="$run/certs/key.pem" \
	TLSFRONT_TRUST_CA="$run/certs/ca.pem" \
	TLSFRONT_ADMIN=127.0.0.1:0 TLSFRONT_LOG_FORMAT=json TLSFRONT_SHUTDOWN_GRACE=2s \
	setpriv --reuid="$RUN_UID" --regid="$RUN_UID" --clear-groups "$run/tlsfront" >"$log" 2>&1 &
TLSFRONT_PID=$!
PIDS+=("$TLSFRONT_PID")
addrs=$("$HELPER" wait "$log" "$TLSFRONT_PID") || {
	cat "$log" >&2
	fail "tlsfront did not start as uid $RUN_UID"
}
eval "$addrs"
ok "tlsfront serve started from TLSFRONT_* env only: tcp $TLS_TCP, http $TLS_WEB, admin $ADMIN"

uid_line=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$TLSFRONT_PID/status")
[[ $uid_line == "$RUN_UID $RUN_UID $RUN_UID $RUN_UID" ]] || fail "tlsfront runs with uids '$uid_line', want all $RUN_UID"
caps=$(awk '/^CapEff:/ { print $2 }' "/proc/$TLSFRONT_PID/status")
[[ $caps == 0000000000000000 ]] || fail "tlsfront has effective capabilities $caps, want none"
ok "process $TLSFRONT_PID: real/effective/saved/fs uid $RUN_UID, no effective capabilities"

res=$("$HELPER" tcp "$TLS_TCP" "$run/certs/ca.pem") || { cat "$log" >&2; fail "TLS round trip through the tcp listener"; }
ok "tcp listener: $res"
res=$("$HELPER" https "$TLS_WEB" "$run/certs/ca.pem") || { cat "$log" >&2; fail "HTTPS request through the http listener"; }
ok "http listener: $res"

# Exactly what the HEALTHCHECK runs: no arguments, the admin address from
# TLSFRONT_ADMIN.
hc=$(TLSFRONT_ADMIN=$ADMIN as_nonroot "$run/tlsfront" healthcheck) || { cat "$log" >&2; fail "tlsfront healthcheck (/readyz) as uid $RUN_UID"; }
ok "HEALTHCHECK (tlsfront healthcheck, /readyz) as uid $RUN_UID: $(xargs <<<"$hc")"
hc=$(as_nonroot "$run/tlsfront" healthcheck --admin "$ADMIN" --path /healthz) || fail "tlsfront healthcheck --path /healthz"
ok "liveness (tlsfront healthcheck --path /healthz): $(xargs <<<"$hc")"

as_nonroot sh -c 'echo probe >"$1/.docker-check" && rm "$1/.docker-check"' sh "$run/state" ||
	fail "state dir $run/state is not writable by uid $RUN_UID"
bad=$(find "$run/state" ! -uid "$RUN_UID" -print | head -3)
[[ -z $bad ]] || fail "files in the state dir not owned by $RUN_UID: $bad"
ok "state dir writable by uid $RUN_UID; everything in it owned by $RUN_UID"

kill -TERM "$TLSFRONT_PID"
# tlsfront's own grace (2s) bounds the stop; a watchdog bounds a hang.
(
	sleep 15
	kill -KILL "$TLSFRONT_PID" 2>/dev/null
) &
WATCHDOG=$!
PIDS+=("$WATCHDOG")
rc=0
wait "$TLSFRONT_PID" || rc=$?
kill "$WATCHDOG" 2>/dev/null || true
[[ $rc != 137 ]] || fail "tlsfront did not stop within 15s of SIGTERM"
[[ $rc == 0 ]] || { cat "$log" >&2; fail "tlsfront exited $rc after SIGTERM, want 0"; }
grep -q '"msg":"stopped"' "$log" || fail "tlsfront did not log that it stopped"
ok "SIGTERM: graceful stop, exit 0"

printf '\ndocker-check: all checks passed\n'
