/**
 * A slow Redis (RELIABILITY.md scenario 8), against a topology of its own whose sentinels do not
 * fail over meanwhile (down-after 30 s): writes stalled by `CLIENT PAUSE ... WRITE`, and the whole
 * server stalled by `DEBUG SLEEP`, under load. What must hold: the per-command timeout and the
 * request budget bound every answer (a 503 problem that says the outcome is unknown, never a hang
 * or a 500); the gateway serves again as soon as Redis does, on the same master, without a
 * restart.
 *
 * Reads on the master stall with the writes: Redis answers a connection's commands in order, and
 * a paused write holds up the reads sent after it on the gateway's shared connection. With
 * READ_FROM_REPLICAS the reads go to a replica and go on.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TestApp, buildTestApp, newTenant } from '../harness/app.js';
import {
  type LedgerEntry,
  assertOnlyDeclaredAnswers,
  logTopologyOnFailure,
  startCacheLoad,
  timeline,
} from '../harness/ledger.js';
import { type Topology, rawCommand, rawCommandWithin, startTopology } from '../harness/topology.js';

const REQUEST_TIMEOUT_MS = 2000;
const COMMAND_TIMEOUT_MS = 500;
const LATENCY_BOUND_MS = REQUEST_TIMEOUT_MS + 1000;

let topology: Topology;
let gw: TestApp;
let replicaReads: TestApp;
let port: number;
let key: string;

beforeAll(async () => {
  topology = await startTopology({
    downAfterMs: 30_000,
    extraRedisConf: ['enable-debug-command yes'],
  });
  // A gateway listening on loopback; every read goes to Redis (the near cache would answer
  // repeated GETs itself).
  const gateway = async (env: Record<string, string> = {}) => {
    const app = await buildTestApp({
      sentinels: topology.sentinels,
      masterName: topology.masterName,
      env: {
        REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
        REDIS_COMMAND_TIMEOUT_MS: String(COMMAND_TIMEOUT_MS),
        CACHE_LOCAL_MAX_BYTES: '0',
        ...env,
      },
    });
    await app.app.listen({ port: 0, host: '127.0.0.1' });
    return app;
  };
  gw = await gateway();
  port = (gw.app.server.address() as { port: number }).port;
  replicaReads = await gateway({ READ_FROM_REPLICAS: 'true' });
  key = (await newTenant(gw.deps, ['cache:read', 'cache:write'])).key;
});

logTopologyOnFailure(() => topology);

afterAll(async () => {
  await replicaReads?.close();
  await gw?.close();
  await topology?.stop();
});

const base = (app?: TestApp) =>
  `http://127.0.0.1:${app ? (app.app.server.address() as { port: number }).port : port}`;
const headers = () => ({ authorization: `Bearer ${key}`, 'content-type': 'application/json' });

interface Read {
  t: number;
  status: number;
  code?: string;
  retryAfter: string | null;
  latencyMs: number;
}

/** Readers of keys written beforehand through `app`, until stopped: every GET's answer. */
function startReaders(app: TestApp, keys: string[], readers = 2) {
  const answers: Read[] = [];
  let running = true;
  const loops = Array.from({ length: readers }, async (_, r) => {
    for (let i = r; running; i++) {
      const t = Date.now();
      const res = await fetch(`${base(app)}/v1/cache/${keys[i % keys.length]}`, {
        headers: headers(),
      });
      const body = (await res.json()) as { code?: string };
      answers.push({
        t,
        status: res.status,
        code: body.code,
        retryAfter: res.headers.get('retry-after'),
        latencyMs: Date.now() - t,
      });
    }
  });
  return {
    answers,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

const ok = (e: { status: number }) => e.status === 200 || e.status === 201;
const puts = (ledger: readonly LedgerEntry[]) => ledger.filter((e) => e.op === 'put');

describe('a slow Redis', () => {
  it('writes paused (CLIENT PAUSE WRITE): 503s that say the outcome is unknown, within the budget; reads from replicas go on; all recover', async () => {
    const stored = Array.from({ length: 20 }, (_, i) => `paused-read-${i}`);
    for (const k of stored) {
      const res = await fetch(`${base()}/v1/cache/${k}`, {
        method: 'PUT',
        headers: headers(),
        body: JSON.stringify({ value: k }),
      });
      expect(res.status).toBe(201);
    }
    const load = startCacheLoad({ port, key, prefix: 'paused', concurrency: 4 });
    const masterReads = startReaders(gw, stored);
    const replicaReaders = startReaders(replicaReads, stored);
    await new Promise((r) => setTimeout(r, 800));
    const pausedAt = Date.now();
    expect(await rawCommand(topology.master.port, 'CLIENT', 'PAUSE', '3000', 'WRITE')).toBe('OK');
    const resumedAt = pausedAt + 3000;
    await new Promise((r) => setTimeout(r, resumedAt + 3000 - Date.now()));
    await Promise.all([load.stop(), masterReads.stop(), replicaReaders.stop()]);

    assertOnlyDeclaredAnswers(load.ledger, LATENCY_BOUND_MS);
    const context = timeline(load.ledger);
    const at = (e: LedgerEntry) => load.startedAt + e.t;
    // Writes sent while paused: refused with a problem that says their outcome is unknown (Redis
    // applies those it holds when the pause ends): BACKEND_TIMEOUT after the command timeout, or
    // BACKEND_UNAVAILABLE when the connection that stopped answering was dropped (after 3 command
    // timeouts) and opened again.
    const during = puts(load.ledger).filter(
      (e) => at(e) > pausedAt + 100 && at(e) + e.latencyMs < resumedAt - 100,
    );
    expect(during.length, context).toBeGreaterThan(4);
    expect(
      during
        .filter((e) => e.code !== 'BACKEND_TIMEOUT' && e.code !== 'BACKEND_UNAVAILABLE')
        .map((e) => `${e.status} ${e.code}`),
      context,
    ).toEqual([]);
    // Reads from the master: found, or a declared 503, in time.
    const fromMaster = masterReads.answers.filter((a) => a.t > pausedAt && a.t < resumedAt);
    expect(
      fromMaster.filter(
        (a) =>
          !(
            a.status === 200 ||
            (a.status === 503 && /^BACKEND_/.test(a.code ?? '') && a.retryAfter)
          ) || a.latencyMs > LATENCY_BOUND_MS,
      ),
    ).toEqual([]);
    // Reads from replicas never stalled.
    const fromReplicas = replicaReaders.answers.filter((a) => a.t > pausedAt && a.t < resumedAt);
    expect(fromReplicas.length).toBeGreaterThan(20);
    expect(fromReplicas.filter((a) => a.status !== 200)).toEqual([]);
    const slowest = Math.max(...fromReplicas.map((a) => a.latencyMs));
    expect(slowest).toBeLessThan(COMMAND_TIMEOUT_MS);
    // A second after the pause every write succeeds again.
    const after = puts(load.ledger).filter((e) => at(e) > resumedAt + 1000);
    expect(after.length, context).toBeGreaterThan(10);
    expect(after.filter((e) => !ok(e)).length, context).toBe(0);
    console.log(
      `slow redis: ${during.length} writes during the pause answered 503 in ${Math.min(...during.map((e) => e.latencyMs))}-${Math.max(...during.map((e) => e.latencyMs))} ms; ` +
        `reads from the master ${fromMaster.filter((a) => a.status === 200).length} found, ${fromMaster.filter((a) => a.status !== 200).length} 503; ` +
        `from replicas ${fromReplicas.length} found, slowest ${slowest} ms`,
    );
  });

  it('whole server stalls (DEBUG SLEEP 2, three times): only declared answers within the budget, serves between and after, same master', async () => {
    const masterBefore = await topology.masterPort();
    const load = startCacheLoad({ port, key, prefix: 'stalled', concurrency: 4 });
    await new Promise((r) => setTimeout(r, 800));
    const stalls: [number, number][] = [];
    for (let i = 0; i < 3; i++) {
      const from = Date.now();
      expect(await rawCommandWithin(5000, topology.master.port, 'DEBUG', 'SLEEP', '2')).toBe('OK');
      stalls.push([from, Date.now()]);
      await new Promise((r) => setTimeout(r, 1500));
    }
    await new Promise((r) => setTimeout(r, 1500));
    await load.stop();

    assertOnlyDeclaredAnswers(load.ledger, LATENCY_BOUND_MS);
    const context = timeline(load.ledger);
    const at = (e: LedgerEntry) => load.startedAt + e.t;
    // Each stall shows, and each gap after one is served again.
    for (const [from, to] of stalls) {
      const inStall = load.ledger.filter((e) => at(e) >= from + 200 && at(e) < to - 200);
      expect(
        inStall.some((e) => !ok(e)),
        `failures during the stall at ${from}:\n${context}`,
      ).toBe(true);
      const gap = puts(load.ledger).filter((e) => at(e) > to + 700 && at(e) < to + 1500);
      expect(gap.some(ok), `writes served after the stall at ${from}:\n${context}`).toBe(true);
    }
    const tail = load.ledger.filter((e) => at(e) > (stalls.at(-1)?.[1] ?? 0) + 700);
    expect(tail.length, context).toBeGreaterThan(10);
    expect(tail.filter((e) => !ok(e)).length, context).toBe(0);
    expect(await topology.masterPort()).toBe(masterBefore);
    const latencies = load.ledger.map((e) => e.latencyMs).sort((a, b) => a - b);
    console.log(
      `slow redis: 3 stalls of 2 s, ${load.ledger.length} answers, p50 ${latencies[Math.floor(latencies.length / 2)]} ms, p99 ${latencies[Math.floor(latencies.length * 0.99)]} ms, max ${latencies.at(-1)} ms`,
    );
  });
});
