#!/usr/bin/env bash
# Builds (or reuses) the OpenShift pieces of `hack/local-cluster.sh up --openshift`:
# scc-admission (hack/openshift/cmd/scc-admission: OpenShift's own SCC admission plugin served as
# webhooks), linked against github.com/openshift/apiserver-library-go and k8s.io/kubernetes from
# the Go module proxy (no OpenShift code in this repo: the wrapper module is generated in a temp
# dir), and the SecurityContextConstraints CRD that ships in github.com/openshift/api, copied from
# the module. Both live in a cache outside the repo keyed by version; the binary is rebuilt when
# its sources change. Prints the directory (scc-admission, securitycontextconstraints.crd.yaml).
set -euo pipefail

# The Kubernetes libraries these OpenShift modules were made with; the webhook serves any API
# server version (the cluster's own is hack/build-k8s-binaries.sh's), so it does not follow it.
K8S_VERSION=${OPENSHIFT_K8S_VERSION:-v1.34.4}
# Exact pseudo-versions: the proxy refuses apiserver-library-go's version list and @latest.
OPENSHIFT_APISERVER_LIBRARY_VERSION=${OPENSHIFT_APISERVER_LIBRARY_VERSION:-v0.0.0-20250917015549-a8019f39f670}
OPENSHIFT_API_VERSION=${OPENSHIFT_API_VERSION:-v0.0.0-20251111013132-5c461e21bdb7}
OPENSHIFT_CLIENT_VERSION=${OPENSHIFT_CLIENT_VERSION:-v0.0.0-20251015124057-db0dee36e235}
OPENSHIFT_LIBRARY_VERSION=${OPENSHIFT_LIBRARY_VERSION:-v0.0.0-20260108135436-db8dbd64c462}
CACHE_ROOT=${PNC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pod-network-controller}
BIN_DIR="$CACHE_ROOT/bin/openshift-${OPENSHIFT_APISERVER_LIBRARY_VERSION##*-}-api-${OPENSHIFT_API_VERSION##*-}-k8s-$K8S_VERSION"
CMD_DIR="$(cd "$(dirname "$0")" && pwd)/openshift/cmd"
CRD_PATH=security/v1/zz_generated.crd-manifests/0000_03_config-operator_01_securitycontextconstraints.crd.yaml
CRD=securitycontextconstraints.crd.yaml

log() { echo "build-openshift-binaries: $*" >&2; }

source_sum() { (cd "$CMD_DIR" && find scc-admission -type f -name '*.go' | sort | xargs sha256sum) | sha256sum | cut -d' ' -f1; }

mkdir -p "$BIN_DIR"
# One build at a time (test projects may ask together); a waiter then finds the binary current.
exec 9>"$BIN_DIR/.lock"
flock 9
sum=$(source_sum)
if [[ -x "$BIN_DIR/scc-admission" && -f "$BIN_DIR/$CRD" && "$(cat "$BIN_DIR/.scc-admission.sha256" 2>/dev/null)" == "$sum" ]]; then
  echo "$BIN_DIR"
  exit 0
fi

command -v go >/dev/null || { log "go is required to build scc-admission"; exit 1; }
work=$(mktemp -d)
out="$BIN_DIR/.build.$$"
trap 'rm -rf "$work" "$out"' EXIT
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local

start=$SECONDS
log "building scc-admission against apiserver-library-go $OPENSHIFT_APISERVER_LIBRARY_VERSION and k8s.io/kubernetes $K8S_VERSION (cold: minutes)"
cp -r "$CMD_DIR" "$work/cmd"
cd "$work"
go mod init pnc.local/openshift-binaries >/dev/null 2>&1
minor=${K8S_VERSION#v1.}
gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
# Upstream replaces every staging module with a local path; point each at its published v0.Y.Z instead.
mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\1#p' "$gomod")
((${#staging[@]} > 0)) || { log "no staging replaces found in $gomod"; exit 1; }
for m in "${staging[@]}"; do go mod edit -replace="$m=$m@v0.${minor}"; done
# Explicit versions everywhere: a bare `go get` would take the newest of each.
go get "k8s.io/kubernetes@$K8S_VERSION" \
  "github.com/openshift/apiserver-library-go@$OPENSHIFT_APISERVER_LIBRARY_VERSION" \
  "github.com/openshift/api@$OPENSHIFT_API_VERSION" \
  "github.com/openshift/client-go@$OPENSHIFT_CLIENT_VERSION" \
  "github.com/openshift/library-go@$OPENSHIFT_LIBRARY_VERSION" >/dev/null
go mod tidy >/dev/null
mkdir -p "$out"
go build -trimpath -ldflags "-s -w" -o "$out/scc-admission" ./cmd/scc-admission
api_dir=$(go list -m -f '{{.Dir}}' github.com/openshift/api)
cp "$api_dir/$CRD_PATH" "$out/$CRD"
# Renames in the same directory: a cluster running the old binary keeps it, no half-written file.
mv -f "$out/$CRD" "$BIN_DIR/$CRD"
mv -f "$out/scc-admission" "$BIN_DIR/scc-admission"
echo "$sum" >"$BIN_DIR/.scc-admission.sha256"
log "built scc-admission in $((SECONDS - start)) s"
echo "$BIN_DIR"
