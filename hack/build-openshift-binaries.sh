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
CMD_DIR="$(cd "$(dirname "$0")" && pwd)/openshift/cmd"
CRD_PATH=security/v1/zz_generated.crd-manifests/0000_03_config-operator_01_securitycontextconstraints.crd.yaml
CRD=securitycontextconstraints.crd.yaml

log() { echo "build-openshift-binaries: $*" >&2; }

# shellcheck source=hack/lib/go-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/go-build.sh"
BIN_DIR="$GO_BIN_CACHE/openshift-${OPENSHIFT_APISERVER_LIBRARY_VERSION##*-}-api-${OPENSHIFT_API_VERSION##*-}-k8s-$K8S_VERSION"

source_sum() { (cd "$CMD_DIR" && find scc-admission -type f -name '*.go' | sort | xargs sha256sum) | sha256sum | cut -d' ' -f1; }

go_build_lock "$BIN_DIR"
sum=$(source_sum)
if [[ -x "$BIN_DIR/scc-admission" && -f "$BIN_DIR/$CRD" && "$(cat "$BIN_DIR/.scc-admission.sha256" 2>/dev/null)" == "$sum" ]]; then
  echo "$BIN_DIR"
  exit 0
fi

go_build_start scc-admission
work=$GO_WORK
out="$BIN_DIR/.build.$$"
GO_CLEANUP+=("$out")
log "building scc-admission against apiserver-library-go $OPENSHIFT_APISERVER_LIBRARY_VERSION and k8s.io/kubernetes $K8S_VERSION (cold: minutes)"
cp -r "$CMD_DIR" "$work/cmd"
cd "$work"
go mod init pnc.local/openshift-binaries >/dev/null 2>&1
go_replace_kubernetes_staging "$K8S_VERSION"
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
log "built scc-admission in $(go_build_seconds) s"
echo "$BIN_DIR"
