#!/usr/bin/env bash
# Runs in the VM node's guest at boot (pnc-node.service, from hack/vm-image.sh), from the
# read-only node disk hack/vm-node.sh writes: makes the guest this cluster's node.
set -euxo pipefail
D=/run/pnc
# shellcheck source=/dev/null
source "$D/node.env"

# The link to the host: one address, no default route, no forwarding.
nic=
for dev in /sys/class/net/*; do [[ -e "$dev/device" ]] && nic=${dev##*/} && break; done
[[ -n "$nic" ]] || { echo "setup: no network device" >&2; exit 1; }
sysctl -qw net.ipv6.conf.all.accept_ra=0 "net.ipv6.conf.$nic.accept_ra=0" net.ipv4.ip_forward=0
ip link set lo up
ip link set "$nic" up
ip addr add "$GUEST_V6/64" dev "$nic" nodad
# The pods' bridge with their gateways: the CNI plugin runs with isGateway false (it would turn
# forwarding on) and takes the bridge as it finds it.
ip link add cni0 type bridge
ip addr add "$POD_V4_GW" dev cni0
ip addr add "$POD_V6_GW" dev cni0 nodad
ip link set cni0 up
# The `kubernetes` Service: its ClusterIP is an address of the guest, where a relay passes the
# pods' connections to the API server over the IPv6 link (no NAT from IPv4 to IPv6 exists).
ip addr add "$KUBERNETES_SERVICE_IP/32" dev lo
systemd-run --unit=pnc-apiserver-relay --property=Restart=always \
  socat "TCP4-LISTEN:443,bind=$KUBERNETES_SERVICE_IP,fork,reuseaddr" "TCP6:[$HOST_V6]:$APISERVER_PORT"

install -m 0755 "$D/bin/kubelet" "$D/bin/crictl" /usr/local/bin/
install -d /etc/kubernetes/pki /etc/containerd /etc/cni/net.d
install -m 0600 "$D"/pki/* /etc/kubernetes/pki/
install -m 0600 "$D/kubelet.yaml" "$D/kubelet.kubeconfig" /etc/kubernetes/
install -m 0644 "$D/containerd.toml" /etc/containerd/config.toml
install -m 0644 "$D/10-pnc-vm.conflist" /etc/cni/net.d/
printf 'runtime-endpoint: unix:///run/containerd/containerd.sock\n' >/etc/crictl.yaml

systemctl start containerd
for image in "$D"/images/*.tar; do ctr -n k8s.io images import "$image"; done

cat >/etc/systemd/system/kubelet.service <<UNIT
[Unit]
Description=kubelet
After=containerd.service
Requires=containerd.service
[Service]
ExecStart=/usr/local/bin/kubelet --config=/etc/kubernetes/kubelet.yaml --kubeconfig=/etc/kubernetes/kubelet.kubeconfig --hostname-override=$NODE_NAME --node-ip=$GUEST_V6 --v=1
Restart=always
RestartSec=2
UNIT
systemctl daemon-reload
systemctl start --no-block kubelet.service
