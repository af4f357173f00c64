#!/usr/bin/env bash
# A second, real node of the shape most clusters run, in a QEMU guest: Debian with systemd as
# PID 1, cgroup v2 only, containerd with SystemdCgroup = true and the kubelet with
# cgroupDriver: systemd. Called by `hack/local-cluster.sh up --with-vm-node` / `down`, which
# export STATE_DIR, BIN_DIR, PKI, APISERVER_PORT and ADMIN_KUBECONFIG; not meant to be run by hand.
#
#   vm-node.sh up     boot the guest (or reuse a running one); waits until its node is Ready
#   vm-node.sh down   stop it and remove its host traces
#
# The guest image comes from hack/vm-image.sh (cached); its root disk is used copy-on-write, so
# every boot starts from the image. What makes it this cluster's node (the kubelet and crictl
# of BIN_DIR, its certificates, the containerd, kubelet and CNI configs, the sandbox image and
# the product's images) is laid on a second, read-only disk that the guest applies at boot.
#
# /dev/kvm on our machines runs only PVM guest kernels, so the guest runs under TCG (software
# emulation, about 27x slower): PNC_VM_ACCEL=kvm where KVM runs stock kernels.
#
# Network (hack/lib/host-network.sh): a tap on the bridge pncv0, which holds the host's address
# of an IPv6-only /64; the guest has the other, no default route, and nothing is forwarded to or
# from the bridge. The API server listens on 127.0.0.1 only: a relay on the bridge address
# passes the guest's connections through (TLS untouched; the serving certificate names that
# address). The guest's pods reach the `kubernetes` Service through a relay in the guest, on
# the Service's ClusterIP itself.
#
# Host footprint, all undone by `down`: the bridge and the tap, the ip(6)tables chain PNC-VM
# in filter, the qemu and relay processes; everything else lives in $STATE_DIR/vm-node.
set -Eeuo pipefail
trap 'echo "vm-node: failed (line $LINENO): $BASH_COMMAND" >&2' ERR

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${STATE_DIR:?is set by hack/local-cluster.sh, which runs this script: use that}"
VM_DIR="$STATE_DIR/vm-node"
LOG_DIR="$STATE_DIR/logs"
PID_DIR=$VM_DIR
NODE_NAME=pnc-vm-node
CHAIN=PNC-VM
VM_MAC=52:54:00:ad:20:02
VM_MEMORY=2048
VM_CPUS=2
VM_ACCEL=${PNC_VM_ACCEL:-tcg}
# Boot to Ready under software emulation on a loaded 2-core machine.
READY_TIMEOUT=900

log() { echo "vm-node: $*" >&2; }
die() { log "$*"; exit 1; }

# shellcheck source=hack/lib/host-network.sh
source "$HACK_DIR/lib/host-network.sh"
# shellcheck source=hack/lib/node-pki.sh
source "$HACK_DIR/lib/node-pki.sh"
# shellcheck source=hack/lib/kubelet-config.sh
source "$HACK_DIR/lib/kubelet-config.sh"
# shellcheck source=hack/lib/procs.sh
source "$HACK_DIR/lib/procs.sh"

ipt() { "$1" -w 5 "${@:2}"; }

kubectl_() { "$BIN_DIR/kubectl" --kubeconfig="$ADMIN_KUBECONFIG" "$@"; }

# --- host network ------------------------------------------------------------------------
# Only what this node made: the bridge may be another cluster's VM node.
remove_network() {
  [[ -f "$VM_DIR/network" ]] || return 0
  local cmd
  for cmd in iptables ip6tables; do
    while ipt "$cmd" -t filter -D FORWARD -j "$CHAIN" 2>/dev/null; do :; done
    ipt "$cmd" -t filter -F "$CHAIN" 2>/dev/null || true
    ipt "$cmd" -t filter -X "$CHAIN" 2>/dev/null || true
  done
  ip link del "$VM_TAP" 2>/dev/null || true
  ip link del "$VM_BRIDGE" 2>/dev/null || true
}

setup_network() {
  ip link show "$VM_BRIDGE" >/dev/null 2>&1 &&
    die "$VM_BRIDGE exists: another VM node runs on this machine (one at a time); stop it with its hack/local-cluster.sh down"
  ip link add "$VM_BRIDGE" type bridge
  touch "$VM_DIR/network"
  echo 0 >"/proc/sys/net/ipv6/conf/$VM_BRIDGE/disable_ipv6"
  # No router advertisements and no autoconfiguration: the guest's only route is the link.
  echo 0 >"/proc/sys/net/ipv6/conf/$VM_BRIDGE/accept_ra"
  ip addr add "$VM_HOST_V6/64" dev "$VM_BRIDGE" nodad
  ip tuntap add dev "$VM_TAP" mode tap
  ip link set "$VM_TAP" master "$VM_BRIDGE"
  ip link set "$VM_TAP" up
  ip link set "$VM_BRIDGE" up
  local cmd
  for cmd in iptables ip6tables; do
    ipt "$cmd" -t filter -N "$CHAIN"
    # The guest talks to this host and nothing else, even where host forwarding is on.
    ipt "$cmd" -t filter -A "$CHAIN" -i "$VM_BRIDGE" -j DROP
    ipt "$cmd" -t filter -A "$CHAIN" -o "$VM_BRIDGE" -j DROP
    ipt "$cmd" -t filter -I FORWARD -j "$CHAIN"
  done
}

# The API server listens on 127.0.0.1; the guest dials the bridge address. exec -a puts this
# node's dir in the relay's command line, which is how recorded_pid knows the process is ours.
start_relay() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  launch apiserver-relay bash -c 'exec -a "$0" socat "$@"' "$VM_DIR/apiserver-relay" \
    "TCP6-LISTEN:$APISERVER_PORT,bind=[$VM_HOST_V6],fork,reuseaddr" "TCP4:127.0.0.1:$APISERVER_PORT"
}

# --- the node disk -------------------------------------------------------------------------
# The product's images as OCI archives (hack/build-images.sh --export), and the sandbox image.
collect_images() {
  local dir=$1 pause
  mkdir -p "$dir"
  read -r pause PAUSE_IMAGE < <(bash "$HACK_DIR/local-node.sh" pause-image)
  cp "$pause" "$dir/pause.tar"
  bash "$HACK_DIR/build-images.sh" --export "$dir" >/dev/null
}

write_node_disk() {
  local d="$VM_DIR/disk" size
  rm -rf "$d"
  mkdir -p "$d/bin" "$d/pki"
  cp "$BIN_DIR/kubelet" "$BIN_DIR/crictl" "$d/bin/"
  make_node_pki "$VM_DIR/pki" "$PKI" "$NODE_NAME" "$VM_GUEST_V6"
  cp "$VM_DIR/pki/"kubelet* "$PKI/ca.crt" "$d/pki/"
  collect_images "$d/images"
  cat >"$d/node.env" <<EOF
NODE_NAME=$NODE_NAME
GUEST_V6=$VM_GUEST_V6
HOST_V6=$VM_HOST_V6
APISERVER_PORT=$APISERVER_PORT
KUBERNETES_SERVICE_IP=$KUBERNETES_SERVICE_IP
EOF
  cat >"$d/containerd.toml" <<EOF
version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
EOF
  # As on the lab node: isGateway false (the plugin would turn on forwarding), the gateways on
  # the bridge, a default route via them (else off-pod connections fail before OUTPUT).
  local v4_gw v6_gw
  v4_gw=$(cut -d/ -f1 <<<"$VM_POD_V4_CIDR" | awk -F. '{printf "%s.%s.%s.%d", $1, $2, $3, $4 + 1}')
  v6_gw="${VM_POD_V6_CIDR%%/*}1"
  cat >"$d/10-pnc-vm.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "pnc-vm",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$VM_POD_V4_CIDR", "gateway": "$v4_gw" }], [{ "subnet": "$VM_POD_V6_CIDR", "gateway": "$v6_gw" }]],
        "routes": [{ "dst": "0.0.0.0/0", "gw": "$v4_gw" }, { "dst": "::/0", "gw": "$v6_gw" }]
      }
    }
  ]
}
EOF
  printf 'POD_V4_GW=%s/%s\nPOD_V6_GW=%s/%s\n' "$v4_gw" "${VM_POD_V4_CIDR#*/}" "$v6_gw" "${VM_POD_V6_CIDR#*/}" >>"$d/node.env"
  # The shape under test: the systemd driver on cgroup v2.
  kubelet_config "$VM_GUEST_V6" /etc/kubernetes/pki/ca.crt /etc/kubernetes/pki/kubelet.crt /etc/kubernetes/pki/kubelet.key \
    unix:///run/containerd/containerd.sock systemd >"$d/kubelet.yaml"
  kubelet_kubeconfig "https://[$VM_HOST_V6]:$APISERVER_PORT" /etc/kubernetes/pki/ca.crt \
    /etc/kubernetes/pki/kubelet-client.crt /etc/kubernetes/pki/kubelet-client.key >"$d/kubelet.kubeconfig"
  cp "$HACK_DIR/vm/setup.sh" "$d/setup.sh"
  size=$(($(du -sm "$d" | cut -f1) * 11 / 10 + 32))
  rm -f "$VM_DIR/node.img"
  truncate -s "${size}M" "$VM_DIR/node.img"
  mkfs.ext4 -q -F -L pnc-node -d "$d" "$VM_DIR/node.img"
  rm -rf "$d"
}

# --- the guest -------------------------------------------------------------------------------
start_qemu() {
  local image=$1
  # snapshot=on: the guest writes to a temporary overlay, the cached image stays as built.
  launch qemu qemu-system-x86_64 -name "$NODE_NAME" -nodefaults -no-user-config \
    -accel "$VM_ACCEL" -cpu max -smp "$VM_CPUS" -m "$VM_MEMORY" \
    -display none -vga none -monitor none \
    -chardev "socket,id=console,path=$VM_DIR/console.sock,server=on,wait=off,logfile=$LOG_DIR/vm-console.log" \
    -serial chardev:console \
    -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1 panic=-1" \
    -drive "file=$image/disk.img,format=raw,if=virtio,snapshot=on" \
    -drive "file=$VM_DIR/node.img,format=raw,if=virtio,readonly=on" \
    -netdev "tap,id=net0,ifname=$VM_TAP,script=no,downscript=no" \
    -device "virtio-net-pci,netdev=net0,mac=$VM_MAC" \
    -no-reboot
}

wait_node_ready() {
  local start=$SECONDS status
  while ((SECONDS - start < READY_TIMEOUT)); do
    status=$(kubectl_ get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
    [[ "$status" == True ]] && return 0
    if ! recorded_pid qemu >/dev/null; then
      tail -n 30 "$LOG_DIR/vm-console.log" "$LOG_DIR/qemu.log" >&2 2>/dev/null || true
      die "the guest stopped during startup (console: $LOG_DIR/vm-console.log)"
    fi
    sleep 2
  done
  tail -n 30 "$LOG_DIR/vm-console.log" >&2 2>/dev/null || true
  die "node $NODE_NAME not Ready after $READY_TIMEOUT s (console: $LOG_DIR/vm-console.log)"
}

cmd_up() {
  : "${BIN_DIR:?}" "${PKI:?}" "${APISERVER_PORT:?}" "${ADMIN_KUBECONFIG:?}"
  [[ -x "$BIN_DIR/kubelet" && -x "$BIN_DIR/crictl" ]] || die "no kubelet or crictl in $BIN_DIR (hack/build-k8s-binaries.sh builds both)"
  mkdir -p "$VM_DIR" "$LOG_DIR"
  if recorded_pid qemu >/dev/null && recorded_pid apiserver-relay >/dev/null && [[ -f "$VM_DIR/node.env" ]]; then
    wait_node_ready
    log "reusing node $NODE_NAME"
    return 0
  fi
  bash "$HACK_DIR/install-deps.sh"
  local start=$SECONDS image t
  image=$(bash "$HACK_DIR/vm-image.sh")
  log "guest image ready in $((SECONDS - start)) s"
  cmd_down
  mkdir -p "$VM_DIR"
  trap 'log "start failed: removing what was started (logs in $LOG_DIR)"; cmd_down' EXIT
  t=$SECONDS
  write_node_disk
  log "node disk written in $((SECONDS - t)) s"
  setup_network
  start_relay
  t=$SECONDS
  start_qemu "$image"
  wait_node_ready
  trap - EXIT
  printf 'NODE_NAME=%s\nNODE_IPS=%s\nPOD_CIDRS=%s,%s\nCONSOLE=%s\n' \
    "$NODE_NAME" "$VM_GUEST_V6" "$VM_POD_V4_CIDR" "$VM_POD_V6_CIDR" "$VM_DIR/console.sock" >"$VM_DIR/node.env"
  log "node $NODE_NAME Ready in $((SECONDS - t)) s after boot ($((SECONDS - start)) s in all; console $LOG_DIR/vm-console.log, serial shell: socat - UNIX-CONNECT:$VM_DIR/console.sock)"
}

# The relay and its connections go first, while the guest still answers on its link.
cmd_down() {
  stop_recorded apiserver-relay 10 group
  close_connections_to "$VM_GUEST_V6/128"
  stop_recorded qemu 50
  remove_network
  close_connections_to "$VM_GUEST_V6/128"
  [[ -d "$VM_DIR" ]] && rm -rf "$VM_DIR"
  return 0
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  *) sed -n '2,9s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
