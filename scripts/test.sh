#!/bin/sh
# Every test, in order, stopping at the first failure: lint, typecheck, OpenAPI drift, unit tests,
# integration tests against a real Sentinel topology, failover tests.
set -eu
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci --no-audit --no-fund
sh scripts/ensure-redis.sh
step() { printf '\n=== %s\n' "$1"; }
step lint;            npm run -s lint
step typecheck;       npm run -s typecheck
step openapi:check;   npm run -s openapi:check
step "unit tests";    npx vitest run --project unit
step "integration";   npx vitest run --project integration
step "sentinel";      npx vitest run --project sentinel
printf '\nall tests passed\n'
