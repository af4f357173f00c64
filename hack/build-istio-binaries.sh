#!/usr/bin/env bash
# Builds (or reuses) Istio reference binaries the tests compare us with: every wrapper
# main under hack/istio/cmd/<name>/main.go becomes the binary <name>, linked against
# istio.io/istio from the Go module proxy (no Istio code in this repo: the wrapper
# module is generated in a temp dir), and so do the mains Istio ships that are used as
# they are (MODULE_MAINS: pilot-agent, for the Istio proxy stand-in image). Binaries live
# in a cache outside the repo keyed by version; each is rebuilt when its main.go changes.
# Prints the directory.
# Usage: build-istio-binaries.sh [NAME...]   (no NAME: every wrapper and module main; CI builds them all)
set -euo pipefail

ISTIO_VERSION=${ISTIO_VERSION:-v0.0.0-20260827124520-eed52ebb66ad}
CMD_DIR="$(cd "$(dirname "$0")" && pwd)/istio/cmd"
# Istio's own mains at this version, built from the module unchanged.
declare -A MODULE_MAINS=([pilot-agent]=istio.io/istio/pilot/cmd/pilot-agent)

log() { echo "build-istio-binaries: $*" >&2; }

# shellcheck source=hack/lib/go-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/go-build.sh"
BIN_DIR="$GO_BIN_CACHE/istio-$ISTIO_VERSION"

names=("$@")
if ((${#names[@]} == 0)); then
  for main in "$CMD_DIR"/*/main.go; do
    [[ -f "$main" ]] && names+=("$(basename "$(dirname "$main")")")
  done
  names+=("${!MODULE_MAINS[@]}")
fi
((${#names[@]} > 0)) || { log "no wrapper mains under $CMD_DIR"; exit 1; }
for n in "${names[@]}"; do
  [[ -f "$CMD_DIR/$n/main.go" || -n "${MODULE_MAINS[$n]:-}" ]] || { log "no wrapper main $CMD_DIR/$n/main.go"; exit 1; }
done

# What a binary is built from: its wrapper's hash, or Istio's package path (the version is in BIN_DIR).
source_sum() {
  if [[ -n "${MODULE_MAINS[$1]:-}" ]]; then echo "${MODULE_MAINS[$1]}" | sha256sum | cut -d' ' -f1; else sha256sum "$CMD_DIR/$1/main.go" | cut -d' ' -f1; fi
}

go_build_lock "$BIN_DIR"

# A binary is current when the stamp beside it holds its source_sum.
stale=()
for n in "${names[@]}"; do
  sum=$(source_sum "$n")
  [[ -x "$BIN_DIR/$n" && "$(cat "$BIN_DIR/.$n.sha256" 2>/dev/null)" == "$sum" ]] || stale+=("$n")
done
if ((${#stale[@]} == 0)); then
  echo "$BIN_DIR"
  exit 0
fi

go_build_start "${stale[*]}"
work=$GO_WORK
out="$BIN_DIR/.build.$$"
GO_CLEANUP+=("$out")
log "building ${stale[*]} against istio.io/istio $ISTIO_VERSION (cold: many minutes)"
cp -r "$CMD_DIR" "$work/cmd"
cd "$work"
go mod init pnc.local/istio-binaries >/dev/null 2>&1
# An explicit version: a bare `go get` would take the newest commit.
go get "istio.io/istio@$ISTIO_VERSION" >/dev/null
packages=()
for n in "${stale[@]}"; do packages+=("${MODULE_MAINS[$n]:-./cmd/$n}"); done
go build -trimpath -ldflags "-s -w" -o "$out/" "${packages[@]}"
for n in "${stale[@]}"; do
  # A rename in the same directory: a test running the old binary keeps it, no half-written file.
  mv -f "$out/$n" "$BIN_DIR/$n"
  source_sum "$n" >"$BIN_DIR/.$n.sha256"
done
log "built ${stale[*]} in $(go_build_seconds) s"
echo "$BIN_DIR"
