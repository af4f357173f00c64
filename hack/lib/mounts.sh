# shellcheck shell=bash
# Mounts a node leaves under its state dir (the kubelet's shared bind mount of its root, volume
# tmpfs, sandbox netns and shm, container root filesystems), and removing such a tree whatever
# is still mounted in it. Sourced by local-cluster.sh and local-node.sh; the caller defines log.

# The mount points at or under DIR, deepest first, one line per mount (a point mounted twice,
# or seen through a shared peer, is listed as often).
mounts_under() {
  awk -v p="$1/" 'index($5, p) == 1 || $5 == substr(p, 1, length(p) - 1) {print $5}' /proc/self/mountinfo | sort -r
}

# Unmounts everything at or under DIR, lazily where a plain unmount is refused (busy), pass after
# pass until nothing is left: stacked mounts and propagated copies go one layer per pass.
unmount_under() {
  local dir=$1 point pass
  local -a points
  for ((pass = 0; pass < 50; pass++)); do
    mapfile -t points < <(mounts_under "$dir")
    ((${#points[@]})) || return 0
    for point in "${points[@]}"; do umount "$point" 2>/dev/null || umount -l "$point" 2>/dev/null || true; done
  done
  log "still mounted under $dir after $pass passes: $(mounts_under "$dir" | head -n 5 | tr '\n' ' ')"
  return 1
}

# Removes DIR once nothing is mounted in it; a mount that appears meanwhile (a process not yet
# dead) gets another pass. Returns 1, saying what is left, when it cannot.
remove_tree() {
  local dir=$1 attempt
  for ((attempt = 0; attempt < 5; attempt++)); do
    [[ -e "$dir" ]] || return 0
    unmount_under "$dir" || true
    rm -rf "$dir" 2>/dev/null && return 0
    sleep 0.2
  done
  log "could not remove $dir: $(rm -rf "$dir" 2>&1 | head -n 3 | tr '\n' ' ')"
  return 1
}
