# syntax=docker/dockerfile:1
#
# One image, two static binaries: /imnode (the chat node, the default entrypoint)
# and /imcluster-operator (the Kubernetes operator; the Helm chart sets it as the
# container command). Both come from the same commit, so a chart's appVersion
# names one tag for the operator and the nodes it runs.
#
#   docker build --build-arg VERSION=v0.1.0 -t imcluster/imnode:v0.1.0 .
#   make docker-build IMG=imcluster/imnode:v0.1.0
#
# The final stage is distroless "static" running as the nonroot user
# (uid/gid 65532): no shell, no package manager, CA certificates and tzdata only.

ARG GO_VERSION=1.26.8

# The build stage runs on the builder's own platform and cross-compiles, so a
# multi-arch build (docker buildx --platform linux/amd64,linux/arm64) needs no
# emulation: the binaries are pure Go (CGO_ENABLED=0).
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
ENV GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath

# Dependencies first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download

COPY . .

# VERSION is stamped into node.Version (shown by `imnode --version`, the admin
# API and the build-info metric) and into the operator, which runs nodes of its
# own version when an IMCluster leaves spec.version empty.
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH=amd64
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    set -eu; \
    ldflags="-s -w -X github.com/imcluster/imcluster/node.Version=${VERSION} -X github.com/imcluster/imcluster/operator/internal/controller.Version=${VERSION}"; \
    GOOS="$TARGETOS" GOARCH="$TARGETARCH" go build -ldflags "$ldflags" -o /out/imnode ./node/cmd/imnode; \
    GOOS="$TARGETOS" GOARCH="$TARGETARCH" go build -ldflags "$ldflags" -o /out/imcluster-operator ./operator/cmd

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="imcluster" \
      org.opencontainers.image.description="LeanCloud-realtime-compatible sharded chat cluster: imnode and imcluster-operator" \
      org.opencontainers.image.source="https://github.com/imcluster/imcluster" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/imnode /out/imcluster-operator /
# 65532 is distroless' "nonroot"; numeric so runAsNonRoot can verify it.
USER 65532:65532
ENTRYPOINT ["/imnode"]
