#!/usr/bin/env bash
# Compiles the test proxy into OUT: static (the image holds nothing else), warnings are errors.
set -euo pipefail
[[ $# == 1 ]] || { echo "usage: $0 OUT" >&2; exit 2; }
gcc -static -Os -s -Wall -Wextra -Werror -o "$1" "$(dirname "${BASH_SOURCE[0]}")/test-proxy.c"
