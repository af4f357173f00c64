# shellcheck shell=bash
# A kubelet's certificates, signed by the cluster CA. Sourced by local-node.sh and vm-node.sh.

# make_node_pki DIR CA_DIR NODE_NAME IP...: the client certificate the Node authorizer and
# NodeRestriction know the kubelet by (O=system:nodes, CN=system:node:<name>), and the serving
# certificate the API server checks against the CA and the node's IPs. Kept once complete.
make_node_pki() {
  local dir=$1 ca=$2 name=$3 sans ip
  shift 3
  [[ -f "$dir/complete" ]] && return 0
  sans=$(for ip in "$@"; do printf 'IP:%s,' "$ip"; done)
  rm -rf "$dir"
  mkdir -p "$dir"
  (
    cd "$dir" || exit 1
    openssl req -newkey rsa:2048 -nodes -keyout kubelet-client.key -out kubelet-client.csr \
      -subj "/O=system:nodes/CN=system:node:$name" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl x509 -req -in kubelet-client.csr -CA "$ca/ca.crt" -CAkey "$ca/ca.key" -CAcreateserial -days 3650 \
      -extfile client.ext -out kubelet-client.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout kubelet.key -out kubelet.csr -subj "/CN=$name" 2>/dev/null
    printf 'subjectAltName=%sDNS:%s\nextendedKeyUsage=serverAuth\n' "$sans" "$name" >serving.ext
    openssl x509 -req -in kubelet.csr -CA "$ca/ca.crt" -CAkey "$ca/ca.key" -CAcreateserial -days 3650 \
      -extfile serving.ext -out kubelet.crt 2>/dev/null
    rm -f ./*.csr ./*.ext
    chmod 600 ./*.key
    touch complete
  )
}
