/**
 * Refunds (check-n.lua, `cost -1`): a check its caller was refused without its answer (a closed
 * policy answered 503 while Redis was slow) that Redis ran after all gives back what it consumed.
 * The property, for each algorithm, over seeded random sequences run against the script in real
 * Redis: a refund never leaves more room than a state that never saw the refused check (the
 * reference model, fed only the checks Redis counted and no refused one, allows every check Redis
 * allows), and refunds do give room back (more checks allowed than without them).
 */
import { describe, expect, it } from 'vitest';
import { keys } from '../../../src/redis/keys.js';
import {
  type Model,
  fixedWindowModel,
  gcraModel,
  seeded,
  slidingLogModel,
  slidingWindowModel,
  tokenBucketModel,
} from '../../harness/ratelimit-model.js';
import { newTenant, useTestApp } from '../../harness/app.js';

const t = useTestApp();

interface Algorithm {
  name: string;
  /** code, p1, p2, p3 as the script takes them. */
  args: (string | number)[];
  /**
   * The reference the refunds are held to. A fixed window from the first request has none: a
   * refunded check may have started a window that a state which never saw it would start later,
   * so their windows differ in phase and neither always has less room. It is held to its own
   * bound instead: no window counts more than the limit of checks that were not refused.
   */
  model?(): Model;
  /**
   * With two clocks, a calendar-aligned fixed window has no such reference either: a refused check
   * on the clock ahead may start the next window before the other clock reaches it (the clamp
   * moves that clock into it), which no refund can undo and a state that never saw the check does
   * not do. It is held to its window bound then, as the fixed window from the first request is.
   */
  oneClockModel?: true;
}

const LIMIT = 5;
const PERIOD = 60_000;
const ALGORITHMS: Algorithm[] = [
  {
    name: 'token bucket',
    args: ['tb', LIMIT, LIMIT / PERIOD, ''],
    model: () => tokenBucketModel(LIMIT, (LIMIT * 1000) / PERIOD),
  },
  {
    name: 'GCRA',
    args: ['gcra', PERIOD / LIMIT, LIMIT, ''],
    model: () => gcraModel(LIMIT, PERIOD, LIMIT),
  },
  {
    name: 'sliding log',
    args: ['slog', LIMIT, PERIOD, ''],
    model: () => slidingLogModel(LIMIT, PERIOD),
  },
  {
    name: 'sliding window',
    args: ['swin', LIMIT, PERIOD, ''],
    model: () => slidingWindowModel(LIMIT, PERIOD),
  },
  { name: 'fixed window from the first request', args: ['fwin', LIMIT, PERIOD, '0'] },
  {
    name: 'fixed window, calendar-aligned',
    args: ['fwin', LIMIT, PERIOD, '1'],
    model: () => fixedWindowModel(LIMIT, PERIOD, true),
    oneClockModel: true,
  },
];

const STEPS = [0, 1, 250, 1000, 4000, 12_000, 30_000];
/**
 * The second run's two replicas: one clock this far ahead of the other, below the 1 s the script
 * allows for (REFUND_SKEW_MS). A refund comes from the replica that sent the refused check, on its
 * own clock, and the other may have checked since on a clock ahead of it.
 */
const SKEW_MS = 900;

describe('refunds of checks answered 503 that Redis ran after all', () => {
  for (const [algo, skewMs] of ALGORITHMS.flatMap((a) => [
    [a, 0] as const,
    [a, SKEW_MS] as const,
  ])) {
    const clocks = skewMs === 0 ? 'one clock' : `two clocks ${skewMs} ms apart`;
    const modelled = algo.model !== undefined && (skewMs === 0 || !algo.oneClockModel);
    it(`${algo.name}, ${clocks}: ${modelled ? 'never more room than a state that never saw the refused checks' : 'no window over its limit'}, and room given back`, async () => {
      const { tenant } = await newTenant(t.deps, ['ratelimit:check']);
      const call = (key: string, now: number, entries: (string | number)[][]) =>
        t.deps.redis.onMaster((c) =>
          c.ratelimitCheck(entries.length, ...entries.map(() => key), now, 0, ...entries.flat()),
        );
      let allowedWith = 0;
      let allowedWithout = 0;
      let refunded = 0;
      for (let seed = 1; seed <= 12; seed++) {
        for (const refunds of [true, false]) {
          const key = keys.ratelimit(
            tenant,
            'refund',
            algo.args[0] as string,
            `${seed}-${refunds}`,
          );
          const random = seeded(seed);
          const model = modelled ? algo.model?.() : undefined;
          // Without a model: units of checks that were not refused, by the window that counted them.
          const counted = new Map<number, number>();
          // Refunds still to send: at which event, and what the refused check answered.
          const pending: { at: number; cost: number; origin: number; skew: number }[] = [];
          let now = 1_800_000_000_000 + Math.floor(random() * PERIOD);
          for (let e = 0; e < 80; e++) {
            now += STEPS[Math.floor(random() * STEPS.length)] as number;
            const cost = 1 + Math.floor(random() * 2);
            // Which replica checks: the one whose clock is ahead, or the other.
            const skew = skewMs > 0 && random() < 0.5 ? skewMs : 0;
            for (const p of pending.filter((p) => p.at === e && refunds)) {
              refunded++;
              await call(key, now + p.skew, [[...algo.args, -1, 0, 0, 0, p.cost, p.origin]]);
            }
            const [allowed, , , , , , , origin] = await call(key, now + skew, [
              [...algo.args, cost, 0, 0, 0, 0, 0],
            ]);
            if (random() < 0.3) {
              // Refused: its caller got a 503; the model never sees it.
              if (allowed === 1) {
                expect(origin, 'a check that consumed names what counted it').not.toBe(0);
                pending.push({
                  at: e + 1 + Math.floor(random() * 4),
                  cost,
                  origin: origin as number,
                  skew,
                });
              }
              continue;
            }
            if (allowed !== 1) continue;
            if (refunds) allowedWith++;
            else allowedWithout++;
            if (model === undefined) {
              const n = (counted.get(origin as number) ?? 0) + cost;
              counted.set(origin as number, n);
              expect(
                n,
                `seed ${seed}, event ${e}: window ${origin} over its limit`,
              ).toBeLessThanOrEqual(LIMIT);
              continue;
            }
            const m = model.check(now + skew, cost);
            expect(
              m.allowed,
              `seed ${seed}, event ${e}: allowed with refunds where a state that never saw the refused checks denies`,
            ).toBe(true);
          }
        }
      }
      expect(refunded).toBeGreaterThan(20);
      expect(allowedWith).toBeGreaterThan(allowedWithout);
    });
  }

  it('a refund answers zeros, and gives nothing back for a window that has ended or a state that is gone', async () => {
    const { tenant } = await newTenant(t.deps, ['ratelimit:check']);
    const key = keys.ratelimit(tenant, 'refund', 'fwin', 'x');
    const fwin = ['fwin', 2, 1000, '1'];
    const run = (now: number, ...entries: (string | number)[][]) =>
      t.deps.redis.onMaster((c) =>
        c.ratelimitCheck(entries.length, ...entries.map(() => key), now, 0, ...entries.flat()),
      );
    const T = 1_800_000_000_000;
    const first = await run(T + 10, [...fwin, 2, 0, 0, 0, 0, 0]);
    expect(first).toEqual([1, 2, 0, 990, 0, 0, 0, T]);
    // In its window: both units back, then the same window allows 2 again.
    expect(await run(T + 20, [...fwin, -1, 0, 0, 0, 2, T])).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect((await run(T + 30, [...fwin, 2, 0, 0, 0, 0, 0]))[0]).toBe(1);
    // The window that counted them has ended: a refund gives nothing (the next window is whole).
    await run(T + 1010, [...fwin, -1, 0, 0, 0, 2, T]);
    expect(await run(T + 1020, [...fwin, 2, 0, 0, 0, 0, 0])).toEqual([
      1,
      2,
      0,
      980,
      0,
      0,
      0,
      T + 1000,
    ]);
    expect((await run(T + 1030, [...fwin, 1, 0, 0, 0, 0, 0]))[0]).toBe(0);
    // A refund of a state that is gone writes nothing.
    const gone = keys.ratelimit(tenant, 'refund', 'tb', 'gone');
    await t.deps.redis.onMaster((c) =>
      c.ratelimitCheck(1, gone, T, 0, 'tb', 10, 0.001, '', -1, 0, 0, 0, 3, T),
    );
    expect(await t.deps.redis.onMaster((c) => c.exists(gone))).toBe(0);
  });

  it('GCRA: a refund leaves no more room than a state that never saw the check, when a replica whose clock is ahead checked in between', async () => {
    // GCRA stores no time, so its refund cannot tell how far ahead the newest clock that checked
    // since was: it allows 1 s (REFUND_SKEW_MS). Replica B's clock here is 900 ms ahead of A's.
    const { tenant } = await newTenant(t.deps, ['ratelimit:check']);
    const key = keys.ratelimit(tenant, 'refund', 'gcra', 'skew');
    const gcra = ['gcra', 10_000, 2, ''];
    const run = (now: number, entry: (string | number)[]) =>
      t.deps.redis.onMaster((c) => c.ratelimitCheck(1, key, now, 0, ...entry));
    const A = 1_800_000_000_000;
    const B = A + 900;
    // A's check, answered 503 and run after all: its TAT is A + 10 s.
    const refused = await run(A, [...gcra, 1, 0, 0, 0, 0, 0]);
    expect(refused[0]).toBe(1);
    // B checks at the same instant, on its clock: the TAT goes to A + 20 s. A state that never
    // saw A's check would hold B + 10 s instead.
    expect((await run(B, [...gcra, 1, 0, 0, 0, 0, 0]))[0]).toBe(1);
    // A's refund, on A's clock, at the same instant.
    await run(A, [...gcra, -1, 0, 0, 0, 1, refused[7] as number]);
    // 899 ms later on A's clock, that state has no room for one more (it frees at B + 0 ms).
    expect((await run(A + 899, [...gcra, 0, 0, 0, 0, 0, 0]))[0]).toBe(0);
    // The refund did give room back: without it, the next unit would come 10 s later.
    expect((await run(A + 1000, [...gcra, 0, 0, 0, 0, 0, 0]))[0]).toBe(1);
  });
});
