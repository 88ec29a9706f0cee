/**
 * RELIABILITY.md scenario 7 as a measurement: every Redis data node stopped (SIGSTOP) for
 * OUTAGE_SECONDS (default 30) under load. What it shows: answers keep coming within the request
 * deadline (503 + Retry-After, fast once the outage is known), the gateway's memory stays flat (no
 * queue of commands grows while Redis is away), and it serves again when Redis returns.
 *
 * Starts its own topology and the built gateway (`dist/main.js`: run `npm run build` first), drives
 * it with autocannon (BENCH_CONNECTIONS, default 32; a cache PUT and a GET per pair), and prints one
 * row per 5 s: answers by status, the slowest, and the gateway's RSS. Loopback only, bounded in
 * time (10 s before, the outage, 10 s after). Usage: `npm run bench:outage`.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import autocannon from 'autocannon';
import { GATEWAY_USER, freePort, startTopology } from '../test/harness/topology.js';

const OUTAGE_S = Number(process.env.OUTAGE_SECONDS ?? 30);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const BEFORE_S = 10;
const AFTER_S = 10;

function rssMb(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

const topology = await startTopology();
const port = await freePort();
const adminToken = randomBytes(16).toString('hex');
const gateway = spawn(process.execPath, ['dist/main.js'], {
  env: {
    ...process.env,
    HOST: '127.0.0.1',
    PORT: String(port),
    METRICS_PORT: '0',
    REDIS_SENTINELS: topology.sentinels.map((s) => `${s.host}:${s.port}`).join(','),
    REDIS_USERNAME: GATEWAY_USER.username,
    REDIS_PASSWORD: GATEWAY_USER.password,
    ADMIN_TOKEN: adminToken,
    LOG_LEVEL: 'error',
    // The gateway's own per-key quota would turn part of this load into 429s.
    REQUEST_QUOTA_PER_MINUTE: '0',
  },
  stdio: ['ignore', 'ignore', 'inherit'],
});
process.on('exit', () => gateway.kill('SIGKILL'));

try {
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (i > 150) throw new Error('the gateway did not start');
    if (
      await fetch(`${base}/readyz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      break;
    await new Promise((r) => setTimeout(r, 200));
  }
  const admin = { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' };
  await fetch(`${base}/v1/admin/tenants`, {
    method: 'POST',
    headers: admin,
    body: JSON.stringify({ id: 'outage' }),
  });
  const { key } = (await (
    await fetch(`${base}/v1/admin/tenants/outage/keys`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({ scopes: ['cache:read', 'cache:write'] }),
    })
  ).json()) as { key: string };

  interface Bucket {
    ok: number;
    unavailable: number;
    other: number;
    slowestMs: number;
    rssMb: number;
  }
  const buckets: Bucket[] = [];
  const started = Date.now();
  const bucketOf = () => {
    const i = Math.floor((Date.now() - started) / 5000);
    while (buckets.length <= i) {
      buckets.push({ ok: 0, unavailable: 0, other: 0, slowestMs: 0, rssMb: 0 });
    }
    return buckets[i] as Bucket;
  };
  const sampler = setInterval(() => {
    const b = bucketOf();
    b.rssMb = Math.max(b.rssMb, rssMb(gateway.pid ?? 0));
  }, 1000);

  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
  const nodes = [topology.master, ...topology.replicas].map((n) => n.name);
  let resumedAt: number | undefined;
  let servedAgainAt: number | undefined;
  const outage = setTimeout(() => {
    for (const n of nodes) topology.pause(n);
    setTimeout(() => {
      for (const n of nodes) topology.resume(n);
      resumedAt = Date.now();
    }, OUTAGE_S * 1000);
  }, BEFORE_S * 1000);
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: base,
        connections: CONNECTIONS,
        duration: BEFORE_S + OUTAGE_S + AFTER_S,
        timeout: 10,
        requests: [
          { method: 'PUT', path: '/v1/cache/outage-key', headers, body: '{"value":{"n":1}}' },
          { method: 'GET', path: '/v1/cache/outage-key', headers },
        ],
      },
      (err: Error | null, res) => (err ? reject(err) : resolve(res)),
    );
    instance.on('response', (_client, status, _bytes, ms) => {
      const b = bucketOf();
      if (status < 300) {
        b.ok++;
        if (resumedAt !== undefined) servedAgainAt ??= Date.now();
      } else if (status === 503) b.unavailable++;
      else b.other++;
      b.slowestMs = Math.max(b.slowestMs, ms);
    });
  });
  clearTimeout(outage);
  clearInterval(sampler);

  console.log(
    `Redis down (every data node SIGSTOPped) from ${BEFORE_S} s to ${BEFORE_S + OUTAGE_S} s, ${CONNECTIONS} connections`,
  );
  console.table(
    buckets.map((b, i) => ({
      seconds: `${i * 5}-${i * 5 + 5}`,
      'answers 2xx': b.ok,
      'answers 503': b.unavailable,
      'other answers': b.other,
      'slowest ms': Math.round(b.slowestMs),
      'gateway RSS MB': b.rssMb.toFixed(1),
    })),
  );
  console.log(
    `served again ${servedAgainAt === undefined || resumedAt === undefined ? 'never' : `${servedAgainAt - resumedAt} ms`} after Redis returned; errors (no answer): ${result.errors}, timeouts: ${result.timeouts}`,
  );
  mkdirSync('load/results', { recursive: true });
  const file = `load/results/outage-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
  const servedAgainMs =
    servedAgainAt === undefined || resumedAt === undefined ? null : servedAgainAt - resumedAt;
  writeFileSync(
    file,
    JSON.stringify({ OUTAGE_S, CONNECTIONS, buckets, servedAgainMs, errors: result.errors }),
  );
  console.log(`written to ${file}`);
} finally {
  gateway.kill('SIGTERM');
  await topology.stop();
}
process.exit(0);
