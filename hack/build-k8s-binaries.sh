#!/usr/bin/env bash
# Builds (or reuses) the real control-plane binaries the tests and the demo run:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kubectl from k8s.io/kubernetes, and
# etcd from go.etcd.io/etcd/server/v3, and crictl (the real node's troubleshooting tool) from
# sigs.k8s.io/cri-tools, through the Go module proxy, into a cache
# outside the repo keyed by version. Prints the directory that holds them.
# The Kubernetes version is PNC_KUBERNETES_VERSION (or K8S_VERSION), newest supported by default;
# etcd is the version that release names (its build/dependencies.yaml).
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-${PNC_KUBERNETES_VERSION:-v1.37.2}}
case $K8S_VERSION in
  v1.37.*) default_etcd=v3.7.0 default_crictl=v1.37.0 ;;
  v1.36.*) default_etcd=v3.6.8 default_crictl=v1.34.0 ;;
  v1.35.*) default_etcd=v3.6.6 default_crictl=v1.34.0 ;;
  v1.34.*) default_etcd=v3.6.16 default_crictl=v1.34.0 ;;
  *) echo "build-k8s-binaries: Kubernetes $K8S_VERSION is not one we support (v1.35 to v1.37)" >&2; exit 1 ;;
esac
ETCD_VERSION=${ETCD_VERSION:-$default_etcd}
CRICTL_VERSION=${CRICTL_VERSION:-$default_crictl}
K8S_TOOLS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)

log() { echo "build-k8s-binaries: $*" >&2; }

# shellcheck source=hack/lib/go-build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/go-build.sh"
BIN_DIR="$GO_BIN_CACHE/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"

have_all() {
  local b
  for b in "${K8S_TOOLS[@]}" etcd crictl; do [[ -x "$BIN_DIR/$b" ]] || return 1; done
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" && -x "$KUBEBUILDER_ASSETS/kube-apiserver" && -x "$KUBEBUILDER_ASSETS/etcd" ]]; then
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi
if have_all; then
  echo "$BIN_DIR"
  exit 0
fi

go_build_lock "$BIN_DIR"
if have_all; then
  echo "$BIN_DIR"
  exit 0
fi
go_build_start "the control plane (or set KUBEBUILDER_ASSETS)"
work=$GO_WORK

build_kubernetes() {
  local start=$SECONDS minor=${K8S_VERSION#v1.}
  log "building ${K8S_TOOLS[*]} from k8s.io/kubernetes $K8S_VERSION (cold: many minutes)"
  mkdir -p "$work/k8s" && cd "$work/k8s"
  go mod init pnc.local/k8s-binaries >/dev/null 2>&1
  go_replace_kubernetes_staging "$K8S_VERSION"
  local pkgs=() t
  for t in "${K8S_TOOLS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$t"); done
  # An explicit version on every package: a bare `go get` would upgrade to the newest release.
  go get "${pkgs[@]/%/@$K8S_VERSION}" >/dev/null
  go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor%%.*}" -o "$BIN_DIR/" "${pkgs[@]}"
  log "built ${K8S_TOOLS[*]} in $((SECONDS - start)) s"
}

build_etcd() {
  local start=$SECONDS
  log "building etcd from go.etcd.io/etcd/server/v3 $ETCD_VERSION"
  mkdir -p "$work/etcd" && cd "$work/etcd"
  go mod init pnc.local/etcd-binary >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null
  go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/etcd" go.etcd.io/etcd/server/v3
  log "built etcd in $((SECONDS - start)) s"
}

for b in "${K8S_TOOLS[@]}"; do
  [[ -x "$BIN_DIR/$b" ]] || { build_kubernetes; break; }
done
[[ -x "$BIN_DIR/etcd" ]] || build_etcd
if [[ ! -x "$BIN_DIR/crictl" ]]; then
  start=$SECONDS
  log "building crictl from sigs.k8s.io/cri-tools $CRICTL_VERSION"
  GOBIN="$BIN_DIR" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
  log "built crictl in $((SECONDS - start)) s"
fi
echo "$BIN_DIR"
