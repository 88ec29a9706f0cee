/**
 * Rate-limit scenarios: /check with a token bucket and with GCRA over 1000 distinct identifiers,
 * the API-gateway hook (1000 client addresses), and the bare node:http + ioredis token-bucket
 * baseline. Limits are generous: these measure the decision path, not denials.
 */
import type { Request } from 'autocannon';
import type { Scenario } from '../types.js';

export const RATELIMIT_POLICIES = {
  'bench-tb': { algorithm: 'token_bucket', capacity: 100_000, refillPerSecond: 100_000 },
  'bench-gcra': { algorithm: 'gcra', limit: 100_000, periodMs: 1000, burst: 100_000 },
  'bench-hook': { algorithm: 'token_bucket', capacity: 100_000, refillPerSecond: 100_000 },
} as const;

const IDS = 1000;
let n = 0;
const nextId = () => (n = (n + 1) % IDS);

/** A JSON body naming a different identifier on every request. */
function rotatingBody(make: (id: number) => unknown) {
  return (req: Request): Request => ({ ...req, body: JSON.stringify(make(nextId())) });
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
  {
    name: 'ratelimit check, token_bucket, 1k ids',
    id: 'ratelimit-tb',
    target: 'gateway',
    baseline: 'baseline-ratelimit',
    request: (ctx) => ({
      method: 'POST',
      path: '/v1/ratelimit/check',
      headers: { ...ctx.auth, 'content-type': 'application/json' },
      body: JSON.stringify({ policy: 'bench-tb', key: 'user:0' }),
      setupRequest: rotatingBody((id) => ({ policy: 'bench-tb', key: `user:${id}` })),
    }),
  },
  {
    name: 'ratelimit check, gcra, 1k ids',
    id: 'ratelimit-gcra',
    target: 'gateway',
    baseline: 'baseline-ratelimit',
    request: (ctx) => ({
      method: 'POST',
      path: '/v1/ratelimit/check',
      headers: { ...ctx.auth, 'content-type': 'application/json' },
      body: JSON.stringify({ policy: 'bench-gcra', key: 'user:0' }),
      setupRequest: rotatingBody((id) => ({ policy: 'bench-gcra', key: `user:${id}` })),
    }),
  },
  {
    name: 'ratelimit hook (GET, X-Forwarded-For of 1k clients)',
    id: 'ratelimit-hook',
    target: 'gateway',
    baseline: 'baseline-ratelimit',
    request: (ctx) => ({
      method: 'GET',
      path: '/v1/ratelimit/hook/bench-hook/api/orders',
      headers: { 'x-gateway-key': ctx.auth.authorization.slice('Bearer '.length) },
      setupRequest: (req: Request): Request => {
        const id = nextId();
        return {
          ...req,
          headers: { ...req.headers, 'x-forwarded-for': `10.0.${id >> 8}.${id & 255}` },
        };
      },
    }),
  },
];
