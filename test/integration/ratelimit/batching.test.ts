/**
 * Single checks that arrive in one event-loop turn go to Redis as one script call: decisions are
 * the same as one call each (in arrival order, checks of one key see each other), the batch is
 * capped at RATELIMIT_BATCH_MAX, and a check that makes the script fail fails alone. (A batch Redis
 * cannot answer, each check then decided by its own failure mode, is in
 * test/sentinel/ratelimit-degraded.test.ts, which runs with the default batching.)
 */
import { describe, expect, it } from 'vitest';
import { type PolicyDefinition, compilePolicy } from '../../../src/modules/ratelimit/policy.js';
import type { Decision } from '../../../src/modules/ratelimit/service.js';
import { keys } from '../../../src/redis/keys.js';
import { newTenant, useTestApp } from '../../harness/app.js';

const batched = useTestApp({
  env: { RATELIMIT_LOCAL_DENY_ENTRIES: '0', RATELIMIT_BATCH_MAX: '8' },
});
const single = useTestApp({ env: { RATELIMIT_LOCAL_DENY_ENTRIES: '0', RATELIMIT_BATCH_MAX: '1' } });

let counter = 0;
/** 5 s, not the default 50 ms: on a busy CI host a check allowed degraded would skew the counts. */
const policy = (def: PolicyDefinition) =>
  compilePolicy(`batch${++counter}-${Date.now()}`, 'file', { timeoutMs: 5000, ...def });

/** The batch-size histogram's count (script calls) and sum (checks sent). */
async function batchSizes(t: typeof batched): Promise<{ count: number; sum: number }> {
  const text = await t.deps.metrics.registry.getSingleMetricAsString(
    'gateway_ratelimit_batch_checks',
  );
  const num = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
  return {
    count: num('gateway_ratelimit_batch_checks_count'),
    sum: num('gateway_ratelimit_batch_checks_sum'),
  };
}

/** 60 checks fired in one turn: 30 on one key (limit 10), 2 on each of 15 keys, 0-cost peeks. */
async function burst(t: typeof batched): Promise<Decision[]> {
  const { tenant } = await newTenant(t.deps, ['ratelimit:check']);
  const p = policy({ algorithm: 'token_bucket', capacity: 10, refillPerSecond: 0.001 });
  const calls: Promise<Decision>[] = [];
  for (let i = 0; i < 30; i++) {
    calls.push(
      Promise.resolve(t.deps.ratelimit.check(tenant, { policy: p, identifier: 'hot', cost: 1 })),
    );
    calls.push(
      Promise.resolve(
        t.deps.ratelimit.check(tenant, {
          policy: p,
          identifier: `cold-${i % 15}`,
          cost: i < 15 ? 4 : 0,
        }),
      ),
    );
  }
  return Promise.all(calls);
}

describe('rate-limit check batching', () => {
  it('decides exactly as one call per check, in arrival order', async () => {
    const before = await batchSizes(batched);
    const [b, s] = [await burst(batched), await burst(single)];
    const view = (d: Decision) => [d.allowed, d.remaining, d.limit];
    expect(b.map(view)).toEqual(s.map(view));
    const hot = b.filter((_, i) => i % 2 === 0);
    // The first 10 checks of the hot key are allowed, in the order they were made.
    expect(hot.map((d) => d.allowed)).toEqual([...Array(10).fill(true), ...Array(20).fill(false)]);
    expect(hot.slice(0, 10).map((d) => d.remaining)).toEqual([9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
    // Each cold key: cost 4 consumed, then a peek (cost 0) sees what is left.
    const cold = b.filter((_, i) => i % 2 === 1);
    expect(cold.slice(0, 15).every((d) => d.allowed && d.remaining === 6)).toBe(true);
    expect(cold.slice(15).every((d) => d.allowed && d.remaining === 6)).toBe(true);
    // 60 checks in batches of at most 8: at least 8 script calls, 60 checks in all.
    const after = await batchSizes(batched);
    expect(after.sum - before.sum).toBe(60);
    expect(after.count - before.count).toBeGreaterThanOrEqual(8);
    expect(after.count - before.count).toBeLessThan(60);
  });

  it('sends one call per check when RATELIMIT_BATCH_MAX is 1', async () => {
    const before = await batchSizes(single);
    await burst(single);
    const after = await batchSizes(single);
    expect(after.count - before.count).toBe(60);
    expect(after.sum - before.sum).toBe(60);
  });

  it('a check that makes the script fail fails alone; the others of its batch are decided', async () => {
    const t = batched;
    const { tenant } = await newTenant(t.deps, ['ratelimit:check']);
    const p = policy({ algorithm: 'token_bucket', capacity: 5, refillPerSecond: 0.001 });
    // A state key holding a hash makes the script fail (WRONGTYPE) for the whole call.
    const bad = keys.ratelimit(tenant, p.stateName, 'tb', 'bad');
    await t.deps.redis.primary.hset(bad, 'x', '1');
    const results = await Promise.allSettled([
      t.deps.ratelimit.check(tenant, { policy: p, identifier: 'a', cost: 1 }),
      t.deps.ratelimit.check(tenant, { policy: p, identifier: 'bad', cost: 1 }),
      t.deps.ratelimit.check(tenant, { policy: p, identifier: 'b', cost: 1 }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(results[1]).toMatchObject({ reason: { message: expect.stringMatching(/WRONGTYPE/) } });
    // Each good check was applied exactly once.
    const again = await t.deps.ratelimit.check(tenant, { policy: p, identifier: 'a', cost: 0 });
    expect(again.remaining).toBe(4);
  });
});
