#!/usr/bin/env bash
# One real worker node for the local control plane: containerd (or CRI-O, PNC_NODE_RUNTIME=cri-o)
# + runc + the bridge CNI plugin from Debian, and a kubelet built like the other binaries. Called by
# `hack/local-cluster.sh up --with-node` / `down` / `node-reboot`, which export STATE_DIR,
# BIN_DIR, PKI, APISERVER_URL and ADMIN_KUBECONFIG; not meant to be run by hand.
#
#   local-node.sh check    exit 1 with one line naming what this machine lacks
#   local-node.sh up       start (or reuse) the node; waits until it is Ready
#   local-node.sh down     stop it and remove every trace on the host
#   local-node.sh reboot   stop kubelet and containerd, kill every pod sandbox, start both again
#   local-node.sh pause-image   build (or reuse) the sandbox image; print its OCI archive and name
#
# Host footprint, all undone by `down`: a slot (0-2) claimed under /run/pod-network-controller,
# which names two bridges (pncn<slot>: the node's addresses, no ports; pncp<slot>: the pods),
# the cgroup root /pnc-node-<slot> in every hierarchy, iptables chains per family in nat
# (the `kubernetes` Service ClusterIP to the API server) and in filter (pods never reach past
# the node; the host never sends our ranges through its uplink), the kubelet's sysctls (originals restored by the last node down) and its
# device-plugin socket in /var/lib/kubelet, CNI result files, /var/log/containers links and
# containerd shim sockets. Everything else lives in $STATE_DIR/node (CRI-O's config, storage,
# run dir, sockets and pinned namespaces included). Only documentation ranges are used; host
# forwarding is never turned on.
#
# The runtime is PNC_NODE_RUNTIME at `up` (containerd by default, or cri-o: CRI-O built by
# hack/build-crio.sh, with Debian's conmon and runc), recorded in the node's dir for the rest.
set -Eeuo pipefail
trap 'echo "local-node: failed (line $LINENO): $BASH_COMMAND" >&2' ERR

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${STATE_DIR:?is set by hack/local-cluster.sh, which runs this script: use that}"
NODE_DIR="$STATE_DIR/node"
LOG_DIR="$STATE_DIR/logs"
NODES_DIR=/run/pod-network-controller/nodes
SLOTS=3
NODE_NAME=pnc-node
PAUSE_IMAGE=localhost/pod-network-controller/pause:dev
CACHE_ROOT=${PNC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pod-network-controller}
CNI_BIN_DIR=/usr/lib/cni
# The sysctls the kubelet sets at start (its "kernel tunables").
KUBELET_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

log() { echo "local-node: $*" >&2; }
die() { log "$*"; exit 1; }

# --- addressing: everything derives from the slot ---------------------------------------
# The plan and its ranges: hack/lib/host-network.sh. Pods: a /26 of 198.51.100.0/24 and
# 2001:db8:ad1:<slot>::/64; the first address of each is the gateway on the pod bridge. Node:
# 198.51.100.<192+slot> and 2001:db8:ad0:<slot>::1 on the portless bridge.
# shellcheck source=hack/lib/host-network.sh
source "$HACK_DIR/lib/host-network.sh"
# shellcheck source=hack/lib/node-pki.sh
source "$HACK_DIR/lib/node-pki.sh"
# shellcheck source=hack/lib/kubelet-config.sh
source "$HACK_DIR/lib/kubelet-config.sh"
slot_vars() {
  local slot=$1
  POD_V4_NET="198.51.100.$((64 * slot))"
  POD_V4_CIDR="$POD_V4_NET/26"
  POD_V4_GW="198.51.100.$((64 * slot + 1))"
  POD_V6_CIDR="2001:db8:ad1:$slot::/64"
  POD_V6_GW="2001:db8:ad1:$slot::1"
  NODE_V4="198.51.100.$((192 + slot))"
  NODE_V6="2001:db8:ad0:$slot::1"
  NODE_BRIDGE="pncn$slot"
  POD_BRIDGE="pncp$slot"
  CGROUP_ROOT="pnc-node-$slot"
  CNI_NETWORK="pnc-node-$slot"
  CHAIN="PNC-NODE-$slot"
}

# --- runtime -------------------------------------------------------------------------
RUNTIMES=(containerd cri-o)
# Sets RUNTIME, the node's runtime: what `up` recorded, else what PNC_NODE_RUNTIME asks for.
load_runtime() {
  RUNTIME=$(cat "$NODE_DIR/runtime" 2>/dev/null || echo "${PNC_NODE_RUNTIME:-containerd}")
  case $RUNTIME in
    containerd | cri-o) ;;
    *) die "PNC_NODE_RUNTIME=$RUNTIME is not a runtime this node runs (${RUNTIMES[*]})" ;;
  esac
}
# The process that serves the CRI, as recorded by launch.
runtime_process() { if [[ $1 == cri-o ]]; then echo crio; else echo containerd; fi; }

# --- preflight -------------------------------------------------------------------------
INSTALL_HINT="apt-get install containerd runc containernetworking-plugins iptables iproute2 gcc libc6-dev"
CRIO_INSTALL_HINT="apt-get install conmon runc skopeo jq containernetworking-plugins iptables iproute2 gcc libc6-dev libseccomp-dev"
cmd_check() {
  [[ $(id -u) == 0 ]] || die "a real node needs root (netns, cgroups, mounts, bridges)"
  local tool
  load_runtime
  if [[ $RUNTIME == cri-o ]]; then
    # crio and pinns themselves are built by hack/build-crio.sh at `up`.
    for tool in conmon runc skopeo jq iptables ip6tables ip cc openssl; do
      command -v "$tool" >/dev/null || die "missing $tool (the CRI-O node needs it): install it with: $CRIO_INSTALL_HINT"
    done
  else
    for tool in containerd containerd-shim-runc-v2 ctr runc iptables ip6tables ip cc openssl; do
      command -v "$tool" >/dev/null || die "missing $tool: install it with: $INSTALL_HINT"
    done
  fi
  for tool in bridge host-local loopback; do
    [[ -x "$CNI_BIN_DIR/$tool" ]] || die "missing the CNI plugin $CNI_BIN_DIR/$tool: install it with: apt-get install containernetworking-plugins"
  done
  [[ -f /usr/lib/x86_64-linux-gnu/libc.a || -f /usr/lib/aarch64-linux-gnu/libc.a || -f /usr/lib/libc.a ]] ||
    die "missing a static libc for the pause image: install it with: apt-get install libc6-dev"
  grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
    die "the kernel has no overlay filesystem (the runtime's image storage needs it): modprobe overlay"
  [[ -d /sys/fs/cgroup/memory || -f /sys/fs/cgroup/cgroup.controllers ]] || die "no cgroup hierarchy with the memory controller is mounted under /sys/fs/cgroup"
  [[ -d /proc/sys/net/ipv6 ]] || die "IPv6 is disabled in this kernel (ipv6.disable=1): the node's pods are dual-stack"
  [[ -w /proc/sys/kernel/panic ]] || die "/proc/sys is read-only: the kubelet must set its sysctls (run on a host, not in an unprivileged container)"
  local probe="pncchk$$"
  ip link add "$probe" type bridge 2>/dev/null || die "cannot create a bridge link (needs CAP_NET_ADMIN and the bridge module: modprobe bridge)"
  ip link del "$probe"
}

# --- processes ---------------------------------------------------------------------------
PID_DIR=$NODE_DIR
# shellcheck source=hack/lib/procs.sh
source "$HACK_DIR/lib/procs.sh"
# shellcheck source=hack/lib/mounts.sh
source "$HACK_DIR/lib/mounts.sh"
# shellcheck source=hack/lib/node-images.sh
source "$HACK_DIR/lib/node-images.sh"

# Short grace: what they leave behind is cleaned up by us, not by them.
stop_process() { stop_recorded "$1" 10; }

# Shims outlive containerd; they name our socket on their command line.
shim_pids() {
  pgrep -f -- "containerd-shim.* -address $NODE_DIR/containerd/containerd.sock( |\$)" || true
}

cgroup_dirs() {
  local hierarchy
  for hierarchy in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    [[ -d "$hierarchy$CGROUP_ROOT" ]] && echo "$hierarchy$CGROUP_ROOT"
  done
  return 0
}

# SIGKILL to every process in our cgroup root (pod sandboxes and containers), until none is left.
kill_pods() {
  local i dir pids
  for ((i = 0; i < 50; i++)); do
    # Cgroups vanish while find walks them (their last process died): not an error here.
    pids=$(cgroup_dirs | while read -r dir; do find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null || true; done | sort -u)
    [[ -z "$pids" ]] && return 0
    # shellcheck disable=SC2086 # one pid per word
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
  log "processes still in the cgroup root $CGROUP_ROOT after 5 s: $pids"
}


# --- slots -----------------------------------------------------------------------------
# Slot claims are files naming the state dir that holds them; one lock serializes claims,
# host-wide sysctl records and the last node's restore.
lock_slots() {
  mkdir -p "$NODES_DIR"
  exec 8>"$NODES_DIR/.lock"
  flock 8
}

claim_slot() {
  local slot owner
  if [[ -f "$NODE_DIR/slot" ]]; then
    slot=$(<"$NODE_DIR/slot")
    owner=$(cat "$NODES_DIR/slot-$slot" 2>/dev/null || true)
    if [[ -z "$owner" || "$owner" == "$STATE_DIR" ]]; then
      echo "$STATE_DIR" >"$NODES_DIR/slot-$slot"
      echo "$slot"
      return 0
    fi
  fi
  # A free slot, else one whose owner's state dir is gone, else one whose node is dead and
  # whose cluster no `up`/`down` holds (its run crashed and nobody ran `down`).
  local pass
  for pass in free gone abandoned; do
    for ((slot = 0; slot < SLOTS; slot++)); do
      owner=$(cat "$NODES_DIR/slot-$slot" 2>/dev/null || true)
      case $pass in
        free) [[ -z "$owner" ]] || continue ;;
        gone) [[ -n "$owner" && ! -d "$owner/node" ]] || continue ;;
        abandoned) slot_abandoned "$owner" || continue ;;
      esac
      if [[ -n "$owner" ]]; then
        log "taking over slot $slot from $owner ($pass): removing its node's host traces"
        STATE_DIR=$owner bash "${BASH_SOURCE[0]}" remove-traces "$slot"
      fi
      echo "$STATE_DIR" >"$NODES_DIR/slot-$slot"
      mkdir -p "$NODE_DIR"
      echo "$slot" >"$NODE_DIR/slot"
      echo "$slot"
      return 0
    done
  done
  die "all $SLOTS node slots are taken (see $NODES_DIR): stop another local node with hack/local-cluster.sh down"
}

slot_abandoned() {
  local owner=$1 name
  [[ -n "$owner" && "$owner" != "$STATE_DIR" ]] || return 1
  for name in kubelet containerd crio; do
    PID_DIR="$owner/node" recorded_pid "$name" >/dev/null && return 1
  done
  # local-cluster.sh holds this lock through `up` and `down`.
  flock -n "$owner.lock" true 2>/dev/null
}

other_claims() {
  local file
  for file in "$NODES_DIR"/slot-*; do
    [[ -f "$file" && "$(<"$file")" != "$STATE_DIR" ]] && echo "$file"
  done
  return 0
}

# The first node records the host's values (and whether a kubelet dir was there: the kubelet
# puts its device-plugin socket in /var/lib/kubelet whatever its root dir); the last one down
# puts them back.
record_host_state() {
  [[ -f "$NODES_DIR/sysctls" ]] && return 0
  if [[ -e /var/lib/kubelet ]]; then rm -f "$NODES_DIR/made-var-lib-kubelet"; else touch "$NODES_DIR/made-var-lib-kubelet"; fi
  local name
  for name in "${KUBELET_SYSCTLS[@]}"; do
    [[ -r "/proc/sys/${name//.//}" ]] && echo "$name=$(<"/proc/sys/${name//.//}")"
  done >"$NODES_DIR/sysctls.tmp"
  mv "$NODES_DIR/sysctls.tmp" "$NODES_DIR/sysctls"
}

restore_host_state() {
  [[ -z "$(other_claims)" ]] || return 0
  if [[ -f "$NODES_DIR/made-var-lib-kubelet" ]]; then
    rm -f /var/lib/kubelet/device-plugins/kubelet.sock
    rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet 2>/dev/null || true
    rm -f "$NODES_DIR/made-var-lib-kubelet"
  fi
  [[ -f "$NODES_DIR/sysctls" ]] || return 0
  local line
  while IFS= read -r line; do
    echo "${line#*=}" >"/proc/sys/$(tr . / <<<"${line%%=*}")" 2>/dev/null || log "could not restore ${line%%=*}"
  done <"$NODES_DIR/sysctls"
  rm -f "$NODES_DIR/sysctls"
}

# --- host network ----------------------------------------------------------------------
ipt() { "$1" -w 5 "${@:2}"; }

# TABLE HOOK CHAIN: our chains and the hooks that jump to them.
our_chains() {
  printf '%s\n' "nat PREROUTING $CHAIN" "filter FORWARD $CHAIN" "filter OUTPUT $CHAIN-UPLINK"
}

remove_chains() {
  local cmd table hook chain
  for cmd in iptables ip6tables; do
    while read -r table hook chain; do
      # Every rule jumping to our chain, whatever its match: `-A HOOK ...` becomes `-D HOOK ...`.
      ipt "$cmd" -t "$table" -S "$hook" 2>/dev/null | grep -- "-j $chain\$" | while read -r -a rule; do
        ipt "$cmd" -t "$table" -D "${rule[@]:1}" || true
      done || true
      ipt "$cmd" -t "$table" -F "$chain" 2>/dev/null || true
      ipt "$cmd" -t "$table" -X "$chain" 2>/dev/null || true
    done < <(our_chains)
  done
}

setup_network() {
  local api_port
  api_port=${APISERVER_URL##*:}
  ip link del "$NODE_BRIDGE" 2>/dev/null || true
  ip link del "$POD_BRIDGE" 2>/dev/null || true
  # The kubelet wants --node-ip to be a local address; a bridge without ports holds it.
  ip link add "$NODE_BRIDGE" type bridge
  ip link add "$POD_BRIDGE" type bridge
  # The pods' gateway sits on their bridge (the CNI plugin runs with isGateway false, which
  # leaves host forwarding alone); replies to pods go out here. route_localnet on this bridge
  # alone lets the `kubernetes` Service reach the API server on 127.0.0.1.
  echo 1 >"/proc/sys/net/ipv4/conf/$POD_BRIDGE/route_localnet"
  echo 0 >"/proc/sys/net/ipv6/conf/$POD_BRIDGE/disable_ipv6"
  echo 0 >"/proc/sys/net/ipv6/conf/$NODE_BRIDGE/disable_ipv6"
  ip addr add "$NODE_V4/32" dev "$NODE_BRIDGE"
  ip addr add "$NODE_V6/128" dev "$NODE_BRIDGE" nodad
  ip addr add "$POD_V4_GW/26" dev "$POD_BRIDGE"
  ip addr add "$POD_V6_GW/64" dev "$POD_BRIDGE" nodad
  ip link set "$NODE_BRIDGE" up
  ip link set "$POD_BRIDGE" up

  remove_chains
  local cmd
  for cmd in iptables ip6tables; do
    ipt "$cmd" -t nat -N "$CHAIN"
    ipt "$cmd" -t nat -I PREROUTING -i "$POD_BRIDGE" -j "$CHAIN"
    ipt "$cmd" -t filter -N "$CHAIN"
    # Pods talk to each other, the node and the API server; nothing leaves the node even
    # where host forwarding is on.
    ipt "$cmd" -t filter -A "$CHAIN" -o "$POD_BRIDGE" -j ACCEPT
    ipt "$cmd" -t filter -A "$CHAIN" -j DROP
    ipt "$cmd" -t filter -I FORWARD -i "$POD_BRIDGE" -j "$CHAIN"
  done
  # The host never sends to or from our ranges through its uplinks: an address of ours that is
  # on no link (the advertise address, a node already gone) is dropped here, not routed away.
  local uplink range
  for cmd in iptables ip6tables; do ipt "$cmd" -t filter -N "$CHAIN-UPLINK"; done
  for uplink in $(uplink_devices); do
    for range in "${HOST_V4_RANGES[@]}"; do
      ipt iptables -t filter -A "$CHAIN-UPLINK" -o "$uplink" -d "$range" -j DROP
      ipt iptables -t filter -A "$CHAIN-UPLINK" -o "$uplink" -s "$range" -j DROP
    done
    for range in "${HOST_V6_RANGES[@]}"; do
      ipt ip6tables -t filter -A "$CHAIN-UPLINK" -o "$uplink" -d "$range" -j DROP
      ipt ip6tables -t filter -A "$CHAIN-UPLINK" -o "$uplink" -s "$range" -j DROP
    done
  done
  for cmd in iptables ip6tables; do ipt "$cmd" -t filter -I OUTPUT -j "$CHAIN-UPLINK"; done
  # kube-proxy's job for the one Service pods need: the API server's ClusterIP.
  ipt iptables -t nat -A "$CHAIN" -d "$KUBERNETES_SERVICE_IP" -p tcp --dport 443 -j DNAT --to-destination "127.0.0.1:$api_port"
}

# --- traces ----------------------------------------------------------------------------
# Everything `up` may have left on the host for the current slot, processes included, whichever
# runtime ran (each part finds nothing of the other's).
remove_host_traces() {
  local dir pid
  stop_process kubelet
  # CRI-O's conmons sit in the pods' cgroups (monitor_cgroup = pod): they go with the pods.
  kill_pods
  for pid in $(shim_pids); do kill -KILL "$pid" 2>/dev/null || true; done
  stop_process containerd
  stop_process crio
  # Shim sockets live under containerd's fixed /run/containerd/s, named by a hash of
  # our socket, the namespace and the task id.
  local tasks="$NODE_DIR/containerd/state/io.containerd.runtime.v2.task" ns id hash
  if [[ -d "$tasks" ]]; then
    for dir in "$tasks"/*/*/; do
      [[ -d "$dir" ]] || continue
      id=$(basename "$dir")
      ns=$(basename "$(dirname "$dir")")
      hash=$(printf '%s' "$NODE_DIR/containerd/containerd.sock/$ns/$id" | sha256sum | cut -d' ' -f1)
      rm -f "/run/containerd/s/$hash"
    done
  fi
  rmdir /run/containerd/s /run/containerd 2>/dev/null || true
  [[ -d "$NODE_DIR" ]] && { unmount_under "$NODE_DIR" || true; }
  kill_pods
  # Pod cgroups, deepest first, in every hierarchy.
  while read -r dir; do
    find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [[ -d "$dir" ]] && log "could not remove the cgroup $dir"
  done < <(cgroup_dirs)
  local port ranges=("$NODE_V4/32" "$NODE_V6/128" "$POD_V4_CIDR" "$POD_V6_CIDR")
  close_connections_to "${ranges[@]}"
  for port in $(ip -o link show master "$POD_BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 || true); do
    ip link del "$port" 2>/dev/null || true
  done
  ip link del "$NODE_BRIDGE" 2>/dev/null || true
  ip link del "$POD_BRIDGE" 2>/dev/null || true
  close_connections_to "${ranges[@]}"
  remove_chains
  # libcni caches each sandbox's results here, for our network and containerd's loopback one.
  rm -f /var/lib/cni/results/"$CNI_NETWORK"-*
  # CRI-O's sandboxes are containers in its storage, under the same ids.
  for dir in "$NODE_DIR"/containerd/{root,state}/io.containerd.grpc.v1.cri/sandboxes/*/ "$NODE_DIR"/crio/root/overlay-containers/*/; do
    [[ -d "$dir" ]] && rm -f "/var/lib/cni/results/cni-loopback-$(basename "$dir")-lo"
  done
  rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null || true
  if [[ -d /var/log/containers ]]; then
    find /var/log/containers -maxdepth 1 -type l -lname "$NODE_DIR/*" -delete 2>/dev/null || true
    rmdir /var/log/containers 2>/dev/null || true
  fi
}

# --- pause image -------------------------------------------------------------------------
# An OCI image-layout tar holding one static binary; cached by the hash of its source.
build_pause_image() {
  local src="$HACK_DIR/pause/pause.c" key dir work
  key=$(cat "$src" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)
  dir="$CACHE_ROOT/images"
  PAUSE_TAR="$dir/pause-$key.tar"
  [[ -f "$PAUSE_TAR" ]] && return 0
  mkdir -p "$dir"
  work=$(mktemp -d)
  (
    set -e
    cd "$work"
    mkdir -p rootfs blobs/sha256
    cc -static -Os -s -o rootfs/pause "$src"
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C rootfs -cf layer.tar pause
    blob() { local d; d=$(sha256sum "$1" | cut -d' ' -f1); mv "$1" "blobs/sha256/$d"; echo "$d"; }
    local layer layer_size config config_size manifest manifest_size arch
    layer_size=$(stat -c %s layer.tar)
    layer=$(blob layer.tar)
    arch=$(uname -m)
    case $arch in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; esac
    printf '{"architecture":"%s","os":"linux","config":{"Entrypoint":["/pause"],"User":"65535:65535"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
      "$arch" "$layer" >config.json
    config_size=$(stat -c %s config.json)
    config=$(blob config.json)
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
      "$config" "$config_size" "$layer" "$layer_size" >manifest.json
    manifest_size=$(stat -c %s manifest.json)
    manifest=$(blob manifest.json)
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"dev"}}]}' \
      "$manifest" "$manifest_size" "$arch" "$PAUSE_IMAGE" >index.json
    echo '{"imageLayoutVersion":"1.0.0"}' >oci-layout
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf image.tar oci-layout index.json blobs
  ) || { rm -rf "$work"; die "building the pause image failed"; }
  mv "$work/image.tar" "$PAUSE_TAR"
  rm -rf "$work"
}

# --- certificates and configs --------------------------------------------------------
# Where the runtime's socket and its pods' network namespaces are.
runtime_vars() {
  if [[ $1 == cri-o ]]; then
    CRI_SOCKET="$CRIO_DIR/crio.sock"
    NETNS_DIR="$CRIO_DIR/run/ns/netns"
  else
    CRI_SOCKET="$NODE_DIR/containerd/containerd.sock"
    NETNS_DIR="$NODE_DIR/containerd/state/io.containerd.grpc.v1.cri/netns"
  fi
}
CRIO_DIR="$NODE_DIR/crio"

write_containerd_config() {
  local c="$NODE_DIR/containerd"
  mkdir -p "$c/root" "$c/state" "$c/opt"
  # restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE, and runc fails every sandbox
  # when it tries to lower a score. hugetlb is not mounted on every machine.
  cat >"$c/config.toml" <<EOF
version = 2
root = "$c/root"
state = "$c/state"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "$c/containerd.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "$c/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  disable_hugetlb_controller = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$c/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$NODE_DIR/cni/net.d"
EOF
}

# CRI-O with everything of its own under $CRIO_DIR: persistent state (image storage, the
# persistent version and clean-shutdown files) in it, and what a reboot wipes (c/storage's run
# dir, the pinned namespaces, conmon's exit files and attach sockets, the runc root) in its run/.
# It reads no host config: its own config dir, storage.conf and registries.conf (the
# CONTAINERS_* variables start_crio sets), its own signature policy. Off what would touch the
# host: NRI's socket, hostport iptables chains, irqbalance files, metrics, CRIU. runc runs
# through hack/crio-runc.sh, which does what containerd's restrict_oom_score_adj and
# disable_hugetlb_controller do (CRI-O has neither).
write_crio_config() {
  local r=$CRIO_DIR
  mkdir -p "$r/root" "$r/run" "$r/crio.conf.d" "$r/hooks.d" "$r/cdi" "$r/policies" "$r/keys"
  cat >"$r/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$r/root"
runroot = "$r/run/storage"
EOF
  echo 'unqualified-search-registries = []' >"$r/registries.conf"
  echo '{"default": [{"type": "insecureAcceptAnything"}]}' >"$r/policy.json"
  cat >"$r/crio.conf" <<EOF
[crio]
root = "$r/root"
runroot = "$r/run/storage"
storage_driver = "overlay"
log_dir = "$r/run/pod-logs"
version_file = "$r/run/version"
version_file_persist = "$r/version"
clean_shutdown_file = "$r/clean.shutdown"

[crio.api]
listen = "$CRI_SOCKET"
stream_address = "127.0.0.1"
stream_port = "0"

[crio.runtime]
default_runtime = "runc"
cgroup_manager = "cgroupfs"
selinux = false
log_to_journald = false
hooks_dir = ["$r/hooks.d"]
cdi_spec_dirs = ["$r/cdi"]
container_exits_dir = "$r/run/exits"
container_attach_socket_dir = "$r/run"
namespaces_dir = "$r/run/ns"
pinns_path = "$CRIO_BIN_DIR/pinns"
decryption_keys_path = "$r/keys"
drop_infra_ctr = true
enable_criu_support = false
disable_hostport_mapping = true
irqbalance_config_file = "$r/irqbalance"
irqbalance_config_restore_file = "disable"

[crio.runtime.runtimes.runc]
runtime_path = "$HACK_DIR/crio-runc.sh"
runtime_type = "oci"
runtime_root = "$r/run/runc"
monitor_path = "$(command -v conmon)"
monitor_cgroup = "pod"

[crio.image]
pause_image = "$PAUSE_IMAGE"
pause_command = "/pause"
signature_policy = "$r/policy.json"
signature_policy_dir = "$r/policies"
big_files_temporary_dir = "$r/run"

[crio.network]
network_dir = "$NODE_DIR/cni/net.d"
plugin_dirs = ["$CNI_BIN_DIR"]

[crio.metrics]
enable_metrics = false

[crio.nri]
enable_nri = false
EOF
}

write_configs() {
  local k="$NODE_DIR/kubelet"
  mkdir -p "$NODE_DIR/cni/net.d" "$NODE_DIR/cni/ipam" "$k/root" "$k/volume-plugins" "$k/pod-logs"
  if [[ $RUNTIME == cri-o ]]; then write_crio_config; else write_containerd_config; fi
  # isGateway false: the plugin would otherwise turn on host forwarding. The routes give
  # pods a default route via the gateway on the bridge.
  cat >"$NODE_DIR/cni/net.d/10-$CNI_NETWORK.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$POD_BRIDGE",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$NODE_DIR/cni/ipam",
        "ranges": [[{ "subnet": "$POD_V4_CIDR", "gateway": "$POD_V4_GW" }], [{ "subnet": "$POD_V6_CIDR", "gateway": "$POD_V6_GW" }]],
        "routes": [{ "dst": "0.0.0.0/0", "gw": "$POD_V4_GW" }, { "dst": "::/0", "gw": "$POD_V6_GW" }]
      }
    }
  ]
}
EOF
  # oomScoreAdj 0 for the same reason as restrict_oom_score_adj; cgroupRoot keeps this
  # node's pod cgroups apart from any other kubelet-shaped tree on the host.
  kubelet_config "$NODE_V4" "$PKI/ca.crt" "$NODE_DIR/pki/kubelet.crt" "$NODE_DIR/pki/kubelet.key" "unix://$CRI_SOCKET" cgroupfs \
    "cgroupRoot: /$CGROUP_ROOT
failCgroupV1: false
makeIPTablesUtilChains: false
oomScoreAdj: 0
volumePluginDir: $k/volume-plugins
podLogsDir: $k/pod-logs" >"$k/config.yaml"
  kubelet_kubeconfig "$APISERVER_URL" "$PKI/ca.crt" "$NODE_DIR/pki/kubelet-client.crt" "$NODE_DIR/pki/kubelet-client.key" >"$k/kubeconfig"
  chmod 600 "$k/kubeconfig"
}

# The pod cgroup root must exist in every hierarchy before the kubelet starts; cpuset
# children start empty in cgroup v1, so copy the parent's cpus and mems.
make_cgroup_root() {
  local hierarchy dir
  for hierarchy in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    [[ -f "${hierarchy}cgroup.procs" ]] || continue
    dir="$hierarchy$CGROUP_ROOT"
    mkdir -p "$dir"
    if [[ -f "$dir/cpuset.cpus" && -z "$(<"$dir/cpuset.cpus")" ]]; then
      cat "${hierarchy}cpuset.cpus" >"$dir/cpuset.cpus"
      cat "${hierarchy}cpuset.mems" >"$dir/cpuset.mems"
    fi
  done
}

# --- start -----------------------------------------------------------------------------
# Ready means its CRI answers, not only its socket: the kubelet exits at start when the CRI's
# Version call fails ("server is not initialized yet").
start_runtime() {
  local name
  name=$(runtime_process "$RUNTIME")
  if [[ $RUNTIME == cri-o ]]; then
    launch crio env CONTAINERS_STORAGE_CONF="$CRIO_DIR/storage.conf" CONTAINERS_REGISTRIES_CONF="$CRIO_DIR/registries.conf" \
      "$CRIO_BIN_DIR/crio" --config "$CRIO_DIR/crio.conf" --config-dir "$CRIO_DIR/crio.conf.d"
  else
    launch containerd containerd --config "$NODE_DIR/containerd/config.toml"
  fi
  local i
  for ((i = 0; i < 200; i++)); do
    "$BIN_DIR/crictl" --runtime-endpoint "unix://$CRI_SOCKET" --timeout 2s version >/dev/null 2>&1 && return 0
    recorded_pid "$name" >/dev/null || { tail -n 20 "$LOG_DIR/$name.log" >&2; die "$name exited during startup"; }
    sleep 0.1
  done
  die "$name's CRI did not answer within 20 s; see $LOG_DIR/$name.log"
}

# The runtime's own build, for CRI-O (cached after the first).
runtime_binaries() {
  if [[ $RUNTIME == cri-o ]]; then CRIO_BIN_DIR=$(bash "$HACK_DIR/build-crio.sh"); fi
}

# Also records when it started: the Node object keeps the previous kubelet's Ready=True
# until its lease expires, so only a heartbeat after this counts (see wait_node_ready).
start_kubelet() {
  KUBELET_STARTED=$(date +%s)
  launch kubelet "$BIN_DIR/kubelet" \
    --config="$NODE_DIR/kubelet/config.yaml" \
    --kubeconfig="$NODE_DIR/kubelet/kubeconfig" \
    --root-dir="$NODE_DIR/kubelet/root" \
    --hostname-override="$NODE_NAME" \
    --node-ip="$NODE_V4,$NODE_V6" \
    --v=1
}

kubectl_() { "$BIN_DIR/kubectl" --kubeconfig="$ADMIN_KUBECONFIG" "$@"; }

# Ready=True posted by the running kubelet: a heartbeat not older than its start (any, for
# a kubelet this run did not start), and that kubelet still alive once it is seen.
wait_node_ready() {
  local since=${KUBELET_STARTED:-0} i status beat
  for ((i = 0; i < 600; i++)); do
    read -r status beat < <(kubectl_ get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}' 2>/dev/null || true) || true
    recorded_pid kubelet >/dev/null || { tail -n 20 "$LOG_DIR/kubelet.log" >&2; die "the kubelet exited during startup"; }
    if [[ "$status" == True && -n "$beat" ]] && (($(date -d "$beat" +%s) >= since)); then return 0; fi
    sleep 0.1
  done
  die "node $NODE_NAME not Ready (a heartbeat since the kubelet started) after 60 s; see $LOG_DIR/kubelet.log"
}

# Where images go: CONTAINERD_ADDRESS (with its namespace) or CRIO_STORAGE_CONF, as
# hack/lib/node-images.sh reads them.
write_node_env() {
  {
    if [[ $RUNTIME == cri-o ]]; then
      printf 'CRIO_STORAGE_CONF=%s\n' "$CRIO_DIR/storage.conf"
    else
      printf 'CONTAINERD_ADDRESS=%s\nCONTAINERD_NAMESPACE=k8s.io\n' "$CRI_SOCKET"
    fi
    printf 'RUNTIME=%s\nCRI_ENDPOINT=unix://%s\nNETNS_DIR=%s\n' "$RUNTIME" "$CRI_SOCKET" "$NETNS_DIR"
    printf 'NODE_NAME=%s\nNODE_IPS=%s,%s\nPOD_CIDRS=%s,%s\nNODE_SLOT=%s\n' "$NODE_NAME" "$NODE_V4" "$NODE_V6" "$POD_V4_CIDR" "$POD_V6_CIDR" "$SLOT"
  } >"$NODE_DIR/node.env"
}

cmd_up() {
  : "${BIN_DIR:?}" "${PKI:?}" "${APISERVER_URL:?}" "${ADMIN_KUBECONFIG:?}"
  [[ -x "$BIN_DIR/kubelet" && -x "$BIN_DIR/crictl" ]] || die "no kubelet or crictl in $BIN_DIR (hack/build-k8s-binaries.sh builds both)"
  lock_slots
  SLOT=$(claim_slot)
  slot_vars "$SLOT"
  load_runtime
  if recorded_pid kubelet >/dev/null && recorded_pid "$(runtime_process "$RUNTIME")" >/dev/null && [[ -f "$NODE_DIR/node.env" ]]; then
    flock -u 8
    [[ -z "${PNC_NODE_RUNTIME:-}" || "$PNC_NODE_RUNTIME" == "$RUNTIME" ]] ||
      die "the node in $STATE_DIR runs $RUNTIME, not $PNC_NODE_RUNTIME: stop it first with hack/local-cluster.sh down"
    wait_node_ready
    log "reusing node $NODE_NAME (slot $SLOT, $RUNTIME)"
    return 0
  fi
  local start=$SECONDS
  # Leftovers of a crash of this node: start from nothing, with the runtime asked for now.
  remove_host_traces
  rm -f "$NODE_DIR/node.env" "$NODE_DIR/runtime"
  load_runtime
  echo "$RUNTIME" >"$NODE_DIR/runtime"
  runtime_vars "$RUNTIME"
  record_host_state
  flock -u 8
  trap 'on_failed_start' EXIT
  runtime_binaries
  build_pause_image
  setup_network
  make_cgroup_root
  make_node_pki "$NODE_DIR/pki" "$PKI" "$NODE_NAME" "$NODE_V4" "$NODE_V6"
  write_configs
  # CRI-O takes its pause image from its storage before it starts; containerd through its API.
  if [[ $RUNTIME == cri-o ]]; then CRIO_STORAGE_CONF="$CRIO_DIR/storage.conf" import_oci_archive "$PAUSE_TAR" "$PAUSE_IMAGE"; fi
  start_runtime
  if [[ $RUNTIME == containerd ]]; then CONTAINERD_ADDRESS=$CRI_SOCKET import_oci_archive "$PAUSE_TAR" "$PAUSE_IMAGE"; fi
  start_kubelet
  wait_node_ready
  trap - EXIT
  write_node_env
  log "node $NODE_NAME Ready in $((SECONDS - start)) s (slot $SLOT, pods $POD_V4_CIDR $POD_V6_CIDR, $RUNTIME $CRI_SOCKET)"
}

# Nothing half-started stays behind: the node goes, its logs stay in the cluster's log dir.
on_failed_start() {
  log "node start failed: removing what was started (logs in $LOG_DIR)"
  cmd_down
}

cmd_down() {
  [[ -f "$NODE_DIR/slot" ]] || { remove_tree "$NODE_DIR"; return; }
  lock_slots
  SLOT=$(<"$NODE_DIR/slot")
  slot_vars "$SLOT"
  remove_host_traces
  if [[ "$(cat "$NODES_DIR/slot-$SLOT" 2>/dev/null)" == "$STATE_DIR" ]]; then rm -f "$NODES_DIR/slot-$SLOT"; fi
  restore_host_state
  remove_tree "$NODE_DIR"
  log "node removed (slot $SLOT)"
}

# A node reboot as pods see it: every sandbox dies, the runtime and the kubelet start again.
cmd_reboot() {
  : "${BIN_DIR:?}" "${ADMIN_KUBECONFIG:?}"
  [[ -f "$NODE_DIR/slot" ]] || die "no node in $STATE_DIR"
  SLOT=$(<"$NODE_DIR/slot")
  slot_vars "$SLOT"
  load_runtime
  runtime_vars "$RUNTIME"
  runtime_binaries
  local pid
  stop_process kubelet
  kill_pods
  for pid in $(shim_pids); do kill -KILL "$pid" 2>/dev/null || true; done
  # CRI-O gets time to write its clean-shutdown file, as on a real reboot: killed, it would check
  # (and may repair) its storage at the next start, as after a crash.
  if [[ $RUNTIME == cri-o ]]; then stop_recorded crio 100; else stop_process containerd; fi
  # What a reboot drops: the sandboxes' network namespaces, containers' root filesystems,
  # volume tmpfs mounts, and CRI-O's run dir (its /run: with the version file gone, CRI-O
  # wipes the old containers as after a real reboot). The kubelet and the runtime set them up again.
  unmount_under "$NODE_DIR"
  if [[ $RUNTIME == cri-o ]]; then rm -rf "$CRIO_DIR/run"; fi
  start_runtime
  start_kubelet
  wait_node_ready
  log "node $NODE_NAME rebooted"
}

case ${1:-} in
  check) cmd_check ;;
  up) cmd_up ;;
  down) cmd_down ;;
  reboot) cmd_reboot ;;
  # The sandbox image's OCI archive and name, for the VM node (hack/vm-node.sh).
  pause-image) build_pause_image; printf '%s %s\n' "$PAUSE_TAR" "$PAUSE_IMAGE" ;;
  # Internal: claim_slot's takeover of another state dir's slot (it holds the slots lock).
  remove-traces) slot_vars "$2"; remove_host_traces; remove_tree "$NODE_DIR" ;;
  *) sed -n '2,13s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
