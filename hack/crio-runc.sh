#!/usr/bin/env bash
# runc for the local node's CRI-O (its runtime_path), doing what two containerd settings do
# and CRI-O has none for. Before `create` or `run` it edits the bundle's config.json, then every
# call goes to runc unchanged:
# - restrict_oom_score_adj: root on our machines lacks CAP_SYS_RESOURCE, so no process may go
#   below its own oom_score_adj, and runc fails every container asking for a lower one
#   (node-critical pods: -997, a pod's infra container: -998) with "can't get final child's PID
#   from pipe: EOF". A lower score is raised to this process's own (conmon's, CRI-O's).
# - disable_hugetlb_controller: on cgroup v1 CRI-O sets hugepage limits when /proc/cgroups lists
#   the controller, mounted or not, and runc then fails with "cannot set hugetlb limit". Where
#   no hugetlb hierarchy is mounted, the limits are dropped.
set -euo pipefail

bundle='' previous=''
for arg in "$@"; do
  case $previous in --bundle | -b) bundle=$arg ;; esac
  case $arg in --bundle=*) bundle=${arg#--bundle=} ;; esac
  previous=$arg
done
config="$bundle/config.json"
if [[ -n "$bundle" && -f "$config" ]]; then
  drop_hugetlb=false
  [[ -e /sys/fs/cgroup/cgroup.controllers || -d /sys/fs/cgroup/hugetlb ]] || drop_hugetlb=true
  jq --argjson own "$(</proc/self/oom_score_adj)" --argjson drop_hugetlb "$drop_hugetlb" '
    if (.process.oomScoreAdj // $own) < $own then .process.oomScoreAdj = $own else . end
    | if $drop_hugetlb and .linux.resources.hugepageLimits then del(.linux.resources.hugepageLimits) else . end
  ' "$config" >"$config.pnc"
  mv "$config.pnc" "$config"
fi
exec runc "$@"
