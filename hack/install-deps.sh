#!/usr/bin/env bash
# The Debian packages the demo, the tests and CI need, installed when missing: one list for
# `npm run demo`, `npm test` and .ci/run. As root on Debian or Ubuntu it says what it installs
# and why, then installs it; as another user it stops with one line giving the command to run.
# Quiet when nothing is missing.
set -euo pipefail

# package: why (one line each; the why is printed when the package is installed)
PACKAGES=(
  "iptables: the redirect rules, in pods' network namespaces and on the local node"
  "iproute2: network namespaces, veth pairs and bridges for tests and the local node"
  "util-linux: nsenter, unshare, flock, mount"
  "procps: pgrep and pkill for the local cluster's processes"
  "ca-certificates: TLS to the package registries for npm and the Go module proxy"
  "openssl: the local cluster's certificates"
  "shellcheck: the lint of hack/*.sh"
  "containerd: the local node's container runtime"
  "runc: the OCI runtime containerd and buildah run"
  "containernetworking-plugins: the local node's pod network (bridge, host-local, loopback)"
  "gcc: the static pause binary of the local node's sandbox image"
  "libc6-dev: the static libc for that pause binary"
  "buildah: builds the product's images from the Dockerfile without Docker"
  "mmdebstrap: the Debian base images those builds start from"
  "jq: hack/crio-runc.sh edits the OCI config CRI-O hands to runc"
  "conmon: the container monitor of the local node on CRI-O (--runtime cri-o)"
  "skopeo: puts images into that CRI-O node's storage (it pulls only from registries)"
  "libseccomp-dev: CRI-O's build (hack/build-crio.sh) links libseccomp, for pods' RuntimeDefault profile"
  "pkg-config: cgo finds libseccomp with it in that build"
  "qemu-system-x86: runs the VM node's guest (hack/vm-node.sh)"
  "e2fsprogs: mkfs.ext4 lays the guest's root filesystem and its node disk"
  "socat: relays the guest's connections to the API server, which listens on loopback"
)
if (($#)); then
  echo "usage: hack/install-deps.sh" >&2
  exit 2
fi

log() { echo "install-deps: $*" >&2; }

command -v dpkg-query >/dev/null || {
  log "not a Debian or Ubuntu machine: install the equivalents of: ${PACKAGES[*]%%:*}"
  exit 1
}

missing=()
for entry in "${PACKAGES[@]}"; do
  package=${entry%%:*}
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null)" == installed ]] || missing+=("$entry")
done
((${#missing[@]})) || exit 0

names=("${missing[@]%%:*}")
if [[ $(id -u) != 0 ]]; then
  log "missing Debian packages; install them with: sudo apt-get install -y --no-install-recommends ${names[*]}"
  exit 1
fi
log "installing ${#missing[@]} missing Debian package(s):"
for entry in "${missing[@]}"; do log "  ${entry%%:*} -${entry#*:}"; done
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${names[@]}" >/dev/null
log "installed ${names[*]}"
