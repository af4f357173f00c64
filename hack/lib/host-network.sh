# shellcheck shell=bash
# shellcheck disable=SC2034 # the plan is read by the scripts that source this file
# The host-side address plan of the local cluster and its nodes, and the check that keeps it off
# the machine's own networks. Sourced by local-cluster.sh, local-node.sh and uplink-audit.sh.
#
# Every address we put on a host-netns interface or route comes from these ranges. On our
# machines the uplink itself sits on 192.0.2.0/24 and the package registries the machine reaches
# answer at 203.0.113.80, so those two ranges are used only inside network namespaces of our own,
# never on the host; 198.51.100.0/24 holds all the host needs:
#   198.51.100.0/26, .64/26, .128/26   pods of node slots 0-2 (the first address: their gateway)
#   198.51.100.192/29    node addresses (.192 + slot)
#   198.51.100.224/29    destinations nobody holds, for pods' test connections
#   198.51.100.232       the API server's advertise address (on no interface: nothing dials it)
#   198.51.100.240/28    the Service range (the `kubernetes` Service is .241)
#   2001:db8:ad0::/44    node addresses (ad0:<slot>::1), pods (ad1:<slot>::/64), the VM node's
#                        link (ad2::/64: the host's bridge ::1, the guest ::2), destinations
#                        nobody holds (adf::/48)
# Inside the VM node's guest only, never on the host (the guest's link is IPv6 only and nothing
# is forwarded): its pods, on 203.0.113.64/26 and 2001:db8:ad3::/64, and the `kubernetes`
# Service's address.
HOST_V4_RANGES=(198.51.100.0/24)
HOST_V6_RANGES=(2001:db8:ad0::/44)
SERVICE_CIDR=198.51.100.240/28
KUBERNETES_SERVICE_IP=198.51.100.241
ADVERTISE_ADDRESS=198.51.100.232
# The VM node (hack/vm-node.sh): one per machine, a tap on a bridge of its own.
VM_BRIDGE=pncv0
VM_TAP=pncvt0
VM_HOST_V6=2001:db8:ad2::1
VM_GUEST_V6=2001:db8:ad2::2
VM_POD_V4_CIDR=203.0.113.64/26
VM_POD_V6_CIDR=2001:db8:ad3::/64
# Our host links: every name starts with pnc (node, pod and VM bridges, the VM's tap), and the
# pods' veth ports.
OUR_LINK_PATTERN='^pnc|^veth'

# close_connections_to PREFIX...: aborts every TCP socket of the host to these prefixes (ss -K),
# e.g. the API server's to a kubelet, or a relay's to a guest. A node calls it before it removes
# the links that reach its addresses, while a FIN still goes where it should, and again after,
# for what was opened in between: once those links are gone, whatever such a socket sends follows
# the default route out of the machine.
close_connections_to() {
  local prefix
  for prefix in "$@"; do ss -H -K -t -n dst "$prefix" >/dev/null 2>&1 || true; done
}

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

# The IPv4 address as a number (no output for anything else).
ipv4_number() {
  local IFS=. a b c d
  [[ "$1" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || return 0
  read -r a b c d <<<"$1"
  echo $(((a << 24) | (b << 16) | (c << 8) | d))
}

# Prints each IPv4 address the machine is talking to (its nameservers, its TCP connections' peers)
# that lies in one of our ranges: reached through the uplink, it would be shadowed by ours.
host_range_destinations() {
  local peer number range base bits route dev
  {
    sed -n 's/^nameserver[[:space:]]*//p' /etc/resolv.conf 2>/dev/null
    ss -Htn4 2>/dev/null | awk '{print $5}' | sed 's/:[0-9]*$//'
  } | sort -u | while IFS= read -r peer; do
    number=$(ipv4_number "$peer")
    [[ -n "$number" ]] || continue
    # Our own nodes and pods (a local address, or one of our links) are not the machine's.
    route=$(ip -o -4 route get "$peer" 2>/dev/null || true)
    [[ "$route" == local* ]] && continue
    dev=$(awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}' <<<"$route")
    [[ -n "$dev" && ( "$dev" == lo || "$dev" =~ $OUR_LINK_PATTERN ) ]] && continue
    for range in "${HOST_V4_RANGES[@]}"; do
      base=$(ipv4_number "${range%/*}") bits=${range#*/}
      if (((number >> (32 - bits)) == (base >> (32 - bits)))); then echo "$range holds $peer, which the machine talks to"; fi
    done
  done
}

# Exits (through the caller's die) when the machine already routes one of our ranges.
check_host_ranges() {
  local conflicts
  command -v ip >/dev/null || die "missing ip, which reads the machine's routes: install it with: apt-get install iproute2"
  conflicts=$(host_range_conflicts; host_range_destinations)
  [[ -z "$conflicts" ]] && return 0
  die "the local cluster's host-side ranges are in use on this machine, refusing to start:
$conflicts
(the plan is in hack/lib/host-network.sh; free these ranges or move them)"
}
