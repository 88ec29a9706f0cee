/**
 * Cache scenarios: GET hit (against the bare baseline), PUT (plain and tagged), and MGET of 10 keys.
 */
import type { Scenario } from '../types.js';

/** ~200 bytes of JSON, a typical cached object. */
export const VALUE = {
  id: 42,
  sku: 'EF-PRICE-00042',
  price: { amount: 42.5, currency: 'EUR' },
  tags: ['pricing', 'ef', 'hot'],
  updatedAt: '2026-11-21T10:00:00.000Z',
  flags: { promo: false, visible: true },
};

/** About 10 KiB of JSON: stored compressed (over CACHE_COMPRESS_MIN_BYTES), inflated on every read. */
export const BIG_VALUE = {
  items: Array.from({ length: 60 }, (_, i) => ({
    id: i,
    sku: `EF-PRICE-${String(i).padStart(5, '0')}`,
    price: { amount: 42.5 + i, currency: 'EUR' },
    tags: ['pricing', 'ef', 'hot'],
    description: `Item ${i} of the benchmark catalogue, with enough text to look like a real record.`,
  })),
};

export const cacheScenarios: Scenario[] = [
  {
    name: 'baseline GET (bare Fastify + ioredis)',
    id: 'baseline-get',
    target: 'baseline',
    request: () => ({ method: 'GET', path: '/bare/hit' }),
  },
  {
    name: 'cache GET hit',
    id: 'cache-get',
    target: 'gateway',
    baseline: 'baseline-get',
    request: (ctx) => ({ method: 'GET', path: '/v1/cache/bench%3Ahit', headers: ctx.auth }),
  },
  {
    name: 'cache GET hit, 10 KiB value (compressed)',
    id: 'cache-get-10k',
    target: 'gateway',
    baseline: 'baseline-get',
    request: (ctx) => ({ method: 'GET', path: '/v1/cache/bench%3Abig', headers: ctx.auth }),
  },
  {
    name: 'cache PUT',
    id: 'cache-put',
    target: 'gateway',
    request: (ctx) => ({
      method: 'PUT',
      path: '/v1/cache/bench%3Aput',
      headers: { ...ctx.auth, 'content-type': 'application/json' },
      body: JSON.stringify({ value: VALUE, ttl: 300 }),
    }),
  },
  {
    name: 'cache PUT with 2 tags',
    id: 'cache-put-tagged',
    target: 'gateway',
    request: (ctx) => ({
      method: 'PUT',
      path: '/v1/cache/bench%3Atagged',
      headers: { ...ctx.auth, 'content-type': 'application/json' },
      body: JSON.stringify({ value: VALUE, ttl: 300, tags: ['pricing', 'ef'] }),
    }),
  },
  {
    name: 'cache MGET x10',
    id: 'cache-mget10',
    target: 'gateway',
    request: (ctx) => ({
      method: 'POST',
      path: '/v1/cache/_mget',
      headers: { ...ctx.auth, 'content-type': 'application/json' },
      body: JSON.stringify({ keys: Array.from({ length: 10 }, (_, i) => `bench:m${i}`) }),
    }),
  },
];
