/**
 * A small closed-loop load generator for failure tests: N workers issue cache PUT/GET pairs over
 * real HTTP against a gateway (on loopback unless told otherwise) until told to stop, recording
 * every answer in a ledger.
 */
import { Agent, request } from 'node:http';
import { afterEach, expect } from 'vitest';
import type { Topology } from './topology.js';

export interface LedgerEntry {
  /** ms since the run started */
  t: number;
  op: 'put' | 'get';
  key: string;
  status: number;
  /** problem code, when the answer was a problem */
  code?: string;
  retryAfter?: string;
  contentType?: string;
  latencyMs: number;
  body: string;
}

export interface LoadRun {
  readonly startedAt: number;
  readonly ledger: LedgerEntry[];
  /** ms since start */
  now(): number;
  stop(): Promise<void>;
}

function call(
  agent: Agent,
  host: string,
  port: number,
  method: string,
  path: string,
  headers: Record<string, string>,
  payload?: string,
) {
  return new Promise<{ status: number; headers: Record<string, unknown>; body: string }>(
    (resolve, reject) => {
      const req = request({ host, port, method, path, headers, agent }, (res) => {
        let b = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (b += d));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: b }),
        );
      });
      req.setTimeout(30_000, () => req.destroy(new Error('client timeout (30 s)')));
      req.on('error', reject);
      req.end(payload);
    },
  );
}

/** Starts `concurrency` workers doing PUT k / GET k in a loop. */
export function startCacheLoad(opts: {
  /** Default 127.0.0.1. */
  host?: string;
  port: number;
  key: string;
  concurrency?: number;
  prefix?: string;
}): LoadRun {
  const agent = new Agent({ keepAlive: true, maxSockets: opts.concurrency ?? 8 });
  const startedAt = Date.now();
  const ledger: LedgerEntry[] = [];
  let running = true;
  const auth = { authorization: `Bearer ${opts.key}` };

  const record = async (op: 'put' | 'get', key: string, method: string, payload?: string) => {
    const t0 = Date.now();
    try {
      const headers: Record<string, string> = payload
        ? { ...auth, 'content-type': 'application/json' }
        : auth;
      const res = await call(
        agent,
        opts.host ?? '127.0.0.1',
        opts.port,
        method,
        `/v1/cache/${encodeURIComponent(key)}`,
        headers,
        payload,
      );
      let code: string | undefined;
      if (String(res.headers['content-type']).startsWith('application/problem+json')) {
        code = (JSON.parse(res.body) as { code?: string }).code;
      }
      ledger.push({
        t: t0 - startedAt,
        op,
        key,
        status: res.status,
        code,
        retryAfter: res.headers['retry-after'] as string | undefined,
        contentType: res.headers['content-type'] as string | undefined,
        latencyMs: Date.now() - t0,
        body: res.status >= 400 ? res.body : '',
      });
      return res.status;
    } catch (err) {
      ledger.push({
        t: t0 - startedAt,
        op,
        key,
        status: 0,
        latencyMs: Date.now() - t0,
        body: (err as Error).message,
      });
      return 0;
    }
  };

  const worker = async (w: number) => {
    let n = 0;
    while (running) {
      const key = `${opts.prefix ?? 'load'}-${w}-${n++}`;
      const s = await record('put', key, 'PUT', JSON.stringify({ value: { w, n }, ttl: 600 }));
      if (s >= 200 && s < 300) await record('get', key, 'GET');
      else await new Promise((r) => setTimeout(r, 20)); // do not spin on errors
    }
  };
  const workers = Array.from({ length: opts.concurrency ?? 8 }, (_, i) => worker(i));

  return {
    startedAt,
    ledger,
    now: () => Date.now() - startedAt,
    async stop() {
      running = false;
      await Promise.all(workers);
      agent.destroy();
    },
  };
}

/** Summary for assertion messages. */
export function describeLedger(ledger: readonly LedgerEntry[]): string {
  const counts = new Map<string, number>();
  for (const e of ledger) {
    const k = `${e.status}${e.code ? ` ${e.code}` : ''}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return [...counts.entries()].map(([k, v]) => `${k}: ${v}`).join(', ');
}

/** Answers per 500 ms bucket, e.g. "0.0s 201x40 200x40 | 0.5s 503 BACKEND_TIMEOUT x12", for failure messages. */
export function timeline(ledger: readonly LedgerEntry[], bucketMs = 500): string {
  const buckets = new Map<number, Map<string, number>>();
  for (const e of ledger) {
    const b = Math.floor(e.t / bucketMs);
    const m = buckets.get(b) ?? new Map<string, number>();
    const k = `${e.status}${e.code ? ` ${e.code}` : ''}`;
    m.set(k, (m.get(k) ?? 0) + 1);
    buckets.set(b, m);
  }
  return [...buckets.entries()]
    .sort(([a], [b]) => a - b)
    .map(
      ([b, m]) =>
        `${((b * bucketMs) / 1000).toFixed(1)}s ${[...m.entries()].map(([k, v]) => `${k}x${v}`).join(' ')}`,
    )
    .join('\n');
}

/**
 * Every entry is a success, a declared 503 problem (a `BACKEND_` code with Retry-After, no raw
 * Redis error in it), or (a GET just after a lost write) a miss; none took longer than `boundMs`.
 */
export function assertOnlyDeclaredAnswers(ledger: readonly LedgerEntry[], boundMs: number): void {
  const undeclared = ledger.filter((e) => {
    const ok = e.status === 200 || e.status === 201;
    const declared503 =
      e.status === 503 &&
      e.contentType?.startsWith('application/problem+json') === true &&
      e.retryAfter !== undefined &&
      /^BACKEND_/.test(e.code ?? '') &&
      !/READONLY|NOREPLICAS|ECONNREFUSED/.test(e.body);
    const lostWrite = e.status === 404 && e.op === 'get' && e.code === 'CACHE_MISS';
    return !(ok || declared503 || lostWrite);
  });
  const slow = ledger.filter((e) => e.latencyMs > boundMs);
  const context = `${describeLedger(ledger)}\n${timeline(ledger)}`;
  expect(
    undeclared.slice(0, 5).map((e) => `${e.status} ${e.body}`),
    context,
  ).toEqual([]);
  expect(
    slow.slice(0, 5).map((e) => `${e.op} ${e.status} took ${e.latencyMs} ms`),
    context,
  ).toEqual([]);
}

/**
 * A failure test that fails on a loaded CI machine is hard to reproduce: after each failed test,
 * print what Redis and the sentinels logged (promotion, replica resync, NOREPLICAS causes), and
 * `more()` (the gateway's connections, another process's log).
 */
export function logTopologyOnFailure(
  topology: () => Topology | undefined,
  more: () => string = () => '',
): void {
  afterEach((ctx) => {
    const t = topology();
    if (ctx.task.result?.state !== 'fail' || t === undefined) return;
    console.error(`Redis and sentinel logs after "${ctx.task.name}"${more()}:\n${t.logTails()}`);
  });
}
