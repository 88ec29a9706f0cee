/**
 * The five algorithms against real Redis, through the service and the check script, with the
 * clock pinned (time is an argument): one conformance table for all five, each algorithm's own
 * cases, and a model check against the in-memory reference implementations.
 */
import { describe, expect, it } from 'vitest';
import { manualClock } from '../../../src/clock.js';
import { type PolicyDefinition, compilePolicy } from '../../../src/modules/ratelimit/policy.js';
import type { Decision } from '../../../src/modules/ratelimit/service.js';
import { keys } from '../../../src/redis/keys.js';
import { adminRedis, newTenant, randomTenantId, useTestApp } from '../../harness/app.js';
import {
  type Model,
  fixedWindowModel,
  gcraModel,
  seeded,
  slidingLogModel,
  slidingWindowModel,
  tokenBucketModel,
} from '../../harness/ratelimit-model.js';

// A minute boundary, so calendar windows start here.
const T0 = 1_800_000_000_000 - (1_800_000_000_000 % 3_600_000);
const clock = manualClock(T0);
// The in-process denial cache answers from what it saw (and a lagging clock sees it differently
// than Redis would): off here, so every decision is the script's; tested on its own below.
const t = useTestApp({ clock, env: { RATELIMIT_LOCAL_DENY_ENTRIES: '0' } });
const cached = useTestApp({ clock });

const LIMIT = 5;
const WINDOW = 60_000;
const CONFORMANCE: Record<string, PolicyDefinition> = {
  token_bucket: { algorithm: 'token_bucket', capacity: LIMIT, refillPerSecond: LIMIT / 60 },
  gcra: { algorithm: 'gcra', limit: LIMIT, periodMs: WINDOW, burst: LIMIT },
  sliding_log: { algorithm: 'sliding_log', limit: LIMIT, windowMs: WINDOW },
  sliding_window: { algorithm: 'sliding_window', limit: LIMIT, windowMs: WINDOW },
  fixed_window: { algorithm: 'fixed_window', limit: LIMIT, windowMs: WINDOW, calendar: true },
};

let counter = 0;
/**
 * A fresh policy name, so every test starts from empty state. The decisions compared here are
 * Redis's: a check that waited out the default 50 ms (a busy CI host running two test projects at
 * once) would be allowed degraded, with the full quota as remaining (seen once in CI).
 */
function policy(def: PolicyDefinition) {
  return compilePolicy(`p${++counter}-${Date.now()}`, 'file', { timeoutMs: 5000, ...def });
}

async function tenant(): Promise<string> {
  return (await newTenant(t.deps, ['ratelimit:check'])).tenant;
}

async function check(
  tn: string,
  p: ReturnType<typeof policy>,
  identifier = 'id',
  cost = 1,
): Promise<Decision> {
  return t.deps.ratelimit.check(tn, { policy: p, identifier, cost });
}

describe.each(Object.entries(CONFORMANCE))('%s conformance', (_name, def) => {
  it('allows exactly the limit, then denies with a retry time', async () => {
    clock.set(T0);
    const tn = await tenant();
    const p = policy(def);
    for (let i = 0; i < LIMIT; i++) {
      const d = await check(tn, p);
      expect(d.allowed, `request ${i + 1}`).toBe(true);
      expect(d.remaining).toBe(LIMIT - i - 1);
      expect(d.limit).toBe(LIMIT);
    }
    const denied = await check(tn, p);
    expect(denied.allowed).toBe(false);
    expect(denied.remaining).toBe(0);
    expect(denied.retryAfterMs).toBeGreaterThan(0);
    // (sliding window: the previous window's weight must shrink first, so up to 2 windows)
    expect(denied.retryAfterMs).toBeLessThanOrEqual(2 * WINDOW);
    expect(denied.resetMs).toBeGreaterThanOrEqual(denied.retryAfterMs);
  });

  it('allows again exactly at the retry time, not a millisecond before', async () => {
    clock.set(T0);
    const tn = await tenant();
    const p = policy({ ...def, shadow: false });
    for (let i = 0; i < LIMIT; i++) await check(tn, p);
    const denied = await check(tn, p, 'id', 0); // peek: no local denial cache in the way
    expect(denied.allowed).toBe(false);
    clock.advance(denied.retryAfterMs - 1);
    expect((await check(tn, p, 'id', 0)).allowed).toBe(false);
    clock.advance(1);
    expect((await check(tn, p)).allowed).toBe(true);
  });

  it('is fully restored after resetMs', async () => {
    clock.set(T0);
    const tn = await tenant();
    const p = policy(def);
    let last: Decision | undefined;
    for (let i = 0; i < LIMIT; i++) last = await check(tn, p);
    clock.advance((last as Decision).resetMs);
    const peek = await check(tn, p, 'id', 0);
    expect(peek.remaining).toBe(LIMIT);
  });

  it('consumes `cost` units; a cost over what remains is denied and consumes nothing', async () => {
    clock.set(T0);
    const tn = await tenant();
    const p = policy(def);
    expect((await check(tn, p, 'id', 3)).remaining).toBe(LIMIT - 3);
    const over = await check(tn, p, 'id', 3);
    expect(over.allowed).toBe(false);
    expect(over.remaining).toBe(LIMIT - 3);
    expect((await check(tn, p, 'id', 2)).remaining).toBe(0);
  });

  it('peeks with cost 0: reports without consuming', async () => {
    clock.set(T0);
    const tn = await tenant();
    const p = policy(def);
    await check(tn, p);
    for (let i = 0; i < 3; i++) {
      const d = await check(tn, p, 'id', 0);
      expect(d.allowed).toBe(true);
      expect(d.remaining).toBe(LIMIT - 1);
    }
  });

  it('keeps identifiers and tenants apart', async () => {
    clock.set(T0);
    const [a, b] = [await tenant(), await tenant()];
    const p = policy(def);
    for (let i = 0; i < LIMIT; i++) await check(a, p, 'x');
    expect((await check(a, p, 'x')).allowed).toBe(false);
    expect((await check(a, p, 'y')).remaining).toBe(LIMIT - 1);
    expect((await check(b, p, 'x')).remaining).toBe(LIMIT - 1);
  });

  it('never refills for a replica whose clock is behind (skew clamp)', async () => {
    clock.set(T0 + 30_000);
    const tn = await tenant();
    const p = policy(def);
    for (let i = 0; i < LIMIT; i++) await check(tn, p);
    // Another replica, its clock 20 s behind: no request may get through.
    clock.set(T0 + 10_000);
    for (let i = 0; i < 3; i++) expect((await check(tn, p)).allowed).toBe(false);
  });

  it('leaves a key that expires on its own', async () => {
    clock.set(T0);
    const tn = await tenant();
    const p = policy(def);
    await check(tn, p, 'ttl');
    const redis = await adminRedis(t);
    try {
      const key = keys.ratelimit(tn, p.stateName, p.code as string, 'ttl');
      const ttl = await redis.pttl(key);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(2 * WINDOW + 1);
    } finally {
      redis.disconnect();
    }
  });
});

describe('each algorithm', () => {
  it('token bucket refills continuously, fractional rates included', async () => {
    clock.set(T0);
    const tn = await tenant();
    const p = policy({ algorithm: 'token_bucket', capacity: 10, refillPerSecond: 1.67 });
    for (let i = 0; i < 10; i++) await check(tn, p);
    const denied = await check(tn, p, 'id', 0);
    expect(denied.retryAfterMs).toBe(Math.ceil(1000 / 1.67)); // 599 ms for one token
    clock.advance(3000); // 5.01 tokens
    expect((await check(tn, p, 'id', 0)).remaining).toBe(5);
    expect((await check(tn, p, 'id', 5)).allowed).toBe(true);
    expect((await check(tn, p, 'id', 0)).allowed).toBe(false);
  });

  it('GCRA allows the burst back to back, then one per interval', async () => {
    clock.set(T0);
    const tn = await tenant();
    const p = policy({ algorithm: 'gcra', limit: 100, periodMs: 60_000, burst: 3 });
    for (let i = 0; i < 3; i++) expect((await check(tn, p)).allowed).toBe(true);
    const denied = await check(tn, p, 'id', 0);
    expect(denied.allowed).toBe(false);
    expect(denied.retryAfterMs).toBe(600);
    expect(denied.limit).toBe(3);
    clock.advance(600);
    expect((await check(tn, p)).allowed).toBe(true);
    expect((await check(tn, p, 'id', 0)).allowed).toBe(false);
  });

  it('GCRA defaults to no burst: evenly spaced', async () => {
    clock.set(T0);
    const tn = await tenant();
    const p = policy({ algorithm: 'gcra', limit: 10, periodMs: 1000 });
    expect((await check(tn, p)).allowed).toBe(true);
    expect((await check(tn, p, 'id', 0)).retryAfterMs).toBe(100);
  });

  it('sliding log is exact: units leave the window one by one', async () => {
    clock.set(T0);
    const tn = await tenant();
    const p = policy({ algorithm: 'sliding_log', limit: 3, windowMs: 10_000 });
    for (const at of [0, 1000, 2000]) {
      clock.set(T0 + at);
      expect((await check(tn, p)).allowed).toBe(true);
    }
    clock.set(T0 + 9999);
    const denied = await check(tn, p, 'id', 0);
    expect(denied.allowed).toBe(false);
    expect(denied.retryAfterMs).toBe(1);
    clock.set(T0 + 10_000);
    expect((await check(tn, p)).allowed).toBe(true);
    expect((await check(tn, p, 'id', 0)).allowed).toBe(false); // the 1000 ms one is still in
    clock.set(T0 + 11_000);
    expect((await check(tn, p)).allowed).toBe(true);
  });

  it('sliding window weights the previous window by its overlap', async () => {
    clock.set(T0);
    const tn = await tenant();
    const p = policy({ algorithm: 'sliding_window', limit: 10, windowMs: 10_000 });
    expect((await check(tn, p, 'id', 10)).allowed).toBe(true);
    clock.set(T0 + 15_000); // half of the previous window still counts: 5
    const peek = await check(tn, p, 'id', 0);
    expect(peek.remaining).toBe(5);
    expect((await check(tn, p, 'id', 5)).allowed).toBe(true);
    const denied = await check(tn, p, 'id', 0);
    expect(denied.allowed).toBe(false);
    // 10 * (1 - e/10000) + 5 + 1 <= 10  =>  e >= 6000: 1000 ms after now
    expect(denied.retryAfterMs).toBe(1000);
  });

  it('fixed window, calendar-aligned: resets at the boundary', async () => {
    clock.set(T0 + 59_000);
    const tn = await tenant();
    const p = policy({ algorithm: 'fixed_window', limit: 2, windowMs: 60_000, calendar: true });
    await check(tn, p, 'id', 2);
    const denied = await check(tn, p, 'id', 0);
    expect(denied.retryAfterMs).toBe(1000);
    clock.set(T0 + 60_000);
    expect((await check(tn, p, 'id', 2)).allowed).toBe(true);
  });

  it('fixed window from the first request: the window starts with it', async () => {
    clock.set(T0 + 59_000);
    const tn = await tenant();
    const p = policy({ algorithm: 'fixed_window', limit: 2, windowMs: 60_000 });
    await check(tn, p, 'id', 2);
    expect((await check(tn, p, 'id', 0)).retryAfterMs).toBe(60_000);
    clock.set(T0 + 60_000);
    expect((await check(tn, p)).allowed).toBe(false);
    clock.set(T0 + 119_000);
    expect((await check(tn, p)).allowed).toBe(true);
  });

  it('unlimited never touches Redis and always allows', async () => {
    const tn = await tenant();
    const p = policy({ algorithm: 'unlimited' });
    const d = await check(tn, p, 'id', 1_000_000);
    expect(d).toMatchObject({ allowed: true, limit: null, remaining: null });
  });
});

describe('model check: random sequences against the reference implementations', () => {
  const cases: [string, PolicyDefinition, () => Model][] = [
    [
      'token_bucket',
      { algorithm: 'token_bucket', capacity: 7, refillPerSecond: 2.5 },
      () => tokenBucketModel(7, 2.5),
    ],
    [
      'gcra',
      { algorithm: 'gcra', limit: 30, periodMs: 10_000, burst: 4 },
      () => gcraModel(30, 10_000, 4),
    ],
    [
      'sliding_log',
      { algorithm: 'sliding_log', limit: 6, windowMs: 5000 },
      () => slidingLogModel(6, 5000),
    ],
    [
      'sliding_window',
      { algorithm: 'sliding_window', limit: 9, windowMs: 4000 },
      () => slidingWindowModel(9, 4000),
    ],
    [
      'fixed_window',
      { algorithm: 'fixed_window', limit: 8, windowMs: 3000 },
      () => fixedWindowModel(8, 3000, false),
    ],
    [
      'fixed_window calendar',
      { algorithm: 'fixed_window', limit: 8, windowMs: 3000, calendar: true },
      () => fixedWindowModel(8, 3000, true),
    ],
  ];

  it.each(cases)('%s agrees on every decision', async (_name, def, makeModel) => {
    const tn = await tenant();
    // A seeded generator: a failure names the seed that reproduces it.
    for (const seed of [1, 2, 3]) {
      const rand = seeded(seed);
      const p = policy(def);
      const model = makeModel();
      let now = T0 + 7;
      for (let step = 0; step < 150; step++) {
        const r = rand();
        now += r < 0.5 ? 0 : r < 0.8 ? Math.floor(rand() * 400) : Math.floor(rand() * 4000);
        // A few steps back in time: another replica whose clock lags.
        const at = rand() < 0.05 ? now - Math.floor(rand() * 300) : now;
        const cost = rand() < 0.15 ? 0 : rand() < 0.7 ? 1 : 1 + Math.floor(rand() * 3);
        clock.set(at);
        const got = await check(tn, p, `seed-${seed}`, cost);
        expect(got.degraded, `seed ${seed} step ${step}: Redis did not decide`).toBeUndefined();
        const want = model.check(at, cost);
        const { allowed, limit, remaining, resetMs, retryAfterMs } = got;
        expect(
          { allowed, limit, remaining, resetMs, retryAfterMs },
          `seed ${seed} step ${step} t=${at - T0} cost ${cost}`,
        ).toEqual(want);
      }
    }
  });
});

describe('several checks in one call', () => {
  it('atomic: nothing is consumed unless every check allows', async () => {
    clock.set(T0);
    const tn = await tenant();
    const a = policy({ algorithm: 'fixed_window', limit: 5, windowMs: WINDOW });
    const b = policy({ algorithm: 'fixed_window', limit: 1, windowMs: WINDOW });
    await check(tn, b);
    const ds = await t.deps.ratelimit.checkMany(
      tn,
      [
        { policy: a, identifier: 'id', cost: 1 },
        { policy: b, identifier: 'id', cost: 1 },
      ],
      true,
    );
    expect(ds.map((d) => d.allowed)).toEqual([true, false]);
    expect((await check(tn, a, 'id', 0)).remaining).toBe(5); // a was not consumed
  });

  it('not atomic: each allowing check consumes', async () => {
    clock.set(T0);
    const tn = await tenant();
    const a = policy({ algorithm: 'fixed_window', limit: 5, windowMs: WINDOW });
    const b = policy({ algorithm: 'fixed_window', limit: 1, windowMs: WINDOW });
    await check(tn, b);
    await t.deps.ratelimit.checkMany(
      tn,
      [
        { policy: a, identifier: 'id', cost: 1 },
        { policy: b, identifier: 'id', cost: 1 },
      ],
      false,
    );
    expect((await check(tn, a, 'id', 0)).remaining).toBe(4);
  });

  it('sees its own consumption when the same limit appears twice', async () => {
    clock.set(T0);
    const tn = await tenant();
    const a = policy({ algorithm: 'token_bucket', capacity: 3, refillPerSecond: 0.001 });
    const ds = await t.deps.ratelimit.checkMany(
      tn,
      [
        { policy: a, identifier: 'id', cost: 2 },
        { policy: a, identifier: 'id', cost: 2 },
      ],
      false,
    );
    expect(ds.map((d) => d.allowed)).toEqual([true, false]);
    expect((await check(tn, a, 'id', 0)).remaining).toBe(1);
  });

  it('a shadow policy that would deny blocks nothing', async () => {
    clock.set(T0);
    const tn = await tenant();
    const a = policy({ algorithm: 'fixed_window', limit: 5, windowMs: WINDOW });
    const s = policy({ algorithm: 'fixed_window', limit: 1, windowMs: WINDOW, shadow: true });
    await check(tn, s);
    const ds = await t.deps.ratelimit.checkMany(
      tn,
      [
        { policy: a, identifier: 'id', cost: 1 },
        { policy: s, identifier: 'id', cost: 1 },
      ],
      true,
    );
    expect(ds.map((d) => d.allowed)).toEqual([true, true]);
    expect(ds[1]?.shadowDenied).toBe(true);
    expect((await check(tn, a, 'id', 0)).remaining).toBe(4);
  });
});

describe('overrides and the local denial cache', () => {
  it('an override gives matching identifiers another limit', async () => {
    clock.set(T0);
    const tn = await tenant();
    const p = policy({
      algorithm: 'fixed_window',
      limit: 1,
      windowMs: WINDOW,
      overrides: [
        { match: 'vip-*', policy: { algorithm: 'fixed_window', limit: 3, windowMs: WINDOW } },
      ],
    });
    expect((await check(tn, p, 'vip-1')).remaining).toBe(2);
    expect((await check(tn, p, 'user-1')).remaining).toBe(0);
  });

  it('remembers a unit-cost denial until its retry time and answers it without Redis', async () => {
    clock.set(T0);
    const tn = (await newTenant(cached.deps, ['ratelimit:check'])).tenant;
    const p = policy({ algorithm: 'fixed_window', limit: 1, windowMs: WINDOW });
    const run = (cost = 1) =>
      cached.deps.ratelimit.check(tn, { policy: p, identifier: 'hot', cost });
    await run();
    await run(); // denied: remembered
    const redis = await adminRedis(cached);
    try {
      // With the state gone from Redis, the remembered denial still answers until the retry time.
      await redis.del(keys.ratelimit(tn, p.stateName, 'fwin', 'hot'));
      const d = await run();
      expect(d.allowed).toBe(false);
      expect(d.retryAfterMs).toBe(WINDOW);
      // A peek (or any other cost) asks Redis.
      expect((await run(0)).allowed).toBe(true);
      clock.advance(WINDOW);
      expect((await run()).allowed).toBe(true);
    } finally {
      redis.disconnect();
    }
  });
});

describe('validation', () => {
  it('refuses a cost no request could ever get', async () => {
    const tn = randomTenantId();
    const p = policy({ algorithm: 'token_bucket', capacity: 5, refillPerSecond: 1 });
    expect(() => t.deps.ratelimit.check(tn, { policy: p, identifier: 'x', cost: 6 })).toThrow(
      /exceeds what policy/,
    );
  });
});
