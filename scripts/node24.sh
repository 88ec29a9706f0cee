#!/bin/sh
# Prints the directory of a Node 24 binary (the major the Docker image runs), installing it from
# the npm registry's official per-platform package into node_modules/.cache/node24 when missing.
# npm test runs its test projects once more with it; the machine's own Node is 20.
set -eu
cd "$(dirname "$0")/.."
case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "node24.sh: no Node 24 package for $(uname -m)" >&2; exit 1 ;;
esac
dir=node_modules/.cache/node24
bin="$dir/node_modules/node-linux-$arch/bin"
if ! "$bin/node" --version 2>/dev/null | grep -q '^v24\.'; then
  npm install --prefix "$dir" --no-save --no-package-lock --no-audit --no-fund --silent \
    "node-linux-$arch@24" >&2
fi
"$bin/node" --version | grep -q '^v24\.' || { echo "node24.sh: $bin/node is not Node 24" >&2; exit 1; }
echo "$PWD/$bin"
