#!/bin/sh
# Every test, in order, stopping at the first failure: lint, typecheck, OpenAPI drift, unit tests,
# integration tests against a real Sentinel topology, failover tests; then all three test projects
# again on Node 24, the image's runtime.
set -eu
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci --no-audit --no-fund
# Redis for every tier; nginx for the test of the README's NGINX snippet; iproute2's `ip` for the
# partition test's network namespace; openssl for the TLS tests' certificates.
sh scripts/ensure-packages.sh redis-server:redis-server redis-sentinel:redis-sentinel \
  nginx:nginx-light ip:iproute2 openssl:openssl
step() { printf '\n=== %s\n' "$1"; }
step lint;            npm run -s lint
step typecheck;       npm run -s typecheck
step openapi:check;   npm run -s openapi:check
step "unit tests";    npx vitest run --project unit
step "integration";   npx vitest run --project integration
step "sentinel";      npx vitest run --project sentinel
# The image runs Node 24 (Dockerfile); every test project runs on it as well.
# TEST_NODE24=0 skips this (say, offline); it needs the npm registry once, then uses the cache.
if [ "${TEST_NODE24:-1}" != 0 ]; then
  step "unit, integration and sentinel on Node 24"
  node24="$(sh scripts/node24.sh)"
  PATH="$node24:$PATH" node --version
  PATH="$node24:$PATH" npx vitest run --project unit --project integration
  PATH="$node24:$PATH" npx vitest run --project sentinel
fi
printf '\nall tests passed\n'
