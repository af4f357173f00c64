#!/usr/bin/env bash
# Counts the packets that leave the machine through its uplinks (the devices of its default
# routes) with a source or destination in the local cluster's host-side ranges
# (hack/lib/host-network.sh). `npm test` starts it before the suites and checks it after them:
# any such packet means a test reached, or could be reached from, a network that is not ours.
#
#   hack/uplink-audit.sh start [--guard]   (re)install the counters at zero; --guard also drops
#                                          such packets (filter OUTPUT and FORWARD) until check
#   hack/uplink-audit.sh check             print the counts, remove counters and guard; exit 1
#                                          when any is not zero, the guard's drops included
#
# The counters sit in mangle POSTROUTING: they count what really leaves. The guard keeps the
# network safe from a fault of ours (it stands in for the nodes' own guards, PNC-NODE-<slot>-UPLINK,
# after a node has removed its own), but what it drops still fails the check. Needs root.
set -euo pipefail

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CHAIN=PNC-UPLINK-AUDIT
GUARD=PNC-UPLINK-GUARD
GUARD_HOOKS=(OUTPUT FORWARD)

log() { echo "uplink-audit: $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=hack/lib/host-network.sh
source "$HACK_DIR/lib/host-network.sh"

ipt() { "$1" -w 5 -t mangle "${@:2}"; }
filter() { "$1" -w 5 -t filter "${@:2}"; }

remove() {
  local cmd hook
  for cmd in iptables ip6tables; do
    while ipt "$cmd" -D POSTROUTING -j "$CHAIN" 2>/dev/null; do :; done
    ipt "$cmd" -F "$CHAIN" 2>/dev/null || true
    ipt "$cmd" -X "$CHAIN" 2>/dev/null || true
    for hook in "${GUARD_HOOKS[@]}"; do
      while filter "$cmd" -D "$hook" -j "$GUARD" 2>/dev/null; do :; done
    done
    filter "$cmd" -F "$GUARD" 2>/dev/null || true
    filter "$cmd" -X "$GUARD" 2>/dev/null || true
  done
}

# CMD CHAIN-COMMAND RULE-COMMAND...: one rule per uplink and direction for every range of CMD's family.
rules_for() {
  local cmd=$1 uplink range
  local -n ranges=$2
  shift 2
  for uplink in "${uplinks[@]}"; do
    for range in "${ranges[@]}"; do
      "$@" -o "$uplink" -d "$range"
      "$@" -o "$uplink" -s "$range"
    done
  done
}

cmd_start() {
  local guard=${1:-} cmd hook
  [[ -z "$guard" || "$guard" == --guard ]] || die "unknown option $guard"
  mapfile -t uplinks < <(uplink_devices)
  ((${#uplinks[@]})) || die "the machine has no default route: nothing can leave it, nothing to count"
  remove
  for cmd in iptables ip6tables; do ipt "$cmd" -N "$CHAIN"; done
  rules_for iptables HOST_V4_RANGES ipt iptables -A "$CHAIN"
  rules_for ip6tables HOST_V6_RANGES ipt ip6tables -A "$CHAIN"
  for cmd in iptables ip6tables; do ipt "$cmd" -I POSTROUTING -j "$CHAIN"; done
  if [[ -n "$guard" ]]; then
    for cmd in iptables ip6tables; do filter "$cmd" -N "$GUARD"; done
    rules_for iptables HOST_V4_RANGES filter_drop iptables
    rules_for ip6tables HOST_V6_RANGES filter_drop ip6tables
    for cmd in iptables ip6tables; do
      for hook in "${GUARD_HOOKS[@]}"; do filter "$cmd" -I "$hook" -j "$GUARD"; done
    done
  fi
  log "counting packets through ${uplinks[*]} to or from ${HOST_V4_RANGES[*]} ${HOST_V6_RANGES[*]}${guard:+ (and dropping them)}"
}

filter_drop() { filter "$1" -A "$GUARD" "${@:2}" -j DROP; }

# CMD TABLE CHAIN WHAT: logs each rule of CHAIN that matched packets; prints their sum.
matched_packets() {
  local rule total=0 packets
  # -S with -v prints each rule's counters as `-c PACKETS BYTES`.
  while read -r rule; do
    [[ "$rule" =~ ^-A\ [^\ ]+\ (.*)\ -c\ ([0-9]+)\ [0-9]+(.*)$ ]] || continue
    packets=${BASH_REMATCH[2]}
    if ((packets > 0)); then
      log "$1: $packets packet(s) $4: ${BASH_REMATCH[1]}${BASH_REMATCH[3]}"
      total=$((total + packets))
    fi
  done < <("$1" -w 5 -t "$2" -S "$3" -v 2>/dev/null)
  echo "$total"
}

cmd_check() {
  local cmd left=0 stopped=0 rules=0
  for cmd in iptables ip6tables; do
    ipt "$cmd" -S "$CHAIN" >/dev/null 2>&1 || die "no $CHAIN chain for $cmd: start the audit first (hack/uplink-audit.sh start)"
    rules=$((rules + $(ipt "$cmd" -S "$CHAIN" | grep -c '^-A')))
    left=$((left + $(matched_packets "$cmd" mangle "$CHAIN" "left")))
    # What the guard dropped was on its way out: as much a fault as what left.
    stopped=$((stopped + $(matched_packets "$cmd" filter "$GUARD" "stopped by the guard")))
  done
  remove
  ((rules > 0)) || die "the audit had no rules: nothing was counted"
  if ((left + stopped > 0)); then
    log "$left packet(s) of our ranges went through the machine's uplink, $stopped more were on their way and stopped by the guard"
    return 1
  fi
  log "no packet of our ranges went, or tried to go, through the machine's uplink ($rules counters)"
}

[[ $(id -u) == 0 ]] || die "needs root (iptables)"
case ${1:-} in
  start) cmd_start "${2:-}" ;;
  check) cmd_check ;;
  *) sed -n '2,14s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
