#!/usr/bin/env bash
# Release check for anyone with Docker and kind (it cannot run on machines without a
# Docker engine): builds both images, installs the kubernetes overlay and the
# MutatingAdmissionPolicy injection into a fresh kind cluster, starts a mesh pod with a
# stand-in proxy in a Pod Security `restricted` namespace, waits for it to become Ready,
# then checks its mark and, from the node's controller, its redirect rules. Tears down.
#
#   bash hack/kind-e2e.sh            KEEP_CLUSTER=1 keeps the cluster for a look afterwards
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CLUSTER=${KIND_CLUSTER_NAME:-pnc-e2e}
NODE_IMAGE=${KIND_NODE_IMAGE:-kindest/node:v1.37.2}
CONTROLLER_IMAGE=ghcr.io/pod-network-controller/controller:dev
WAITER_IMAGE=ghcr.io/pod-network-controller/init-waiter:dev
NS=pnc-e2e-mesh
work=$(mktemp -d)
# Never the user's current context: only the cluster this script creates.
kubectl() { command kubectl --context "kind-$CLUSTER" "$@"; }

log() { echo "kind-e2e: $*" >&2; }
cleanup() {
  local status=$?
  if ((status != 0)); then
    log "FAILED; controller logs:"
    kubectl -n pod-network-controller logs -l app.kubernetes.io/name=pod-network-controller --tail=50 || true
    kubectl -n "$NS" describe pod web || true
  fi
  [[ ${KEEP_CLUSTER:-0} == 1 ]] || kind delete cluster --name "$CLUSTER"
  rm -rf "$work"
}
trap cleanup EXIT

# A stock cluster: MutatingAdmissionPolicy (the injection) is GA and on by default from 1.36.
kind create cluster --name "$CLUSTER" --image "$NODE_IMAGE" --wait 120s

docker build --target controller -t "$CONTROLLER_IMAGE" .
docker build --target init-waiter -t "$WAITER_IMAGE" .
kind load docker-image --name "$CLUSTER" "$CONTROLLER_IMAGE" "$WAITER_IMAGE"

# kustomize accepts only relative paths to other kustomizations.
repo=$(realpath --relative-to="$work" "$PWD")
cat >"$work/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $repo/manifests/overlays/kubernetes
  - $repo/manifests/injection/admission-policy
images:
  - name: ghcr.io/pod-network-controller/controller
    newTag: dev
configMapGenerator:
  - name: pod-network-controller-injection
    namespace: pod-network-controller
    behavior: merge
    literals:
      - image=$WAITER_IMAGE
YAML
kubectl apply --server-side -k "$work"
kubectl -n pod-network-controller rollout status daemonset/pod-network-controller --timeout=180s

kubectl create namespace "$NS"
kubectl label namespace "$NS" pod-network-controller.io/inject=enabled pod-security.kubernetes.io/enforce=restricted
kubectl -n "$NS" wait --for=create serviceaccount/default --timeout=60s
# The stand-in proxy (the controller image's node, as the proxy UID 1337) only listens on
# the proxy's ports; the app sleeps. Both fit Pod Security `restricted`.
kubectl -n "$NS" apply -f - <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  securityContext:
    runAsNonRoot: true
    seccompProfile: {type: RuntimeDefault}
  containers:
    - name: app
      image: $CONTROLLER_IMAGE
      command: [sleep, infinity]
      securityContext: {runAsUser: 1000, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
    - name: istio-proxy
      image: $CONTROLLER_IMAGE
      command: [node, -e, "for (const p of [15001, 15006, 15021]) require('net').createServer((s) => s.end()).listen(p)"]
      readinessProbe: {tcpSocket: {port: 15021}}
      securityContext: {runAsUser: 1337, runAsGroup: 1337, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
YAML
kubectl -n "$NS" wait --for=condition=Ready pod/web --timeout=180s

mark=$(kubectl -n "$NS" get pod web -o jsonpath='{.metadata.annotations.pod-network-controller\.io/status}')
log "mark: $mark"
[[ $mark == *'"state":"initialized"'* ]] || { log "pod is Ready but not marked initialized"; exit 1; }

node=$(kubectl -n "$NS" get pod web -o jsonpath='{.spec.nodeName}')
agent=$(kubectl -n pod-network-controller get pod -l app.kubernetes.io/name=pod-network-controller \
  --field-selector "spec.nodeName=$node" -o jsonpath='{.items[0].metadata.name}')
sandbox=$(docker exec "$node" crictl pods --namespace "$NS" --name web --state ready -q)
pid=$(docker exec "$node" crictl inspectp -o go-template --template '{{.info.pid}}' "$sandbox")
kubectl -n "$NS" get pod web -o yaml >"$work/web.yaml"
kubectl -n pod-network-controller exec -i "$agent" -- \
  node /app/controller.js verify --netns "/proc/$pid/ns/net" --pod /dev/stdin <"$work/web.yaml"
log "PASS: mesh pod Ready, marked initialized, rules verified in its netns"
