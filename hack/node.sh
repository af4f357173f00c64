#!/usr/bin/env bash
# Runs node with the given arguments on a Node >= 22.19, installing Node 24 into the cache
# first when the machine's is older (hack/ensure-node.sh), and keeps that node first on
# PATH for every child process. Lets `npm ci && npm run demo` work on a machine whose own
# node is too old to run TypeScript.
set -euo pipefail
node_bin=$(bash "$(dirname "$0")/ensure-node.sh")
export PATH="$node_bin:$PATH"
exec node "$@"
