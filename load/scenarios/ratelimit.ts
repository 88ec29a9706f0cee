/**
 * Rate-limit scenarios: /check with a token bucket and with GCRA over 1000 distinct identifiers,
 * the API-gateway hook (1000 client addresses), the envoyproxy/ratelimit /json mirror (1000
 * addresses), and the bare node:http + ioredis token-bucket baseline. Their limits are generous: they measure the decision path, not denials. The flood pair
 * (100 identifiers each limited to 10 requests, refilled 1 per second, so nearly every request is
 * denied) measures denials: the gateway answers a key it saw denied from memory until its
 * retry-after (the in-process denial cache), the bare server runs the script for every one.
 * The `-lease` twins run the same requests against the same limits with `leaseMs: 1000`: each
 * replica reserves units of a busy identifier in Redis and gives them out itself (every
 * identifier here makes about 10 requests a second, so a lease holds about ten).
 */
import type { Request } from 'autocannon';
import type { Scenario } from '../types.js';

export const RATELIMIT_POLICIES = {
  'bench-tb': { algorithm: 'token_bucket', capacity: 100_000, refillPerSecond: 100_000 },
  'bench-gcra': { algorithm: 'gcra', limit: 100_000, periodMs: 1000, burst: 100_000 },
  'bench-hook': { algorithm: 'token_bucket', capacity: 100_000, refillPerSecond: 100_000 },
  'bench-flood': { algorithm: 'token_bucket', capacity: 10, refillPerSecond: 1 },
  'bench-tb-lease': {
    algorithm: 'token_bucket',
    capacity: 100_000,
    refillPerSecond: 100_000,
    leaseMs: 1000,
  },
  'bench-gcra-lease': {
    algorithm: 'gcra',
    limit: 100_000,
    periodMs: 1000,
    burst: 100_000,
    leaseMs: 1000,
  },
  'bench-hook-lease': {
    algorithm: 'token_bucket',
    capacity: 100_000,
    refillPerSecond: 100_000,
    leaseMs: 1000,
  },
} as const;

/**
 * The gateway's policies file for the bench: the envoyproxy/ratelimit domains of `ratelimit-envoy`
 * and of its lease twin (the same limit, with `envoyOptions` leases).
 */
export const BENCH_POLICIES_FILE = [
  'envoy:',
  '  - domain: bench',
  '    descriptors:',
  '      - key: remote_address',
  '        rate_limit: { unit: second, requests_per_unit: 100000 }',
  '  - domain: bench-lease',
  '    descriptors:',
  '      - key: remote_address',
  '        rate_limit: { unit: second, requests_per_unit: 100000 }',
  'envoyOptions:',
  '  bench-lease: { leaseMs: 1000 }',
  '',
].join('\n');

const IDS = 1000;
let n = 0;
const nextId = () => (n = (n + 1) % IDS);
/** The flood's clients: few, each far over its limit. */
const FLOOD_IDS = 100;

/** A RateLimitRequest for the bench domain, one remote address per identifier. */
export function envoyRequest(id: number, domain = 'bench') {
  return {
    domain,
    descriptors: [{ entries: [{ key: 'remote_address', value: `10.0.${id >> 8}.${id & 255}` }] }],
  };
}

/** The hook's requests: a different client address (X-Forwarded-For) on every one. */
function forwardedFor(req: Request): Request {
  const id = nextId();
  return { ...req, headers: { ...req.headers, 'x-forwarded-for': `10.0.${id >> 8}.${id & 255}` } };
}

/** A JSON body naming a different identifier on every request. */
function rotatingBody(make: (id: number) => unknown) {
  return (req: Request): Request => ({ ...req, body: JSON.stringify(make(nextId())) });
}

/** A JSON POST to `path` against the bare token bucket, its body made for identifier 0..999. */
function postScenario(
  name: string,
  id: string,
  path: string,
  make: (id: number) => unknown,
): Scenario {
  return {
    name,
    id,
    target: 'gateway',
    baseline: 'baseline-ratelimit',
    request: (ctx) => ({
      method: 'POST',
      path,
      headers: { ...ctx.auth, 'content-type': 'application/json' },
      body: JSON.stringify(make(0)),
      setupRequest: rotatingBody(make),
    }),
  };
}

/** POST /v1/ratelimit/check of `policy`, a different identifier of 1000 on every request. */
function checkScenario(name: string, id: string, policy: string): Scenario {
  return postScenario(name, id, '/v1/ratelimit/check', (n) => ({ policy, key: `user:${n}` }));
}

/** POST /v1/ratelimit/envoy against `domain`, a different remote address of 1000 each time. */
function envoyScenario(name: string, id: string, domain: string): Scenario {
  return postScenario(name, id, '/v1/ratelimit/envoy', (n) => envoyRequest(n, domain));
}

/** The hook with `policy`, as an API gateway calls it, for 1000 client addresses. */
function hookScenario(name: string, id: string, policy: string): Scenario {
  return {
    name,
    id,
    target: 'gateway',
    baseline: 'baseline-ratelimit',
    request: (ctx) => ({
      method: 'GET',
      path: `/v1/ratelimit/hook/${policy}/api/orders`,
      headers: { 'x-gateway-key': ctx.auth.authorization.slice('Bearer '.length) },
      setupRequest: forwardedFor,
    }),
  };
}

export const ratelimitScenarios: Scenario[] = [
  {
    name: 'baseline rate-limit check (bare node:http + ioredis Lua token bucket)',
    id: 'baseline-ratelimit',
    target: 'baseline-ratelimit',
    request: () => ({
      method: 'POST',
      path: '/rl',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ key: 'user:0' }),
      setupRequest: rotatingBody((id) => ({ key: `user:${id}` })),
    }),
  },
  checkScenario('ratelimit check, token_bucket, 1k ids', 'ratelimit-tb', 'bench-tb'),
  checkScenario('ratelimit check, gcra, 1k ids', 'ratelimit-gcra', 'bench-gcra'),
  envoyScenario(
    'envoyproxy/ratelimit /json mirror (POST /v1/ratelimit/envoy, 1k addresses)',
    'ratelimit-envoy',
    'bench',
  ),
  hookScenario(
    'ratelimit hook (GET, X-Forwarded-For of 1k clients)',
    'ratelimit-hook',
    'bench-hook',
  ),
  {
    name: 'baseline rate-limit flood (bare, 100 ids over a 10-token bucket)',
    id: 'baseline-ratelimit-flood',
    target: 'baseline-ratelimit',
    request: () => ({
      method: 'POST',
      path: '/rl/flood',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ key: 'user:0' }),
      setupRequest: rotatingBody((id) => ({ key: `user:${id % FLOOD_IDS}` })),
    }),
  },
  {
    name: 'ratelimit flood, token_bucket, 100 ids mostly denied',
    id: 'ratelimit-flood',
    target: 'gateway',
    baseline: 'baseline-ratelimit-flood',
    request: (ctx) => ({
      method: 'POST',
      path: '/v1/ratelimit/check',
      headers: { ...ctx.auth, 'content-type': 'application/json' },
      body: JSON.stringify({ policy: 'bench-flood', key: 'user:0' }),
      setupRequest: rotatingBody((id) => ({
        policy: 'bench-flood',
        key: `user:${id % FLOOD_IDS}`,
      })),
    }),
  },
  checkScenario(
    'ratelimit check, token_bucket, 1k ids, leases',
    'ratelimit-tb-lease',
    'bench-tb-lease',
  ),
  checkScenario(
    'ratelimit check, gcra, 1k ids, leases',
    'ratelimit-gcra-lease',
    'bench-gcra-lease',
  ),
  hookScenario(
    'ratelimit hook (GET, X-Forwarded-For of 1k clients), leases',
    'ratelimit-hook-lease',
    'bench-hook-lease',
  ),
  envoyScenario(
    'envoyproxy/ratelimit /json mirror (POST /v1/ratelimit/envoy, 1k addresses), leases',
    'ratelimit-envoy-lease',
    'bench-lease',
  ),
];
