#!/usr/bin/env bash
# Builds (or reuses) CRI-O for `hack/local-cluster.sh up --with-node --runtime cri-o`: crio from
# github.com/cri-o/cri-o through the Go module proxy (the wrapper module is generated in a temp dir)
# and pinns, CRI-O's namespace pinner, a small C program shipped in that module's pinns/src. Both
# live in a cache outside the repo keyed by version. Prints the directory (crio, pinns).
# Build tags: GPG signatures in Go (no gpgme), no btrfs or devicemapper graph drivers (the node
# uses overlay), seccomp through libseccomp (pods asking for RuntimeDefault get a real profile).
set -euo pipefail

CRIO_VERSION=${CRIO_VERSION:-v1.34.0}
BUILD_TAGS="containers_image_openpgp containers_image_ostree_stub exclude_graphdriver_btrfs exclude_graphdriver_devicemapper seccomp"

log() { echo "build-crio: $*" >&2; }

# shellcheck source=hack/lib/go-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/go-build.sh"
BIN_DIR="$GO_BIN_CACHE/crio-$CRIO_VERSION"

have_all() { [[ -x "$BIN_DIR/crio" && -x "$BIN_DIR/pinns" ]]; }

if have_all; then
  echo "$BIN_DIR"
  exit 0
fi
command -v gcc >/dev/null || { log "gcc is required to build CRI-O (cgo) and pinns: run hack/install-deps.sh"; exit 1; }
[[ -e /usr/include/seccomp.h ]] || { log "libseccomp-dev is required to build CRI-O: run hack/install-deps.sh"; exit 1; }
go_build_lock "$BIN_DIR"
if have_all; then
  echo "$BIN_DIR"
  exit 0
fi
# cgo: libseccomp.
export CGO_ENABLED=1
go_build_start CRI-O
work=$GO_WORK
log "building crio and pinns from github.com/cri-o/cri-o $CRIO_VERSION (cold: many minutes)"
cd "$work"
go mod init pnc.local/crio-binary >/dev/null 2>&1
# An explicit version: a bare `go get` would take the newest release.
go get "github.com/cri-o/cri-o@$CRIO_VERSION" >/dev/null
go build -trimpath -tags "$BUILD_TAGS" -ldflags "-s -w" -o "$work/crio" github.com/cri-o/cri-o/cmd/crio
src=$(go list -m -f '{{.Dir}}' github.com/cri-o/cri-o)/pinns/src
# As CRI-O's own pinns/Makefile builds it: static, so it runs in any mount namespace.
gcc -std=c99 -O2 -Wall -Wextra -static -s -o "$work/pinns" "$src"/*.c
mv -f "$work/pinns" "$BIN_DIR/pinns"
mv -f "$work/crio" "$BIN_DIR/crio"
log "built crio and pinns in $(go_build_seconds) s"
echo "$BIN_DIR"
