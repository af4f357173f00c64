#!/usr/bin/env bash
# Counts the packets that leave the machine through its uplinks (the devices of its default
# routes) with a source or destination in the local cluster's host-side ranges
# (hack/lib/host-network.sh). `npm test` starts it before the suites and checks it after them:
# any such packet means a test reached, or could be reached from, a network that is not ours.
#
#   hack/uplink-audit.sh start   (re)install the counters at zero
#   hack/uplink-audit.sh check   print the counts, remove the counters; exit 1 when any is not zero
#
# The counters sit in mangle OUTPUT and FORWARD, before any filter rule could drop such a
# packet, so an attempt counts even where a guard stops it. Needs root.
set -euo pipefail

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CHAIN=PNC-UPLINK-AUDIT
HOOKS=(OUTPUT FORWARD)

log() { echo "uplink-audit: $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=hack/lib/host-network.sh
source "$HACK_DIR/lib/host-network.sh"

ipt() { "$1" -w 5 -t mangle "${@:2}"; }

remove() {
  local cmd hook
  for cmd in iptables ip6tables; do
    for hook in "${HOOKS[@]}"; do
      while ipt "$cmd" -D "$hook" -j "$CHAIN" 2>/dev/null; do :; done
    done
    ipt "$cmd" -F "$CHAIN" 2>/dev/null || true
    ipt "$cmd" -X "$CHAIN" 2>/dev/null || true
  done
}

cmd_start() {
  local uplinks cmd uplink range hook
  mapfile -t uplinks < <(uplink_devices)
  ((${#uplinks[@]})) || die "the machine has no default route: nothing can leave it, nothing to count"
  remove
  for cmd in iptables ip6tables; do ipt "$cmd" -N "$CHAIN"; done
  for uplink in "${uplinks[@]}"; do
    for range in "${HOST_V4_RANGES[@]}"; do
      ipt iptables -A "$CHAIN" -o "$uplink" -d "$range"
      ipt iptables -A "$CHAIN" -o "$uplink" -s "$range"
    done
    for range in "${HOST_V6_RANGES[@]}"; do
      ipt ip6tables -A "$CHAIN" -o "$uplink" -d "$range"
      ipt ip6tables -A "$CHAIN" -o "$uplink" -s "$range"
    done
  done
  for cmd in iptables ip6tables; do
    for hook in "${HOOKS[@]}"; do ipt "$cmd" -I "$hook" -j "$CHAIN"; done
  done
  log "counting packets through ${uplinks[*]} to or from ${HOST_V4_RANGES[*]} ${HOST_V6_RANGES[*]}"
}

cmd_check() {
  local cmd total=0 rules=0 packets rule
  for cmd in iptables ip6tables; do
    ipt "$cmd" -S "$CHAIN" >/dev/null 2>&1 || die "no $CHAIN chain for $cmd: start the audit first (hack/uplink-audit.sh start)"
    # -S with -v prints each rule's counters as `-c PACKETS BYTES`.
    while read -r -a rule; do
      [[ "${rule[0]}" == -A ]] || continue
      rules=$((rules + 1))
      packets=${rule[-2]}
      if ((packets > 0)); then
        log "$cmd: $packets packet(s) matched: ${rule[*]:2:${#rule[@]}-5}"
        total=$((total + packets))
      fi
    done < <(ipt "$cmd" -S "$CHAIN" -v)
  done
  remove
  ((rules > 0)) || die "the audit had no rules: nothing was counted"
  if ((total > 0)); then
    log "$total packet(s) of our ranges went through the machine's uplink"
    return 1
  fi
  log "no packet of our ranges went through the machine's uplink ($rules counters)"
}

[[ $(id -u) == 0 ]] || die "needs root (iptables)"
case ${1:-} in
  start) cmd_start ;;
  check) cmd_check ;;
  *) sed -n '2,11s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
