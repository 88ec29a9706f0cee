/**
 * Queue benchmarks. Messages per second need a loop autocannon cannot express (receive, then ack
 * what came back), so these are closed loops of `CONCURRENCY` workers over fetch (undici
 * keep-alive), each run bounded by its duration:
 *   - publish: batches of 100 messages;
 *   - receive + ack: receive up to 100, ack them, again (the queue filled by the publish run);
 *   - long-poll wake-up: a receiver waits on an empty queue, a publish arrives; the time from
 *     sending the publish to the receiver's answer.
 * Plus one autocannon scenario: single-message publish requests per second.
 */
import type { Scenario, ScenarioContext } from '../types.js';
import type { OneShotResult } from './invalidate.js';

const CONCURRENCY = Number(process.env.BENCH_CONNECTIONS ?? 32);
const DURATION_MS = Number(process.env.BENCH_DURATION ?? 10) * 1000;
const PAYLOAD = { orderId: 42, action: 'recalculate', items: [1, 2, 3], note: 'x'.repeat(64) };

export const QUEUE_GROUPS = [
  { queue: 'bench-q', group: 'workers' },
  { queue: 'bench-wake', group: 'workers' },
];

export const queueScenarios: Scenario[] = [
  {
    name: 'queue publish, one message per request',
    id: 'queue-publish',
    target: 'gateway',
    baseline: 'baseline-get',
    request: (ctx) => ({
      method: 'POST',
      path: '/v1/queues/bench-single/messages',
      headers: { ...ctx.auth, 'content-type': 'application/json' },
      body: JSON.stringify({ data: PAYLOAD }),
    }),
  },
];

async function post(base: string, path: string, auth: Record<string, string>, body: unknown) {
  const res = await fetch(base + path, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`POST ${path}: ${res.status} ${text}`);
  return JSON.parse(text) as Record<string, unknown>;
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
};
const round = (x: number) => Math.round(x * 10) / 10;

async function closedLoop(
  work: () => Promise<number>,
): Promise<{ perSecond: number; latencies: number[] }> {
  const end = Date.now() + DURATION_MS;
  const started = Date.now();
  const latencies: number[] = [];
  let total = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (Date.now() < end) {
        const t0 = performance.now();
        const n = await work(); // not `total += await work()`: that reads `total` before awaiting
        total += n;
        latencies.push(performance.now() - t0);
      }
    }),
  );
  return { perSecond: total / ((Date.now() - started) / 1000), latencies };
}

export async function benchQueues(base: string, ctx: ScenarioContext): Promise<OneShotResult[]> {
  const results: OneShotResult[] = [];
  const batch = { messages: Array.from({ length: 100 }, () => ({ data: PAYLOAD })) };
  const pub = await closedLoop(async () => {
    await post(base, '/v1/queues/bench-q/messages/_batch', ctx.auth, batch);
    return 100;
  });
  results.push({
    name: `queue publish, batches of 100 (${CONCURRENCY} workers)`,
    id: 'queue-publish-batch',
    'messages/s': Math.round(pub.perSecond),
    'p50 ms': round(pct(pub.latencies, 50)),
    'p99 ms': round(pct(pub.latencies, 99)),
  });

  const consume = await closedLoop(async () => {
    const r = await post(base, '/v1/queues/bench-q/groups/workers/_receive', ctx.auth, {
      consumer: 'bench',
      max: 100,
      visibilityTimeoutMs: 60_000,
    });
    const ids = (r.messages as { id: string }[]).map((m) => m.id);
    if (ids.length === 0) return 0;
    await post(base, '/v1/queues/bench-q/groups/workers/_ack', ctx.auth, { ids });
    return ids.length;
  });
  results.push({
    name: `queue receive (max 100) + ack (${CONCURRENCY} workers)`,
    id: 'queue-receive-ack',
    'messages/s': Math.round(consume.perSecond),
    'p50 ms': round(pct(consume.latencies, 50)),
    'p99 ms': round(pct(consume.latencies, 99)),
  });

  const wake: number[] = [];
  for (let i = 0; i < 50; i++) {
    const waiting = post(base, '/v1/queues/bench-wake/groups/workers/_receive', ctx.auth, {
      consumer: 'bench',
      waitMs: 5000,
    });
    await new Promise((r) => setTimeout(r, 20));
    const sent = performance.now();
    await post(base, '/v1/queues/bench-wake/messages', ctx.auth, { data: i });
    const got = await waiting;
    wake.push(performance.now() - sent);
    const ids = (got.messages as { id: string }[]).map((m) => m.id);
    if (ids.length > 0)
      await post(base, '/v1/queues/bench-wake/groups/workers/_ack', ctx.auth, { ids });
  }
  results.push({
    name: 'long-poll wake-up: publish sent to waiting receiver answered (50 samples)',
    id: 'queue-wake',
    'p50 ms': round(pct(wake, 50)),
    'p99 ms': round(pct(wake, 99)),
    'max ms': round(Math.max(...wake)),
  });
  return results;
}
