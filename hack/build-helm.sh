#!/usr/bin/env bash
# Builds (or reuses) helm, the chart's renderer and installer (manifests/charts/), from
# helm.sh/helm/v4 through the Go module proxy, into a cache outside the repo keyed by
# version. Prints the directory that holds it.
set -euo pipefail

HELM_VERSION=${HELM_VERSION:-v4.3.2}
CACHE_ROOT=${PNC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pod-network-controller}
BIN_DIR="$CACHE_ROOT/bin/helm-$HELM_VERSION"

log() { echo "build-helm: $*" >&2; }

if [[ -x "$BIN_DIR/helm" ]]; then
  echo "$BIN_DIR"
  exit 0
fi
command -v go >/dev/null || { log "go is required to build helm"; exit 1; }
mkdir -p "$BIN_DIR"
# One build at a time per cache dir; a waiter finds the binary built.
exec 9>"$BIN_DIR.lock"
flock 9
if [[ -x "$BIN_DIR/helm" ]]; then
  echo "$BIN_DIR"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local

start=$SECONDS
log "building helm from helm.sh/helm/v4 $HELM_VERSION (cold: a few minutes)"
cd "$work"
go mod init pnc.local/helm-binary >/dev/null 2>&1
# An explicit version: a bare `go get` would take the newest release.
go get "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" >/dev/null
# helm prints its version from these (its Makefile sets them the same way).
go build -trimpath -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" -o "$work/helm" helm.sh/helm/v4/cmd/helm
# A rename in the same directory: a reader never sees a half-written binary.
mv -f "$work/helm" "$BIN_DIR/helm.new" && mv -f "$BIN_DIR/helm.new" "$BIN_DIR/helm"
log "built helm in $((SECONDS - start)) s"
echo "$BIN_DIR"
