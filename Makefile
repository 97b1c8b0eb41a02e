# tlsfront — a thin layer over the go tool. `make run` starts the demo,
# `make test` runs every test.

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BIN      := bin/tlsfront
FUZZTIME ?= 30s
TEST_TIMEOUT ?= 30m

.PHONY: build run test test-short test-interop lint fuzz bench bench-storm bench-certs bench-resume docker docker-check clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/tlsfront

# A local CA, a real MQTT broker (Mosquitto if installed, else an embedded
# one) and tlsfront in front of it for mqtts and wss. Ctrl-C stops it.
# (The demo runs as a built binary: `go run` reports an interrupted child
# as a failure.)
run: build
	$(GO) build -o bin/tlsfront-demo ./cmd/tlsfront-demo
	./bin/tlsfront-demo --bin $(BIN)

# Every test, with the race detector. Tests that need Mosquitto or Pebble
# skip locally when those are missing, and fail in CI (CI=true). The
# proxy package runs again without it: its raw socket calls are made only
# outside the race detector (proxy/rawio_unix.go says why).
test: lint
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./proxy/

# The WebSocket interoperability suite alone (it also runs in `make test`):
# paho-mqtt (Python), MQTT.js (node and headless Chromium), Mosquitto and
# the node ws package through tlsfront. Needs `npm ci` in
# proxy/testdata/interop; .ci/run installs everything. This target also
# opts in to RabbitMQ's web_mqtt with PROXY headers, which needs
# `apt-get install rabbitmq-server` and takes tens of seconds to start.
test-interop:
	TLSFRONT_RABBITMQ=1 $(GO) test -race -count=1 -run Interop -v ./proxy/

test-short:
	$(GO) test -count=1 -short ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

# Each native fuzz target for FUZZTIME.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

# tlsfront side by side with a direct connection, nginx and HAProxy.
bench:
	$(GO) run ./bench

# A reconnect storm against a real broker, limits off and on.
bench-storm:
	$(GO) run ./bench/storm

# 10,000 certificates in a folder: start, memory, one change served.
# A reconnect storm against three instances sharing a ticket key: the share
# resumed and the CPU per reconnection, resumed against full handshakes.
bench-resume:
	$(GO) run ./bench/resume
	$(GO) run ./bench/resume -tls12

bench-certs:
	$(GO) run ./bench/certs

docker:
	docker build --build-arg VERSION=$(VERSION) -t tlsfront:$(VERSION) .

# What CI can check of the image without a Docker engine.
docker-check:
	bash .ci/docker-check.sh

clean:
	rm -rf bin
