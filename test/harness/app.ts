/**
 * Builds a real gateway (real deps, real Redis from the global topology) for route tests, and
 * makes tenants and API keys for them.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, inject } from 'vitest';
import { buildApp } from '../../src/app.js';
import type { Clock } from '../../src/clock.js';
import { type Config, parseConfig } from '../../src/config.js';
import { type Deps, createDeps } from '../../src/deps.js';
import { GATEWAY_USER, HARNESS_ADMIN, HOST } from './topology.js';

export const ADMIN_TOKEN = 'test-admin-token-0123456789';

export interface TestApp {
  app: FastifyInstance;
  deps: Deps;
  config: Config;
  close(): Promise<void>;
}

/** Environment pointing at a topology (the global one unless given). */
export function testEnv(
  extra: Record<string, string> = {},
  sentinels?: { host: string; port: number }[],
  masterName?: string,
): Record<string, string> {
  const provided = sentinels === undefined ? inject('redis') : undefined;
  const list = sentinels ?? provided?.sentinels ?? [];
  return {
    REDIS_SENTINELS: list.map((s) => `${s.host}:${s.port}`).join(','),
    REDIS_MASTER_NAME: masterName ?? provided?.masterName ?? 'mymaster',
    LOG_LEVEL: 'silent',
    // The gateway logs in as deploy/redis/users.acl's `gateway` user: every test proves the ACL.
    REDIS_USERNAME: GATEWAY_USER.username,
    REDIS_PASSWORD: GATEWAY_USER.password,
    ADMIN_TOKEN,
    METRICS_PORT: '0',
    // Gateways a test spawns never shed: the suite's own load on a small CI host must not turn into
    // 503s. Shedding is tested by setting the flag (test/integration/overload.test.ts).
    OVERLOAD_MAX_EVENT_LOOP_DELAY_MS: '0',
    ...extra,
  };
}

/** A metric's series by one label's value: `{ [labelValue]: value }`. */
export async function seriesBy(
  metric: { get(): Promise<{ values: { labels: Record<string, unknown>; value: number }[] }> },
  label: string,
): Promise<Record<string, number>> {
  const { values } = await metric.get();
  return Object.fromEntries(values.map((v) => [String(v.labels[label]), v.value]));
}

/** Rate-limit lease units granted and used, summed over `apps` (their lease metric). */
export async function leaseUnits(
  apps: TestApp[],
): Promise<{ granted: number; used: number; returned: number }> {
  let granted = 0;
  let used = 0;
  let returned = 0;
  for (const a of apps) {
    const s = await seriesBy(
      a.deps.metrics.registry.getSingleMetric('gateway_ratelimit_lease_units_total') as never,
      'event',
    );
    granted += s.granted ?? 0;
    used += s.used ?? 0;
    returned += s.returned ?? 0;
  }
  return { granted, used, returned };
}

/** Waits until the app's master client is ready (or throws after `timeoutMs`). */
export async function waitForRedis(deps: Deps, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!deps.redis.everReady() || deps.redis.primary.status !== 'ready') {
    if (Date.now() > deadline)
      throw new Error(`redis not ready: ${JSON.stringify(deps.redis.state())}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function buildTestApp(
  options: {
    env?: Record<string, string>;
    clock?: Clock;
    sentinels?: { host: string; port: number }[];
    masterName?: string;
    /** Every log line at warn and above, parsed (the logger is silent otherwise). */
    onLog?: (line: Record<string, unknown>) => void;
  } = {},
): Promise<TestApp> {
  const config = parseConfig(testEnv(options.env, options.sentinels, options.masterName));
  const onLog = options.onLog;
  const logger =
    onLog === undefined
      ? pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' })
      : pino(
          { level: 'warn' },
          { write: (line: string) => onLog(JSON.parse(line) as Record<string, unknown>) },
        );
  const deps = createDeps(config, logger, options.clock ? { clock: options.clock } : {});
  const app = await buildApp(deps);
  await app.ready();
  await waitForRedis(deps);
  return {
    app,
    deps,
    config,
    async close() {
      await app.close();
      await deps.close();
    },
  };
}

/** Builds one app for the whole test file (beforeAll) and closes it after (afterAll). */
export function useTestApp(options: Parameters<typeof buildTestApp>[0] = {}): TestApp {
  let current: TestApp | undefined;
  beforeAll(async () => {
    current = await buildTestApp(options);
  });
  afterAll(async () => {
    await current?.close();
  });
  const get = (): TestApp => {
    if (current === undefined)
      throw new Error('the test app is built in beforeAll; use it inside tests');
    return current;
  };
  return {
    get app() {
      return get().app;
    },
    get deps() {
      return get().deps;
    },
    get config() {
      return get().config;
    },
    close: () => get().close(),
  };
}

/**
 * A Redis client with every permission, on the server an app's primary connection uses: for
 * tests that inspect or break things the gateway user may not touch.
 */
export async function adminRedis(app: TestApp): Promise<Redis> {
  const port = (app.deps.redis.primary.stream as { remotePort?: number } | undefined)?.remotePort;
  if (port === undefined) throw new Error('the app is not connected');
  const client = new Redis({
    host: HOST,
    port,
    username: HARNESS_ADMIN.username,
    password: HARNESS_ADMIN.password,
  });
  await new Promise((resolve, reject) => {
    client.once('ready', resolve);
    client.once('error', reject);
  });
  return client;
}

/** Every key matching `match` on that server (SCAN to the end). */
export async function scanAll(redis: Redis, match: string): Promise<string[]> {
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', match, 'COUNT', 1000);
    out.push(...found);
    cursor = next;
  } while (cursor !== '0');
  return out;
}

export interface TestTenant {
  tenant: string;
  key: string;
  keyId: string;
  /** Headers carrying the key as a bearer token. */
  auth: { authorization: string };
}

export function randomTenantId(prefix = 't'): string {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

/** Creates a fresh tenant with one key holding `scopes`. */
export async function newTenant(deps: Deps, scopes: string[]): Promise<TestTenant> {
  const tenant = randomTenantId();
  await deps.admin.createTenant(tenant, undefined);
  return addKey(deps, tenant, scopes);
}

/** Issues another key for an existing tenant. */
export async function addKey(
  deps: Deps,
  tenant: string,
  scopes: string[],
  expiresAt?: string,
): Promise<TestTenant> {
  const { key, info } = await deps.admin.createKey(tenant, { scopes, expiresAt });
  return { tenant, key, keyId: info.id, auth: { authorization: `Bearer ${key}` } };
}

/** Parses a JSON or problem+json body. */
/**
 * Writes a policies file (RATELIMIT_POLICIES_FILE) of these YAML lines into a new temporary
 * directory; returns its path, to rewrite for reload tests.
 */
export function writePoliciesFile(lines: string[], name = 'policies.yaml'): string {
  const path = join(mkdtempSync(join(tmpdir(), 'rl-policies-')), name);
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

export function body<T = Record<string, unknown>>(res: LightMyRequestResponse): T {
  return JSON.parse(res.body) as T;
}

/** Asserts the response is a problem+json with this status and code; returns its body. */
export function expectProblem(
  res: LightMyRequestResponse,
  status: number,
  code: string,
): Record<string, unknown> & { errors?: { field: string; message: string; limit?: string }[] } {
  const contentType = String(res.headers['content-type']);
  if (res.statusCode !== status || !contentType.startsWith('application/problem+json')) {
    throw new Error(
      `expected ${status} problem+json ${code}, got ${res.statusCode} ${contentType}: ${res.body}`,
    );
  }
  const b = body<
    Record<string, unknown> & { errors?: { field: string; message: string; limit?: string }[] }
  >(res);
  if (b.code !== code) throw new Error(`expected code ${code}, got ${String(b.code)}: ${res.body}`);
  if (
    b.status !== status ||
    typeof b.type !== 'string' ||
    typeof b.title !== 'string' ||
    typeof b.detail !== 'string'
  ) {
    throw new Error(`malformed problem body: ${res.body}`);
  }
  if (b.requestId !== res.headers['x-request-id'])
    throw new Error(
      `problem requestId ${String(b.requestId)} != header ${String(res.headers['x-request-id'])}`,
    );
  return b;
}

export type Inject = (opts: InjectOptions) => Promise<LightMyRequestResponse>;

/** One request over a real socket with the path sent verbatim (no URL normalisation). */
export function rawHttp(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string>,
  payload?: string,
): Promise<{
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (b += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: b }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}
