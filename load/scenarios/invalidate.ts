/**
 * One-shot benchmark: _invalidate of 10 000 keys, by tag and by prefix. Reports the wall time,
 * the number of calls (continuation cursors) and the longest single Redis command seen in SLOWLOG
 * while it ran, which is what "never blocks Redis for more than a few ms" means.
 */
import type { Redis } from 'ioredis';
import type { ScenarioContext } from '../types.js';

export interface OneShotResult {
  name: string;
  id: string;
  [measure: string]: string | number;
}

async function call(
  base: string,
  path: string,
  auth: Record<string, string>,
  body: unknown,
): Promise<Record<string, unknown>> {
  const res = await fetch(base + path, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`POST ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as Record<string, unknown>;
}

async function fill(base: string, ctx: ScenarioContext, prefix: string, n: number): Promise<void> {
  for (let start = 0; start < n; start += 1000) {
    const items = Array.from({ length: Math.min(1000, n - start) }, (_, i) => ({
      key: `${prefix}${start + i}`,
      value: { i: start + i, pad: 'x'.repeat(100) },
      ttl: 3600,
      tags: ['inv-bench'],
    }));
    await call(base, '/v1/cache/_mset', ctx.auth, { items });
  }
}

async function measure(
  base: string,
  ctx: ScenarioContext,
  master: Redis,
  spec: Record<string, unknown>,
) {
  await master.config('SET', 'slowlog-log-slower-than', '1000'); // log every command over 1 ms
  await master.slowlog('RESET');
  const t0 = performance.now();
  let deleted = 0;
  let calls = 0;
  let cursor: string | null = null;
  do {
    const res = await call(base, '/v1/cache/_invalidate', ctx.auth, {
      ...spec,
      ...(cursor ? { cursor } : {}),
    });
    deleted += res.deleted as number;
    cursor = res.cursor as string | null;
    calls++;
  } while (cursor !== null);
  const ms = performance.now() - t0;
  const log = (await master.slowlog('GET', 1000)) as [number, number, number, string[]][];
  const longest = log.reduce((m, e) => Math.max(m, e[2]), 0) / 1000;
  const worst = log.reduce<[number, number, number, string[]] | undefined>(
    (m, e) => (m === undefined || e[2] > m[2] ? e : m),
    undefined,
  );
  if (process.env.BENCH_VERBOSE)
    console.log('slowest command:', worst?.[3]?.slice(0, 4).join(' '), worst?.[3]?.length, 'args');
  await master.config('SET', 'slowlog-log-slower-than', '10000');
  return {
    deleted,
    calls,
    ms: Math.round(ms),
    longestCommandMs: longest,
    slowCommands: log.length,
  };
}

export async function benchInvalidate(
  base: string,
  ctx: ScenarioContext,
  master: Redis,
): Promise<OneShotResult[]> {
  const n = 10_000;
  await fill(base, ctx, 'inv:tag:', n);
  const byTag = await measure(base, ctx, master, { tags: ['inv-bench'] });
  await fill(base, ctx, 'inv:prefix:', n);
  const byPrefix = await measure(base, ctx, master, { prefix: 'inv:prefix:' });
  return [
    { name: '_invalidate 10k keys by tag', id: 'invalidate-tag-10k', ...byTag },
    { name: '_invalidate 10k keys by prefix', id: 'invalidate-prefix-10k', ...byPrefix },
  ];
}
