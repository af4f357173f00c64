#!/usr/bin/env bash
# Builds (or reuses) helm, the chart's renderer and installer (manifests/charts/), from
# helm.sh/helm/v4 through the Go module proxy, into a cache outside the repo keyed by
# version. Prints the directory that holds it.
set -euo pipefail

HELM_VERSION=${HELM_VERSION:-v4.3.2}

log() { echo "build-helm: $*" >&2; }

# shellcheck source=hack/lib/go-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/go-build.sh"
BIN_DIR="$GO_BIN_CACHE/helm-$HELM_VERSION"

if [[ -x "$BIN_DIR/helm" ]]; then
  echo "$BIN_DIR"
  exit 0
fi
go_build_lock "$BIN_DIR"
if [[ -x "$BIN_DIR/helm" ]]; then
  echo "$BIN_DIR"
  exit 0
fi
go_build_start helm
log "building helm from helm.sh/helm/v4 $HELM_VERSION (cold: a few minutes)"
cd "$GO_WORK"
go mod init pnc.local/helm-binary >/dev/null 2>&1
# An explicit version: a bare `go get` would take the newest release.
go get "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" >/dev/null
# helm prints its version from these (its Makefile sets them the same way).
go build -trimpath -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" -o "$GO_WORK/helm" helm.sh/helm/v4/cmd/helm
# A rename in the same directory: a reader never sees a half-written binary.
mv -f "$GO_WORK/helm" "$BIN_DIR/helm.new" && mv -f "$BIN_DIR/helm.new" "$BIN_DIR/helm"
log "built helm in $(go_build_seconds) s"
echo "$BIN_DIR"
