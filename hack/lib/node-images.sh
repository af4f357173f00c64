# shellcheck shell=bash
# OCI image archives into the local node's runtime, which has no registry to pull from:
# containerd through ctr (namespace k8s.io), CRI-O through skopeo into its containers-storage
# (CRI-O pulls only from registries). Sourced by local-node.sh and build-images.sh; the caller
# defines log and die.

# node_image_target: which runtime CONTAINERD_ADDRESS or CRIO_STORAGE_CONF (what
# `hack/local-cluster.sh env` exports) name; fails saying what to set when neither.
node_image_target() {
  if [[ -n "${CONTAINERD_ADDRESS:-}" ]]; then
    command -v ctr >/dev/null || die "ctr is missing: apt-get install containerd"
    echo containerd
  elif [[ -n "${CRIO_STORAGE_CONF:-}" ]]; then
    command -v skopeo >/dev/null || die "skopeo is missing: apt-get install skopeo"
    echo cri-o
  else
    die "no node to import into: set CONTAINERD_ADDRESS or CRIO_STORAGE_CONF (eval \"\$(bash hack/local-cluster.sh env)\")"
  fi
}

# import_oci_archive ARCHIVE IMAGE: unless the node already holds that exact manifest under IMAGE.
import_oci_archive() {
  local archive=$1 image=$2 digest target
  target=$(node_image_target)
  digest=$(tar -xOf "$archive" index.json | grep -o '"digest":"sha256:[0-9a-f]*"' | head -n1 | cut -d'"' -f4)
  if [[ $target == cri-o ]]; then
    # The storage.conf names the node's storage alone, so nothing else of the host's is read.
    # --insecure-policy: a local archive, no signature to check.
    local store=(env CONTAINERS_STORAGE_CONF="$CRIO_STORAGE_CONF" skopeo --insecure-policy)
    if [[ "sha256:$("${store[@]}" inspect --raw "containers-storage:$image" 2>/dev/null | sha256sum | cut -d' ' -f1)" == "$digest" ]]; then
      log "$image is already in CRI-O's storage ($digest)"
      return 0
    fi
    "${store[@]}" copy --quiet "oci-archive:$archive" "containers-storage:$image" >/dev/null
    log "imported $image into CRI-O's storage ($CRIO_STORAGE_CONF)"
    return 0
  fi
  if ctr -n k8s.io -a "$CONTAINERD_ADDRESS" images ls "name==$image" | grep -qF -- "$digest"; then
    log "$image is already in containerd ($digest)"
    return 0
  fi
  ctr -n k8s.io -a "$CONTAINERD_ADDRESS" images import "$archive" >/dev/null
  log "imported $image into containerd ($CONTAINERD_ADDRESS, namespace k8s.io)"
}
