#!/bin/sh
# Quick start: dependencies, Redis binaries, a local Sentinel topology, a gateway and a demo key.
set -eu
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci --no-audit --no-fund
sh scripts/ensure-packages.sh redis-server:redis-server redis-sentinel:redis-sentinel
exec node --import tsx scripts/local.ts
