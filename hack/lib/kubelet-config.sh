# shellcheck shell=bash
# The kubelet's two files that both nodes write (local-node.sh on this host, vm-node.sh for the
# guest): its KubeletConfiguration and its kubeconfig. Paths are as the kubelet sees them.

# kubelet_config ADDRESS CA CERT KEY RUNTIME_ENDPOINT CGROUP_DRIVER [MORE_YAML]: serving on
# ADDRESS:10250 with webhook authentication and authorization only (no read-only port), its
# serving certificate CERT/KEY, clients checked against CA; images never collected and almost
# no eviction (a test node has a small disk); no DNS: pods get an empty resolv.conf, so nothing
# looks names up off the machine. MORE_YAML: the node's own top-level lines.
kubelet_config() {
  cat <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: "$1"
port: 10250
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $2
authorization:
  mode: Webhook
tlsCertFile: $3
tlsPrivateKeyFile: $4
containerRuntimeEndpoint: $5
cgroupDriver: $6
failSwapOn: false
resolvConf: ""
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 50Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
YAML
  [[ -z "${7:-}" ]] || printf '%s\n' "$7"
}

# kubelet_kubeconfig SERVER CA CLIENT_CERT CLIENT_KEY: the kubelet's way to the API server, as
# system:node:<name> by its client certificate.
kubelet_kubeconfig() {
  cat <<YAML
apiVersion: v1
kind: Config
clusters:
- name: pnc-local
  cluster:
    server: $1
    certificate-authority: $2
users:
- name: kubelet
  user:
    client-certificate: $3
    client-key: $4
contexts:
- name: kubelet
  context:
    cluster: pnc-local
    user: kubelet
current-context: kubelet
YAML
}
