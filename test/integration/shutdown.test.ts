/**
 * SIGTERM under load, against the real entry point (`src/main.ts` in its own process; RELIABILITY
 * scenario 11): requests in flight are answered (a long poll included: it answers early instead
 * of holding the drain up), new ones get 503 SHUTTING_DOWN with Connection: close, the gRPC
 * rate limit service tells its health watchers NOT_SERVING and ends their streams, and the
 * process exits 0 well within SHUTDOWN_GRACE_MS.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import { HEALTH_SERVICE } from '../../src/modules/ratelimit/rls-grpc.js';
import { ADMIN_TOKEN, testEnv } from '../harness/app.js';
import { freePort } from '../harness/topology.js';

const root = new URL('../../', import.meta.url);
const GRACE_MS = 8000;
let proc: ChildProcess | undefined;

afterAll(() => {
  proc?.kill('SIGKILL');
});

async function json(base: string, method: string, path: string, auth: string, body?: unknown) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${auth}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('SIGTERM under load (the real process)', () => {
  it('answers what is in flight, refuses the rest with 503, ends health watches, exits 0 in time', async () => {
    const [port, rlsPort, metricsPort] = await Promise.all([freePort(), freePort(), freePort()]);
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: root,
      env: {
        ...process.env,
        ...testEnv({
          PORT: String(port),
          RLS_GRPC_PORT: String(rlsPort),
          METRICS_PORT: String(metricsPort),
          HOST: '127.0.0.1',
          LOG_LEVEL: 'warn',
          SHUTDOWN_GRACE_MS: String(GRACE_MS),
        }),
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    proc = child;
    const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    const base = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 30_000;
    while (
      !(await fetch(`${base}/readyz`).then(
        (r) => r.ok,
        () => false,
      ))
    ) {
      if (Date.now() > deadline) throw new Error('the gateway did not become ready');
      await new Promise((r) => setTimeout(r, 100));
    }
    const tenant = `shutdown-${Date.now()}`;
    expect(
      (await json(base, 'POST', '/v1/admin/tenants', ADMIN_TOKEN, { id: tenant })).status,
    ).toBe(201);
    const created = await json(base, 'POST', `/v1/admin/tenants/${tenant}/keys`, ADMIN_TOKEN, {
      scopes: ['cache:read', 'cache:write', 'queue:consume', 'queue:admin'],
    });
    const key = String(created.body.key);
    expect(
      (await json(base, 'PUT', '/v1/queues/jobs/groups/workers', key, { startFrom: 'earliest' }))
        .status,
    ).toBeLessThan(300);

    // A scrape: its keep-alive connection to the metrics port stays open, as Prometheus's does.
    expect((await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).status).toBe(200);

    // A health watcher on the gRPC port.
    const Health = grpc.makeGenericClientConstructor(HEALTH_SERVICE, 'Health');
    const health = new Health(
      `127.0.0.1:${rlsPort}`,
      grpc.credentials.createInsecure(),
    ) as unknown as {
      Watch(r: object): grpc.ClientReadableStream<{ status?: string }>;
      close(): void;
    };
    const watch = health.Watch({ service: '' });
    const statuses: string[] = [];
    watch.on('data', (m: { status?: string }) => statuses.push(m.status ?? 'UNKNOWN'));
    watch.on('error', () => {});
    const watchEnded = new Promise<number>((resolve) => watch.on('status', (s) => resolve(s.code)));

    // Load: cache writes on keep-alive connections, and one long poll in flight.
    type Answer = { status: number; code?: string; connection?: string | null; at: number };
    const answers: Answer[] = [];
    const errors: { message: string; at: number }[] = [];
    const started = performance.now();
    let stop = false;
    const worker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        try {
          const res = await fetch(`${base}/v1/cache/w${w}-${i}`, {
            method: 'PUT',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify({ value: i }),
          });
          const body = (await res.json()) as { code?: string };
          answers.push({
            status: res.status,
            code: body.code,
            connection: res.headers.get('connection'),
            at: performance.now() - started,
          });
          if (res.status === 503) return; // refused: this client goes to another replica
        } catch (err) {
          // After the listener closed, a new connection is refused: the client's next replica.
          errors.push({
            message: String((err as Error).cause ?? err),
            at: performance.now() - started,
          });
          return;
        }
      }
    };
    const longPoll = json(base, 'POST', '/v1/queues/jobs/groups/workers/_receive', key, {
      consumer: 'c1',
      max: 1,
      waitMs: 20_000,
    });
    const workers = Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)));
    await new Promise((r) => setTimeout(r, 700));
    const termAt = performance.now();
    child.kill('SIGTERM');
    const code = await exited;
    const exitMs = performance.now() - termAt;
    stop = true;
    await workers;
    const polled = await longPoll;
    health.close();

    expect(code).toBe(0);
    expect(exitMs).toBeLessThan(GRACE_MS);
    // The long poll was in flight for the whole drain: it was answered, empty, not cut off.
    expect(polled.status).toBe(200);
    expect(polled.body.messages).toEqual([]);
    // Every answer is a success or the declared refusal, which closes its connection.
    const before = answers.filter((a) => a.status < 300);
    expect(before.length).toBeGreaterThan(20);
    const other = answers.filter(
      (a) => !(a.status < 300 || (a.status === 503 && a.code === 'SHUTTING_DOWN')),
    );
    expect(other).toEqual([]);
    for (const a of answers.filter((x) => x.status === 503)) expect(a.connection).toBe('close');
    // Connection errors only once the gateway had been told to stop.
    const early = errors.filter((e) => e.at < termAt - started);
    expect(early).toEqual([]);
    // The health watcher heard NOT_SERVING and its stream ended cleanly.
    expect(await watchEnded).toBe(grpc.status.OK);
    expect(statuses[0]).toBe('SERVING');
    expect(statuses.at(-1)).toBe('NOT_SERVING');
  });
});
