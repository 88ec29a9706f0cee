/**
 * `npm run local`: starts a Sentinel topology on loopback (1 master, 2 replicas, 3 sentinels),
 * a gateway connected through the sentinels, a demo tenant and API key, and prints how to call
 * it. Ctrl-C stops everything it started.
 *
 * Environment: PORT (default 8080), METRICS_PORT (default 9464) and RLS_GRPC_PORT (default 8081)
 * of the gateway. A policies file with the README's `envoy` domain (`edge`) is written for it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GATEWAY_USER, startTopology } from '../test/harness/topology.js';

const port = Number(process.env.PORT ?? 8080);
const metricsPort = Number(process.env.METRICS_PORT ?? 9464);
const rlsPort = Number(process.env.RLS_GRPC_PORT ?? 8081);
const base = `http://127.0.0.1:${port}`;
const adminToken = `local-admin-${randomBytes(12).toString('hex')}`;

async function waitReady(gateway: ChildProcess): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (gateway.exitCode !== null || gateway.signalCode !== null)
      throw new Error(`the gateway exited with code ${gateway.exitCode}`);
    try {
      const res = await fetch(`${base}/readyz`);
      if (res.ok) return;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error('the gateway did not become ready within 30 s');
}

async function admin(path: string, body: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(`${base}/v1/admin${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = (await res.json()) as Record<string, unknown>;
  if (!res.ok) throw new Error(`POST /v1/admin${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

async function main(): Promise<void> {
  console.log('Starting Redis: 1 master, 2 replicas, 3 sentinels on 127.0.0.1 ...');
  const topology = await startTopology({ downAfterMs: 2000 });
  let gateway: ChildProcess | undefined;
  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    console.log('\nStopping the gateway and Redis ...');
    if (gateway && gateway.exitCode === null && gateway.signalCode === null) {
      const exited = new Promise((r) => gateway?.once('exit', r));
      gateway.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (gateway.exitCode === null) gateway.kill('SIGKILL');
    }
    await topology.stop();
    process.exit(code);
  };
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));

  // The README's envoyproxy/ratelimit example, so its /v1/ratelimit/envoy calls work as written.
  const policiesFile = join(mkdtempSync(join(tmpdir(), 'cache-gateway-local-')), 'policies.yaml');
  writeFileSync(
    policiesFile,
    [
      'envoy:',
      '  - domain: edge',
      '    descriptors:',
      '      - key: remote_address',
      '        rate_limit: { unit: minute, requests_per_unit: 60 }',
      '      - key: path',
      '        value: /api/*',
      '        rate_limit: { unit: second, requests_per_unit: 20 }',
      '',
    ].join('\n'),
  );

  try {
    // Its own process group: Ctrl-C reaches only this script, which then drains the gateway once.
    gateway = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      detached: true,
      stdio: ['ignore', 'inherit', 'inherit'],
      env: {
        ...process.env,
        PORT: String(port),
        METRICS_PORT: String(metricsPort),
        RLS_GRPC_PORT: String(rlsPort),
        RATELIMIT_POLICIES_FILE: policiesFile,
        HOST: '127.0.0.1',
        REDIS_SENTINELS: topology.sentinels.map((s) => `${s.host}:${s.port}`).join(','),
        REDIS_MASTER_NAME: topology.masterName,
        // The least-privilege ACL user of deploy/redis/users.acl (development password).
        REDIS_USERNAME: GATEWAY_USER.username,
        REDIS_PASSWORD: GATEWAY_USER.password,
        READ_FROM_REPLICAS: 'true',
        ADMIN_TOKEN: adminToken,
        LOG_LEVEL: process.env.LOG_LEVEL ?? 'info',
      },
    });
    process.on('exit', () => gateway?.kill('SIGKILL'));
    gateway.on('exit', (code) => {
      if (!stopping) {
        console.error(`the gateway exited (code ${code})`);
        void stop(1);
      }
    });
    await waitReady(gateway);
    await admin('/tenants', { id: 'demo', name: 'Demo tenant' });
    const created = await admin('/tenants/demo/keys', {
      name: 'demo',
      scopes: ['cache:*', 'session:*', 'ratelimit:*', 'queue:*', 'idempotency:use'],
    });
    const key = String(created.key);
    console.log(`
cache-gateway is running.

  API          ${base}/v1            docs: ${base}/docs
  metrics      http://127.0.0.1:${metricsPort}/metrics
  Envoy RLS    127.0.0.1:${rlsPort} (gRPC; domain "edge" in ${policiesFile})
  sentinels    ${topology.sentinels.map((s) => `${s.host}:${s.port}`).join(', ')} (master "${topology.masterName}")
  admin token  ${adminToken}
  demo tenant  demo
  demo key     ${key}

Try it:

  curl -s -X PUT ${base}/v1/cache/greeting -H 'Authorization: Bearer ${key}' -H 'Content-Type: application/json' -d '{"value":{"hello":"world"},"ttl":300}'
  curl -s ${base}/v1/cache/greeting -H 'Authorization: Bearer ${key}'
  curl -s -X POST ${base}/v1/ratelimit/check -H 'Authorization: Bearer ${key}' -H 'Content-Type: application/json' -d '{"policy":"public","key":"user:42"}'
  curl -s -X POST ${base}/v1/sessions -H 'Authorization: Bearer ${key}' -H 'Content-Type: application/json' -d '{"userId":"user-42","data":{"cart":[]}}'

The demo key holds every capability (cache, sessions, rate limits, queues, idempotency); the
README's examples run as they are with KEY=${key}

Press Ctrl-C to stop everything.
`);
  } catch (err) {
    console.error(err instanceof Error ? err.message : err);
    await stop(1);
  }
}

void main();
