/**
 * Two gateway processes (real `node` processes running src/main.ts) share one Redis: whatever the
 * interleaving, together they never admit more than a limit allows.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { Agent, request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, newTenant, testEnv, type TestApp } from '../../harness/app.js';
import { freePort } from '../../harness/topology.js';

const root = new URL('../../../', import.meta.url);
const procs: ChildProcess[] = [];
const ports: number[] = [];
let setup: TestApp;

async function startGateway(): Promise<number> {
  const port = await freePort();
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: root,
    env: {
      ...process.env,
      ...testEnv({ PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn' }),
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  procs.push(proc);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (Date.now() > deadline) throw new Error(`gateway on :${port} did not become ready`);
    const ok = await fetch(`http://127.0.0.1:${port}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return port;
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  setup = await buildTestApp();
  ports.push(...(await Promise.all([startGateway(), startGateway()])));
}, 60_000);

afterAll(async () => {
  for (const p of procs) p.kill('SIGTERM');
  await setup?.close();
});

const agent = new Agent({ keepAlive: true, maxSockets: 16 });

function check(
  port: number,
  auth: string,
  payload: unknown,
): Promise<{ status: number; allowed: boolean }> {
  const data = JSON.stringify(payload);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/v1/ratelimit/check',
        agent,
        headers: {
          authorization: auth,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(data),
        },
      },
      (res) => {
        let b = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (b += d));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            allowed: (JSON.parse(b) as { allowed?: boolean }).allowed === true,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

const LIMIT = 40;
const POLICIES: Record<string, unknown> = {
  token_bucket: { algorithm: 'token_bucket', capacity: LIMIT, refillPerSecond: 0.0001 },
  gcra: { algorithm: 'gcra', limit: LIMIT, periodMs: 3_600_000, burst: LIMIT },
  sliding_log: { algorithm: 'sliding_log', limit: LIMIT, windowMs: 3_600_000 },
  sliding_window: { algorithm: 'sliding_window', limit: LIMIT, windowMs: 3_600_000 },
  fixed_window: { algorithm: 'fixed_window', limit: LIMIT, windowMs: 3_600_000 },
};

describe('accuracy across two gateway processes', () => {
  it.each(Object.entries(POLICIES))(
    '%s admits exactly the limit under concurrent load',
    async (_name, policy) => {
      const a = await newTenant(setup.deps, ['ratelimit:check']);
      const auth = `Bearer ${a.key}`;
      // 300 requests, alternating between the processes, 32 in flight at a time.
      const results: boolean[] = [];
      let next = 0;
      await Promise.all(
        Array.from({ length: 32 }, async () => {
          while (next < 300) {
            const i = next++;
            const r = await check(ports[i % 2] as number, auth, { policy, key: 'shared', cost: 1 });
            expect(r.status).toBe(200);
            results.push(r.allowed);
          }
        }),
      );
      expect(results.length).toBe(300);
      expect(results.filter(Boolean).length).toBe(LIMIT);
    },
  );
});
