# tlsfront container image: a static binary on distroless, running as non-root.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t tlsfront .
#
# Configure it with TLSFRONT_* environment variables (every flag has one:
# --ws-listen is TLSFRONT_WS_LISTEN) or mount a file and set
# TLSFRONT_CONFIG=/etc/tlsfront/tlsfront.yaml. The one-backend sidecar needs
# no file:
#
#   docker run -p 8883:8883 -p 8084:8084 -v /etc/letsencrypt:/etc/letsencrypt:ro \
#     -e TLSFRONT_LISTEN=:8883 -e TLSFRONT_BACKEND=mosquitto:1883 \
#     -e TLSFRONT_WS_LISTEN=:8084 -e TLSFRONT_WS_BACKEND=mosquitto:8083 \
#     -e TLSFRONT_CERT=/etc/letsencrypt/live/mqtt.example.com/fullchain.pem \
#     -e TLSFRONT_KEY=/etc/letsencrypt/live/mqtt.example.com/privkey.pem \
#     tlsfront
#
# .ci/docker-check.sh lints this file, builds the binary with the same
# command and environment as the build stage below, and runs it as uid
# 65532. Keep the go build line there and here identical.

# Builder: pinned to the Go release go.mod asks for; never :latest.
# --platform=$BUILDPLATFORM builds natively and cross-compiles for the
# target (linux/arm64 brokers on a Raspberry Pi, say), which a static
# binary makes free.
FROM --platform=$BUILDPLATFORM golang:1.26.8-bookworm AS build

ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH

# CGO_ENABLED=0: a static binary, no libc needed in the final image.
# GOTOOLCHAIN=local: build with this image's Go, never download another.
# GOFLAGS=-mod=readonly: go.mod and go.sum are the truth; a build that
# would change them fails.
ENV CGO_ENABLED=0 \
    GOTOOLCHAIN=local \
    GOFLAGS=-mod=readonly

WORKDIR /src

# Modules first, as their own layer: it is rebuilt only when go.mod or
# go.sum change, not on every source edit.
COPY go.mod go.sum ./
RUN go mod download && go mod verify

COPY . .
RUN GOOS=$TARGETOS GOARCH=$TARGETARCH CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/tlsfront ./cmd/tlsfront

# The state folder, created here because the final image has no shell.
# Owned by 65532 so that a fresh named volume mounted on it inherits an
# owner the process can write as.
RUN mkdir -p /out/state && chown 65532:65532 /out/state && chmod 0700 /out/state

# Final image: distroless static, nonroot variant (uid and gid 65532, no
# shell, no package manager, CA certificates and tzdata only).
# For reproducible deployments pin the digest as well as the tag, e.g.
#   FROM gcr.io/distroless/static-debian12:nonroot@sha256:<digest>
# (find it with `docker buildx imagetools inspect gcr.io/distroless/static-debian12:nonroot`)
# and let a bot such as Renovate or Dependabot bump it.
FROM gcr.io/distroless/static-debian12:nonroot

ARG VERSION=dev
LABEL org.opencontainers.image.title="tlsfront" \
      org.opencontainers.image.description="TLS-terminating sidecar for MQTT brokers and WebSocket services" \
      org.opencontainers.image.version="${VERSION}"

COPY --from=build /out/tlsfront /tlsfront
COPY --from=build --chown=65532:65532 /out/state /var/lib/tlsfront

# State that must survive a restart (ACME account and certificates) lives
# here; mount a volume on it when tlsfront obtains its own certificates.
ENV TLSFRONT_STATE_DIR=/var/lib/tlsfront
VOLUME /var/lib/tlsfront

# Numeric, not "nonroot": Kubernetes' runAsNonRoot can only verify a
# numeric user.
USER 65532:65532

# 8883: MQTT over TLS. 8084: MQTT over WebSocket (wss) and other HTTP.
# Not exposed: the admin listener (health, metrics, status, reload) on
# 127.0.0.1:9901. It stays on loopback inside the container; the
# HEALTHCHECK below and Kubernetes `exec` probes run inside the container,
# so they reach it there. Publish it only by setting TLSFRONT_ADMIN to a
# non-loopback address, and only on a network you trust.
EXPOSE 8883 8084

# No shell and no curl in this image: the binary checks itself. It reads
# TLSFRONT_ADMIN, so a moved admin listener is still found. It asks /readyz:
# unhealthy until every listener serves and every readiness check passes.
# (No --start-period: tlsfront is ready in milliseconds, and 3 x 30 s leaves
# an ACME first issuance time to finish.)
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
    CMD ["/tlsfront", "healthcheck"]

ENTRYPOINT ["/tlsfront"]
