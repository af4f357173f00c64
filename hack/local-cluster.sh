#!/usr/bin/env bash
# A real local control plane (etcd + kube-apiserver, optionally kube-controller-manager)
# run straight from the binaries, envtest style: no Docker, no images; optionally one real node.
#
#   hack/local-cluster.sh up [--with-controller-manager|--with-node [--runtime containerd|cri-o]] [--with-vm-node] [--openshift]
#                                       start, or reuse a running one; prints the kubeconfig path
#   hack/local-cluster.sh down          stop what `up` started (recorded pids only), remove the state dir and the node's host traces
#   hack/local-cluster.sh env           print `export KUBECONFIG=...` (PATH when kubectl is too old; with a node crictl's
#                                       endpoint and where images go: CONTAINERD_ADDRESS or CRIO_STORAGE_CONF)
#   hack/local-cluster.sh status        exit 0 when running and ready
#   hack/local-cluster.sh node-reboot   kill every pod sandbox, restart the runtime and the kubelet
#   hack/local-cluster.sh deploy        build the images, import them into the node, apply the manifests (hack/deploy-local.sh)
#
# State lives outside the repo in ${PNC_CLUSTER_DIR:-/tmp/pod-network-controller-cluster}.
# PNC_KUBERNETES_VERSION (e.g. v1.35.4) picks the release, newest supported by default
# (hack/build-k8s-binaries.sh builds and caches each once).
# `--with-controller-manager` (or PNC_CLUSTER_KCM=1) adds the serviceaccount, namespace and
# garbagecollector controllers, so namespaces finish deleting and `default` ServiceAccounts appear.
# `--with-node` (or PNC_CLUSTER_NODE=1) adds what workloads need (kube-scheduler; the workload,
# token, root-CA, node-lifecycle controllers) and one real node: kubelet + containerd
# (hack/local-node.sh). Needs root and Debian's containerd, runc and containernetworking-plugins.
# `--runtime cri-o` (or PNC_NODE_RUNTIME=cri-o) runs CRI-O instead of containerd: built by
# hack/build-crio.sh, with Debian's conmon, runc and skopeo.
# `--with-vm-node` (or PNC_CLUSTER_VM_NODE=1) adds what workloads need and a node of the shape
# most clusters run, in a QEMU guest: systemd, cgroup v2, containerd and the kubelet with the
# systemd cgroup driver (hack/vm-node.sh; minutes: the guest runs under software emulation).
# With --with-node too, the cluster has two nodes.
# `--openshift` (or PNC_CLUSTER_OPENSHIFT=1) adds OpenShift's SecurityContextConstraints admission:
# the SCC CRD, OpenShift's default SCCs and their RBAC, and its admission plugin served as
# webhooks by hack/openshift/cmd/scc-admission, which also gives each namespace its UID range.
set -euo pipefail

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE_DIR=${PNC_CLUSTER_DIR:-/tmp/pod-network-controller-cluster}
# The lock sits beside the state dir, so `down` can remove the dir while holding it. The lock
# file itself is never removed: a waiter would then hold a lock on a deleted file while a
# newcomer locks a fresh one, and both would run.
LOCK_FILE="$STATE_DIR.lock"
PKI="$STATE_DIR/pki"
KUBECONFIG_FILE="$STATE_DIR/kubeconfig"
CLUSTER_ENV="$STATE_DIR/cluster.env"
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler scc-admission)
KCM_CONTROLLERS=serviceaccount,namespace,garbagecollector
# What a node and its DaemonSets and Deployments need besides.
KCM_NODE_CONTROLLERS=$KCM_CONTROLLERS,serviceaccount-token,root-ca-cert-publisher,daemonset,replicaset,deployment,job,nodelifecycle,podgc,clusterrole-aggregation
MIN_KUBECTL_MINOR=30

log() { echo "local-cluster: $*" >&2; }
die() { log "$*"; exit 1; }

usage() {
  sed -n '2,30s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
}

PID_DIR=$STATE_DIR
LOG_DIR="$STATE_DIR/logs"
# shellcheck source=hack/lib/procs.sh
source "$HACK_DIR/lib/procs.sh"
# shellcheck source=hack/lib/mounts.sh
source "$HACK_DIR/lib/mounts.sh"
# The advertise address, the Service range and the node's ranges, off the machine's own networks.
# shellcheck source=hack/lib/host-network.sh
source "$HACK_DIR/lib/host-network.sh"

# Short grace: the state is thrown away anyway, and an apiserver drains for ~4 s on SIGTERM
# (far longer when its etcd died first).
stop_component() { stop_recorded "$1" 20; }

stop_all() {
  local i
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do stop_component "${COMPONENTS[i]}"; done
}

kubectl_bin() {
  if [[ -x "$BIN_DIR/kubectl" ]]; then echo "$BIN_DIR/kubectl"; else command -v kubectl; fi
}

is_ready() {
  [[ -f "$KUBECONFIG_FILE" ]] || return 1
  "$(kubectl_bin)" --kubeconfig="$KUBECONFIG_FILE" --request-timeout=2s get --raw=/readyz >/dev/null 2>&1
}

# A TCP port nobody listens on now. Races with other starters are caught by the health wait.
free_port() {
  local port used
  used=$(ss -Htan 2>/dev/null | awk '{print $4}' | sed 's/.*://' | sort -u)
  while :; do
    port=$((20000 + RANDOM % 30000))
    grep -qx "$port" <<<"$used" || { echo "$port"; return; }
  done
}

make_pki() {
  [[ -f "$PKI/complete" ]] && { make_kubelet_client_cert; return 0; }
  rm -rf "$PKI"
  mkdir -p "$PKI"
  (
    cd "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.crt \
      -subj "/CN=pod-network-controller-local-ca" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
    # The VM node's guest dials the host's address on its bridge (hack/vm-node.sh).
    printf 'subjectAltName=IP:127.0.0.1,IP:%s,IP:%s,IP:%s,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' \
      "$ADVERTISE_ADDRESS" "$KUBERNETES_SERVICE_IP" "$VM_HOST_V6" >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    # O=system:masters bypasses RBAC: tests that exercise RBAC use ServiceAccount tokens instead.
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=pnc-admin" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >admin.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile admin.ext -out admin.crt 2>/dev/null
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
    openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f ./*.csr ./*.ext
    chmod 600 ./*.key
  )
  make_kubelet_client_cert
  touch "$PKI/complete"
}

# How the apiserver authenticates to kubelets (logs, exec, port-forward).
make_kubelet_client_cert() {
  [[ -f "$PKI/apiserver-kubelet-client.crt" ]] && return 0
  (
    cd "$PKI"
    openssl req -newkey rsa:2048 -nodes -keyout apiserver-kubelet-client.key -out apiserver-kubelet-client.csr \
      -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >apiserver-kubelet-client.ext
    openssl x509 -req -in apiserver-kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile apiserver-kubelet-client.ext -out apiserver-kubelet-client.crt 2>/dev/null
    rm -f apiserver-kubelet-client.csr apiserver-kubelet-client.ext
    chmod 600 apiserver-kubelet-client.key
  )
}

write_kubeconfig() {
  local file=$1 server=$2
  cat >"$file.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: pnc-local
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: pnc-admin
  user:
    client-certificate-data: $(base64 -w0 <"$PKI/admin.crt")
    client-key-data: $(base64 -w0 <"$PKI/admin.key")
contexts:
- name: pnc-local
  context:
    cluster: pnc-local
    user: pnc-admin
current-context: pnc-local
EOF
  chmod 600 "$file.tmp"
  mv "$file.tmp" "$file"
}

# Waits for /readyz; returns 1 (after logging why) when a component died or time ran out.
wait_ready() {
  local i c
  for ((i = 0; i < 600; i++)); do
    is_ready && return 0
    for c in etcd kube-apiserver; do
      if ! recorded_pid "$c" >/dev/null; then
        log "$c exited during startup; last log lines:"
        tail -n 20 "$STATE_DIR/logs/$c.log" >&2 2>/dev/null || true
        return 1
      fi
    done
    sleep 0.1
  done
  log "kube-apiserver not ready after 60 s; see $STATE_DIR/logs"
  return 1
}

# Starts kube-controller-manager with CONTROLLERS, or keeps a running one that has them all.
start_controller_manager() {
  local controllers=$1 running
  if recorded_pid kube-controller-manager >/dev/null; then
    running=$(cat "$STATE_DIR/kube-controller-manager.controllers" 2>/dev/null || echo "$KCM_CONTROLLERS")
    # The node's list includes the plain one.
    [[ "$running" == "$controllers" || "$running" == "$KCM_NODE_CONTROLLERS" ]] && return 0
    log "restarting kube-controller-manager with the controllers $controllers"
    stop_component kube-controller-manager
  fi
  [[ -x "$BIN_DIR/kube-controller-manager" ]] || die "no kube-controller-manager in $BIN_DIR"
  echo "$controllers" >"$STATE_DIR/kube-controller-manager.controllers"
  launch kube-controller-manager "$BIN_DIR/kube-controller-manager" \
    --kubeconfig="$KUBECONFIG_FILE" \
    --controllers="$controllers" \
    --leader-elect=false \
    --secure-port=0 \
    --service-account-private-key-file="$PKI/sa.key" \
    --root-ca-file="$PKI/ca.crt" \
    --use-service-account-credentials=false
  log "kube-controller-manager started (pid $(<"$(pid_file kube-controller-manager)"))"
}

start_scheduler() {
  recorded_pid kube-scheduler >/dev/null && return 0
  [[ -x "$BIN_DIR/kube-scheduler" ]] || die "no kube-scheduler in $BIN_DIR"
  launch kube-scheduler "$BIN_DIR/kube-scheduler" \
    --kubeconfig="$KUBECONFIG_FILE" \
    --leader-elect=false \
    --secure-port=0
  log "kube-scheduler started (pid $(<"$(pid_file kube-scheduler)"))"
}

# OpenShift's SCC admission on the running control plane (idempotent: a second `up` keeps a running
# webhook). The order is OpenShift's: SCCs before the plugin (it refuses every pod until all the
# standard ones exist), the plugin ready before the webhooks point at it.
start_openshift() {
  local openshift_bin kubectl port i
  openshift_bin=$(bash "$HACK_DIR/build-openshift-binaries.sh")
  kubectl=$(kubectl_bin)
  # Server-side: client-side apply drops the SCCs' `priority: null`, which the CRD requires.
  "$kubectl" --kubeconfig="$KUBECONFIG_FILE" apply --server-side --field-manager=local-cluster \
    -f "$openshift_bin/securitycontextconstraints.crd.yaml" >/dev/null
  "$kubectl" --kubeconfig="$KUBECONFIG_FILE" wait --for=condition=Established --timeout=60s \
    crd/securitycontextconstraints.security.openshift.io >/dev/null
  "$kubectl" --kubeconfig="$KUBECONFIG_FILE" apply --server-side --field-manager=local-cluster \
    -f "$HACK_DIR/openshift/scc-manifests/" >/dev/null
  if ! recorded_pid scc-admission >/dev/null; then
    make_webhook_cert
    port=$(free_port)
    rm -f "$STATE_DIR/scc-admission.ready"
    launch scc-admission "$openshift_bin/scc-admission" \
      --kubeconfig="$KUBECONFIG_FILE" \
      --listen="127.0.0.1:$port" \
      --tls-cert-file="$PKI/scc-admission.crt" \
      --tls-key-file="$PKI/scc-admission.key" \
      --ready-file="$STATE_DIR/scc-admission.ready"
    for ((i = 0; i < 600; i++)); do
      [[ -f "$STATE_DIR/scc-admission.ready" ]] && break
      if ! recorded_pid scc-admission >/dev/null; then
        tail -n 20 "$LOG_DIR/scc-admission.log" >&2 || true
        die "scc-admission exited during startup"
      fi
      sleep 0.1
    done
    [[ -f "$STATE_DIR/scc-admission.ready" ]] || die "scc-admission not ready after 60 s; see $LOG_DIR/scc-admission.log"
    echo "$port" >"$STATE_DIR/scc-admission.port"
    log "scc-admission started (pid $(<"$(pid_file scc-admission)"), https://127.0.0.1:$port)"
  fi
  port=$(<"$STATE_DIR/scc-admission.port")
  openshift_webhooks "https://127.0.0.1:$port" |
    "$kubectl" --kubeconfig="$KUBECONFIG_FILE" apply --server-side --force-conflicts --field-manager=local-cluster -f - >/dev/null
}

# The serving certificate of scc-admission, signed by the cluster CA (the webhooks' caBundle).
make_webhook_cert() {
  [[ -f "$PKI/scc-admission.crt" ]] && return 0
  (
    cd "$PKI"
    openssl req -newkey rsa:2048 -nodes -keyout scc-admission.key -out scc-admission.csr -subj "/CN=scc-admission" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >scc-admission.ext
    openssl x509 -req -in scc-admission.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile scc-admission.ext -out scc-admission.crt 2>/dev/null
    rm -f scc-admission.csr scc-admission.ext
    chmod 600 scc-admission.key
  )
}

# Where OpenShift runs SCC admission: after the in-process admission (MutatingAdmissionPolicy
# included) and before, and again after, the mutating webhooks. The first name in sort order
# runs first among the webhooks, and IfNeeded runs it again when a later one (Istio's injector)
# changed the pod; the validating webhook is OpenShift's final check.
openshift_webhooks() {
  local url=$1 ca rules
  ca=$(base64 -w0 <"$PKI/ca.crt")
  rules='
    rules:
      - apiGroups: [""]
        apiVersions: [v1]
        operations: [CREATE, UPDATE]
        resources: [pods, pods/ephemeralcontainers]
    failurePolicy: Fail
    sideEffects: None
    admissionReviewVersions: [v1]
    timeoutSeconds: 30'
  cat <<EOF
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: 00-openshift-scc-admission
webhooks:
  - name: scc-admission.security.openshift.io
    clientConfig: {url: "$url/mutate", caBundle: "$ca"}
    reinvocationPolicy: IfNeeded$rules
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: 00-openshift-scc-admission
webhooks:
  - name: scc-admission.security.openshift.io
    clientConfig: {url: "$url/validate", caBundle: "$ca"}$rules
EOF
}

# hack/local-node.sh with what it needs to know about this control plane.
local_node() {
  STATE_DIR=$STATE_DIR BIN_DIR=${BIN_DIR:-} PKI=$PKI ADMIN_KUBECONFIG=$KUBECONFIG_FILE \
    APISERVER_URL="https://127.0.0.1:$(cat "$STATE_DIR/apiserver.port" 2>/dev/null)" \
    bash "$HACK_DIR/local-node.sh" "$@"
}

# hack/vm-node.sh likewise.
vm_node() {
  STATE_DIR=$STATE_DIR BIN_DIR=${BIN_DIR:-} PKI=$PKI ADMIN_KUBECONFIG=$KUBECONFIG_FILE \
    APISERVER_PORT="$(cat "$STATE_DIR/apiserver.port" 2>/dev/null)" \
    bash "$HACK_DIR/vm-node.sh" "$@"
}

# Starts etcd and kube-apiserver on fresh free ports and waits until the apiserver is ready.
start_control_plane() {
  local etcd_port peer_port api_port
  etcd_port=$(free_port)
  peer_port=$(free_port)
  api_port=$(free_port)
  while [[ "$peer_port" == "$etcd_port" ]]; do peer_port=$(free_port); done
  while [[ "$api_port" == "$etcd_port" || "$api_port" == "$peer_port" ]]; do api_port=$(free_port); done

  launch etcd "$BIN_DIR/etcd" \
    --name=pnc-local \
    --data-dir="$STATE_DIR/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" \
    --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="pnc-local=http://127.0.0.1:$peer_port" \
    --unsafe-no-fsync=true \
    --quota-backend-bytes=$((2 * 1024 * 1024 * 1024)) \
    --log-level=warn

  launch kube-apiserver "$BIN_DIR/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 \
    --secure-port="$api_port" \
    --advertise-address="$ADVERTISE_ADDRESS" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --tls-cert-file="$PKI/apiserver.crt" \
    --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$PKI/ca.crt" \
    --kubelet-preferred-address-types=InternalIP \
    --allow-privileged=true \
    --cert-dir="$STATE_DIR/apiserver-certs" \
    --profiling=false

  echo "$api_port" >"$STATE_DIR/apiserver.port"
  touch "$STATE_DIR/apiserver.node-ready"
  echo "$etcd_port" >"$STATE_DIR/etcd.port"
  write_kubeconfig "$KUBECONFIG_FILE" "https://127.0.0.1:$api_port"
  wait_ready
}

# The controllers and the node that `up`'s flags ask for, on a running control plane (OpenShift's
# admission first, so the node's pods meet it too).
start_extras() {
  if [[ "$with_openshift" == 1 ]]; then start_openshift; fi
  if [[ "$with_node" == 1 || "$with_vm_node" == 1 ]]; then
    start_controller_manager "$KCM_NODE_CONTROLLERS"
    start_scheduler
    # The VM node first: its cold image build fetches packages before a lab node's uplink chain
    # exists.
    if [[ "$with_vm_node" == 1 ]]; then vm_node up; fi
    if [[ "$with_node" == 1 ]]; then local_node up; fi
  elif [[ "$with_kcm" == 1 ]]; then
    start_controller_manager "$KCM_CONTROLLERS"
  fi
}

cmd_up() {
  local with_kcm=${PNC_CLUSTER_KCM:-0} with_node=${PNC_CLUSTER_NODE:-0} with_vm_node=${PNC_CLUSTER_VM_NODE:-0}
  local with_openshift=${PNC_CLUSTER_OPENSHIFT:-0}
  while (($#)); do
    case $1 in
      --with-controller-manager) with_kcm=1 ;;
      --with-node) with_node=1 ;;
      --with-vm-node) with_vm_node=1 ;;
      --openshift) with_openshift=1 ;;
      # local-node.sh reads it (and says which runtimes there are).
      --runtime) (($# > 1)) || usage; export PNC_NODE_RUNTIME=$2; shift ;;
      --runtime=*) export PNC_NODE_RUNTIME=${1#--runtime=} ;;
      *) usage ;;
    esac
    shift
  done
  local start=$SECONDS
  # Before anything starts: a machine that cannot run a node, or whose own networks overlap
  # our ranges, says so.
  if [[ "$with_node" == 1 ]]; then local_node check; fi
  check_host_ranges
  BIN_DIR=$(bash "$HACK_DIR/build-k8s-binaries.sh")
  mkdir -p "$STATE_DIR/logs"

  # A control plane started by an older version of this script lacks the node's flags.
  if recorded_pid etcd >/dev/null && recorded_pid kube-apiserver >/dev/null && is_ready &&
    [[ "$with_node$with_vm_node" == 00 || -f "$STATE_DIR/apiserver.node-ready" ]]; then
    start_extras
    log "reusing the running control plane in $STATE_DIR"
    echo "$KUBECONFIG_FILE"
    return 0
  fi

  # Leftovers of a crash (some pids alive, stale ports, half-written etcd data): start clean.
  stop_all
  rm -rf "$STATE_DIR/etcd" "$KUBECONFIG_FILE" "$CLUSTER_ENV"
  make_pki
  local attempt api_port etcd_port
  # A free port can be taken by someone else before our component binds it: retry with new ones.
  for attempt in 1 2 3; do
    if start_control_plane; then break; fi
    stop_all
    rm -rf "$STATE_DIR/etcd"
    ((attempt < 3)) || die "the control plane did not start; logs in $STATE_DIR/logs"
    log "retrying with other ports"
  done
  api_port=$(<"$STATE_DIR/apiserver.port")
  etcd_port=$(<"$STATE_DIR/etcd.port")
  printf 'BIN_DIR=%s\nAPISERVER_URL=%s\nETCD_URL=%s\nKUBECONFIG=%s\nSERVICE_CIDR=%s\nKUBERNETES_SERVICE_IP=%s\n' \
    "$BIN_DIR" "https://127.0.0.1:$api_port" "http://127.0.0.1:$etcd_port" "$KUBECONFIG_FILE" "$SERVICE_CIDR" "$KUBERNETES_SERVICE_IP" >"$CLUSTER_ENV"
  # Nothing half-started: a node that fails to come up takes the control plane it came with.
  if ! (start_extras); then
    vm_node down || true
    local_node down || true
    stop_all
    rm -rf "$STATE_DIR/etcd" "$KUBECONFIG_FILE" "$CLUSTER_ENV"
    die "stopped the control plane started for it; logs in $STATE_DIR/logs"
  fi
  log "control plane ready in $((SECONDS - start)) s (apiserver https://127.0.0.1:$api_port, state $STATE_DIR)"
  echo "$KUBECONFIG_FILE"
}

# Always runs to the end: whatever the node leaves, the control plane still stops and every
# mount and file under the state dir goes; then it says what it could not remove.
cmd_down() {
  [[ -d "$STATE_DIR" ]] || { log "nothing to stop in $STATE_DIR"; return 0; }
  local failed=()
  # The node first: its kubelet talks to the apiserver until it stops.
  if [[ -d "$STATE_DIR/node" ]]; then local_node down || failed+=("the node (see above)"); fi
  if [[ -d "$STATE_DIR/vm-node" ]]; then vm_node down || failed+=("the VM node (see above)"); fi
  stop_all
  remove_tree "$STATE_DIR" || failed+=("$STATE_DIR")
  ((${#failed[@]} == 0)) || die "stopped the control plane, but could not remove: ${failed[*]}"
  log "stopped and removed $STATE_DIR"
}

kubectl_minor() {
  "$1" version --client -o json 2>/dev/null | sed -n 's/^ *"minor": "\([0-9]*\).*/\1/p' | head -n1
}

cmd_env() {
  BIN_DIR=$(bash "$HACK_DIR/build-k8s-binaries.sh")
  recorded_pid kube-apiserver >/dev/null || log "not running; start it with: bash $HACK_DIR/local-cluster.sh up"
  printf 'export KUBECONFIG=%q\n' "$KUBECONFIG_FILE"
  local machine minor
  machine=$(command -v kubectl || true)
  [[ -n "$machine" ]] && minor=$(kubectl_minor "$machine")
  # shellcheck disable=SC2016 # $PATH must expand in the caller's shell, not here
  if [[ -z "$machine" || -z "${minor:-}" || "$minor" -lt "$MIN_KUBECTL_MINOR" ]] && [[ -x "$BIN_DIR/kubectl" ]]; then
    printf 'export PATH=%q:"$PATH"\n' "$BIN_DIR"
  elif [[ -f "$STATE_DIR/node/node.env" ]]; then
    # crictl for the node, after the machine's own tools.
    printf 'export PATH="$PATH":%q\n' "$BIN_DIR"
  fi
  if [[ -f "$STATE_DIR/node/node.env" ]]; then
    local env=$STATE_DIR/node/node.env address storage
    address=$(sed -n 's/^CONTAINERD_ADDRESS=//p' "$env")
    storage=$(sed -n 's/^CRIO_STORAGE_CONF=//p' "$env")
    if [[ -n "$address" ]]; then
      # ctr reads the first two, crictl the last.
      printf 'export CONTAINERD_ADDRESS=%q CONTAINERD_NAMESPACE=k8s.io CONTAINER_RUNTIME_ENDPOINT=%q\n' "$address" "unix://$address"
    else
      # hack/build-images.sh --import reads the first, crictl the last.
      printf 'export CRIO_STORAGE_CONF=%q CONTAINER_RUNTIME_ENDPOINT=%q\n' "$storage" "$(sed -n 's/^CRI_ENDPOINT=//p' "$env")"
    fi
  fi
}

cmd_status() {
  # What `up` recorded: a status check must never start a build of the binaries.
  [[ -f "$CLUSTER_ENV" ]] || return 1
  BIN_DIR=$(sed -n 's/^BIN_DIR=//p' "$CLUSTER_ENV")
  recorded_pid kube-apiserver >/dev/null && is_ready
}

command=${1:-}
[[ -n "$command" ]] || usage
shift
# up and down change the state dir: one at a time per dir. env and status only read it.
lock() {
  mkdir -p "$(dirname "$STATE_DIR")"
  exec 9>"$LOCK_FILE"
  flock 9
}
case $command in
  up) lock; cmd_up "$@" ;;
  down) lock; cmd_down ;;
  node-reboot) lock; BIN_DIR=$(sed -n 's/^BIN_DIR=//p' "$CLUSTER_ENV"); local_node reboot ;;
  env) cmd_env ;;
  status) cmd_status ;;
  # exec: a long build must not read this file again (it may be edited meanwhile).
  deploy) PNC_CLUSTER_DIR=$STATE_DIR exec bash "$HACK_DIR/deploy-local.sh" "$@" ;;
  *) usage ;;
esac
