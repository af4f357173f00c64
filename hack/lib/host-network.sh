# shellcheck shell=bash
# shellcheck disable=SC2034 # the plan is read by the scripts that source this file
# The host-side address plan of the local cluster and its nodes, and the check that keeps it off
# the machine's own networks. Sourced by local-cluster.sh, local-node.sh and uplink-audit.sh.
#
# Every address we put on a host-netns interface or route comes from these ranges. On our
# machines the uplink itself sits on 192.0.2.0/24, so that range is used only inside network
# namespaces of our own, never on the host:
#   198.51.100.0/24      pods of node slots 0-3 (a /26 each)
#   203.0.113.0/26       pods of node slot 4 (.64/26: the VM node, below)
#   203.0.113.128/26     the Service range (the `kubernetes` Service is .129)
#   203.0.113.192/28     node addresses (.192 + slot)
#   203.0.113.208        the API server's advertise address (on no interface: nothing dials it)
#   203.0.113.224/27     destinations nobody holds, for pods' test connections
#   2001:db8:ad0::/44    node addresses (ad0:<slot>::1), pods (ad1:<slot>::/64), the VM node's
#                        link (ad2::/64: the host's bridge ::1, the guest ::2), destinations
#                        nobody holds (adf::/48)
# Inside the VM node's guest only, never on the host: its pods, on 203.0.113.64/26 (what was
# the lab nodes' slot 5) and 2001:db8:ad3::/64, and the `kubernetes` Service's address.
HOST_V4_RANGES=(198.51.100.0/24 203.0.113.0/24)
HOST_V6_RANGES=(2001:db8:ad0::/44)
SERVICE_CIDR=203.0.113.128/26
KUBERNETES_SERVICE_IP=203.0.113.129
ADVERTISE_ADDRESS=203.0.113.208
# The VM node (hack/vm-node.sh): one per machine, a tap on a bridge of its own.
VM_BRIDGE=pncv0
VM_TAP=pncvt0
VM_HOST_V6=2001:db8:ad2::1
VM_GUEST_V6=2001:db8:ad2::2
VM_POD_V4_CIDR=203.0.113.64/26
VM_POD_V6_CIDR=2001:db8:ad3::/64
# Our host links: node bridges pncn<slot>, pod bridges pncp<slot> and their veth ports, the VM
# node's bridge and tap.
OUR_LINK_PATTERN='^(pncn|pncp|pncv|pncvt)[0-9]+$|^veth'

# The devices of the machine's default routes (both families): where a packet leaves the machine.
uplink_devices() {
  { ip -o -4 route show default; ip -o -6 route show default; } 2>/dev/null |
    awk '{for (i = 1; i < NF; i++) if ($i == "dev") print $(i + 1)}' | sort -u
}

# Prints each route of the machine, on a link not ours, that overlaps one of our ranges (inside
# it or containing it, default routes aside): any such route means a packet of ours could
# leave the machine or reach someone else's host.
host_range_conflicts() {
  local family range line dev
  for family in 4 6; do
    local -n ranges="HOST_V${family}_RANGES"
    for range in "${ranges[@]}"; do
      {
        ip -o "-$family" route show table all root "$range"
        ip -o "-$family" route show table all match "$range"
      } 2>/dev/null | while IFS= read -r line; do
        [[ "$line" == default* || "$line" == "unreachable default"* ]] && continue
        dev=$(awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}' <<<"$line")
        [[ -n "$dev" && "$dev" =~ $OUR_LINK_PATTERN ]] && continue
        echo "$range overlaps the machine's route: $line"
      done
    done
  done | sort -u
}

# Exits (through the caller's die) when the machine already routes one of our ranges.
check_host_ranges() {
  local conflicts
  command -v ip >/dev/null || die "missing ip, which reads the machine's routes: install it with: apt-get install iproute2"
  conflicts=$(host_range_conflicts)
  [[ -z "$conflicts" ]] && return 0
  die "the local cluster's host-side ranges are in use on this machine, refusing to start:
$conflicts
(the plan is in hack/lib/host-network.sh; free these ranges or move them)"
}
