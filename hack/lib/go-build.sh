# shellcheck shell=bash
# shellcheck disable=SC2034 # GO_BIN_CACHE is read by the scripts that source this file
# What the harness's Go build scripts share (build-k8s-binaries, build-istio-binaries,
# build-openshift-binaries, build-helm, build-crio): the cache outside the repo, one build at a
# time per cache entry, a scratch module removed on exit, the Go environment, and the module
# replaces that k8s.io/kubernetes needs. The sourcing script defines log.

# Where built binaries live, one directory per tool and version.
GO_BIN_CACHE=${PNC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pod-network-controller}/bin

# go_build_lock DIR: makes DIR and holds its lock (fd 9) until the script exits: one build at a
# time per cache entry (test projects may ask together); a waiter then finds it built.
go_build_lock() {
  mkdir -p "$1"
  exec 9>"$1.lock"
  flock 9
}

# go_build_start WHAT: checks for go, then makes GO_WORK, a scratch dir removed on exit (with
# whatever else the script adds to GO_CLEANUP), and sets the environment of every build: static
# binaries unless the script exported CGO_ENABLED=1, modules from the proxy, this machine's Go.
go_build_start() {
  command -v go >/dev/null || {
    log "go is required to build $1"
    exit 1
  }
  GO_WORK=$(mktemp -d)
  GO_CLEANUP=("$GO_WORK")
  trap 'rm -rf "${GO_CLEANUP[@]}"' EXIT
  export CGO_ENABLED=${CGO_ENABLED:-0} GOFLAGS=-mod=mod GOTOOLCHAIN=local
  GO_BUILD_STARTED=$SECONDS
}

# go_build_seconds: how long since go_build_start.
go_build_seconds() { echo $((SECONDS - GO_BUILD_STARTED)); }

# go_replace_kubernetes_staging VERSION, in a module dir: k8s.io/kubernetes replaces each of its
# staging modules with a local path; point each at its published v0.Y.Z instead.
go_replace_kubernetes_staging() {
  local minor=${1#v1.} gomod staging=() module
  gomod=$(go mod download -json "k8s.io/kubernetes@$1" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\1#p' "$gomod")
  ((${#staging[@]} > 0)) || {
    log "no staging replaces found in $gomod"
    exit 1
  }
  for module in "${staging[@]}"; do go mod edit -replace="$module=$module@v0.${minor}"; done
}
