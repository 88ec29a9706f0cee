/**
 * Rate-limit failure modes with the Redis master paused (SIGSTOP: no FIN, no answer). A policy
 * that fails open allows within its timeout, flagged `X-RateLimit-Degraded: true`; one that fails
 * closed answers 503 with Retry-After; after SIGCONT decisions are counted again. The
 * envoyproxy/ratelimit ways in (HTTP /envoy, gRPC RLS) fail open the same way. Down-after is long
 * here, so the sentinels do not fail over during the pause.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compilePolicy } from '../../src/modules/ratelimit/policy.js';
import { keys } from '../../src/redis/keys.js';
import {
  ADMIN_TOKEN,
  type TestApp,
  buildTestApp,
  newTenant,
  rawHttp,
  writePoliciesFile,
} from '../harness/app.js';
import { rlsClient, startTestRlsServer } from '../harness/rls.js';
import { type Topology, rawCommand, startTopology } from '../harness/topology.js';

let topology: Topology;
let gw: TestApp;
let port: number;
let key: string;
let tenant: string;

beforeAll(async () => {
  topology = await startTopology({ downAfterMs: 30_000 });
  const policiesFile = writePoliciesFile([
    'envoy:',
    '  - domain: edge',
    '    descriptors:',
    '      - { key: remote_address, rate_limit: { unit: minute, requests_per_unit: 100 } }',
  ]);
  gw = await buildTestApp({
    sentinels: topology.sentinels,
    masterName: topology.masterName,
    env: { RATELIMIT_POLICIES_FILE: policiesFile },
  });
  await gw.app.listen({ port: 0, host: '127.0.0.1' });
  port = (gw.app.server.address() as { port: number }).port;
  const a = await newTenant(gw.deps, ['ratelimit:check']);
  key = a.key;
  tenant = a.tenant;
  for (const [name, failureMode] of [
    ['open-p', 'open'],
    ['closed-p', 'closed'],
  ]) {
    const res = await gw.app.inject({
      method: 'PUT',
      url: `/v1/admin/tenants/${a.tenant}/policies/${name}`,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      payload: {
        algorithm: 'token_bucket',
        capacity: 1000,
        refillPerSecond: 100,
        failureMode,
        timeoutMs: 50,
      },
    });
    expect(res.statusCode).toBe(201);
  }
});

afterAll(async () => {
  topology?.resume(topology.master.name);
  await gw?.close();
  await topology?.stop();
});

async function hook(policy: string) {
  const started = performance.now();
  const res = await rawHttp(port, 'GET', `/v1/ratelimit/hook/${policy}/x`, {
    'x-gateway-key': key,
    'x-forwarded-for': '192.0.2.1',
  });
  return { ...res, ms: performance.now() - started };
}

describe('Redis paused', () => {
  it('open allows (degraded) within its timeout, closed answers 503, both recover after SIGCONT', async () => {
    // Warm: API key and policies cached in-process, decisions counted.
    for (const p of ['open-p', 'closed-p']) {
      const r = await hook(p);
      expect(r.status).toBe(200);
      expect(r.headers['x-ratelimit-degraded']).toBeUndefined();
    }

    topology.pause(topology.master.name);
    try {
      for (let i = 0; i < 5; i++) {
        const open = await hook('open-p');
        expect(open.status).toBe(200);
        expect(open.headers['x-ratelimit-degraded']).toBe('true');
        // 50 ms timeout, plus scheduling noise on a busy 2-core host.
        expect(open.ms).toBeLessThan(400);
        const closed = await hook('closed-p');
        expect(closed.status).toBe(503);
        expect(closed.headers['content-type']).toContain('application/problem+json');
        expect(Number(closed.headers['retry-after'])).toBeGreaterThan(0);
        expect(closed.ms).toBeLessThan(400);
      }
      const check = await gw.app.inject({
        method: 'POST',
        url: '/v1/ratelimit/check',
        headers: { authorization: `Bearer ${key}` },
        payload: { policy: 'open-p', key: 'k' },
      });
      expect(check.statusCode).toBe(200);
      expect(JSON.parse(check.body)).toMatchObject({ allowed: true, degraded: true });
    } finally {
      topology.resume(topology.master.name);
    }

    const deadline = Date.now() + 15_000;
    let recovered = false;
    while (!recovered && Date.now() < deadline) {
      const [open, closed] = [await hook('open-p'), await hook('closed-p')];
      recovered =
        open.status === 200 &&
        open.headers['x-ratelimit-degraded'] === undefined &&
        closed.status === 200;
      if (!recovered) await new Promise((r) => setTimeout(r, 100));
    }
    expect(recovered).toBe(true);
    const metrics = await gw.deps.metrics.registry.getSingleMetricAsString(
      'gateway_ratelimit_decisions_total',
    );
    expect(metrics).toMatch(/outcome="degraded_allowed"\} [1-9]/);
    expect(metrics).toMatch(/outcome="degraded_denied"\} [1-9]/);
  });

  it('a reset while Redis is paused answers 503 with Retry-After; retried after SIGCONT it holds', async () => {
    const r = await newTenant(gw.deps, ['ratelimit:check', 'ratelimit:reset']);
    const call = (url: string) =>
      gw.app.inject({
        method: 'POST',
        url,
        headers: r.auth,
        payload: { policy: 'public', key: 'u' },
      });
    await call('/v1/ratelimit/check');
    await call('/v1/ratelimit/check');
    topology.pause(topology.master.name);
    try {
      const started = performance.now();
      const paused = await call('/v1/ratelimit/reset');
      expect(paused.statusCode).toBe(503);
      expect(paused.headers['content-type']).toContain('application/problem+json');
      expect(Number(paused.headers['retry-after'])).toBeGreaterThan(0);
      expect(performance.now() - started).toBeLessThan(5000);
    } finally {
      topology.resume(topology.master.name);
    }
    // The paused reset may still run once Redis wakes (its commands were sent): a 503 means
    // "unknown", and a reset is idempotent, so the caller retries.
    const deadline = Date.now() + 15_000;
    let status = 0;
    while (status !== 200 && Date.now() < deadline) {
      status = (await call('/v1/ratelimit/reset')).statusCode;
      if (status !== 200) await new Promise((res) => setTimeout(res, 100));
    }
    expect(status).toBe(200);
    const after = JSON.parse((await call('/v1/ratelimit/check')).body) as { remaining: number };
    expect(after.remaining).toBe(99); // a full bucket of 100, less this check
  });

  it('checks sent in one script call keep their own timeouts', async () => {
    const { ratelimit } = gw.deps;
    const policy = (name: string, timeoutMs: number) =>
      compilePolicy(name, 'inline', {
        algorithm: 'token_bucket',
        capacity: 1000,
        refillPerSecond: 100,
        failureMode: 'open',
        timeoutMs,
      });
    const fast = policy('fast', 50);
    const slow = policy('slow', 300);
    // Warm (connection ready, script loaded), then the same pair in one turn: one script call.
    await Promise.all([
      ratelimit.check(tenant, { policy: fast, identifier: 'w', cost: 1 }),
      ratelimit.check(tenant, { policy: slow, identifier: 'w', cost: 1 }),
    ]);
    topology.pause(topology.master.name);
    try {
      const started = performance.now();
      const settledAt = (p: ReturnType<typeof ratelimit.check>) =>
        Promise.resolve(p).then((d) => ({ d, ms: performance.now() - started }));
      const [a, b] = await Promise.all([
        settledAt(ratelimit.check(tenant, { policy: fast, identifier: 'x', cost: 1 })),
        settledAt(ratelimit.check(tenant, { policy: slow, identifier: 'x', cost: 1 })),
      ]);
      expect(a.d).toMatchObject({ allowed: true, degraded: true });
      expect(b.d).toMatchObject({ allowed: true, degraded: true });
      // Each at its own deadline (plus scheduling noise on a busy 2-core host).
      expect(a.ms).toBeGreaterThanOrEqual(49);
      expect(a.ms).toBeLessThan(400);
      expect(b.ms).toBeGreaterThanOrEqual(299);
      expect(b.ms).toBeLessThan(1500);
    } finally {
      topology.resume(topology.master.name);
    }
  });

  /** The two ways a check goes to Redis: batched with its turn's (`gw`), or alone. */
  const PATHS = [
    ['batched', 0],
    ['sent alone (RATELIMIT_BATCH_MAX=1)', 1],
  ] as const;

  async function onPath(
    batchMax: number,
    fn: (rl: TestApp['deps']['ratelimit'], deps: TestApp['deps']) => Promise<void>,
  ) {
    const alone =
      batchMax === 0
        ? undefined
        : await buildTestApp({
            sentinels: topology.sentinels,
            masterName: topology.masterName,
            env: { RATELIMIT_BATCH_MAX: String(batchMax) },
          });
    try {
      await fn((alone ?? gw).deps.ratelimit, (alone ?? gw).deps);
    } finally {
      await alone?.close();
    }
  }

  it.each(PATHS)(
    'a lease granted in an answer that came after its check timed out is given out all the same: %s',
    (_, batchMax) => onPath(batchMax, (rl) => lateGrantGivenOut(rl, `late-${batchMax}`)),
  );

  /** What a fixed window's state in Redis counts for `identifier`, read on the current master. */
  const windowCount = (policy: ReturnType<typeof compilePolicy>, identifier: string) => {
    const stateKey = keys.ratelimit(tenant, policy.stateName, policy.code as string, identifier);
    return async () =>
      Number(String(await rawCommand(await topology.masterPort(), 'GET', stateKey)).split(' ')[1]);
  };

  it.each(PATHS)(
    'a check answered by its failure mode before its call could be sent is never sent: %s',
    (_, batchMax) =>
      onPath(batchMax, async (ratelimit) => {
        const policy = compilePolicy('refused', 'inline', {
          algorithm: 'fixed_window',
          limit: 1000,
          windowMs: 3_600_000,
          failureMode: 'closed',
          timeoutMs: 50,
        });
        const identifier = `refused-${batchMax}`;
        const counted = windowCount(policy, identifier);
        const master = await topology.masterPort();
        const check = () => ratelimit.check(tenant, { policy, identifier, cost: 1 });
        await check();
        expect(await counted()).toBe(1);
        const [, before] = (await rawCommand(master, 'CONFIG', 'GET', 'min-replicas-to-write')) as [
          string,
          string,
        ];
        // More replicas required than there are: every script call is refused (NOREPLICAS) before
        // it runs, and the gateway sends it again, within the request's budget, until one runs.
        await rawCommand(master, 'CONFIG', 'SET', 'min-replicas-to-write', '3');
        try {
          await expect(check()).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
          if (batchMax === 0) {
            await expect(
              ratelimit.checkMany(tenant, [{ policy, identifier, cost: 1 }], true),
            ).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
          }
          await new Promise((r) => setTimeout(r, 150));
        } finally {
          await rawCommand(master, 'CONFIG', 'SET', 'min-replicas-to-write', before);
        }
        // Well past the resends' backoff: a call still being sent again would have run by now.
        await new Promise((r) => setTimeout(r, 1000));
        expect(await counted()).toBe(1); // answered 503, so never counted
        expect((await check()).allowed).toBe(true);
        expect(await counted()).toBe(2);
      }),
  );

  it.each(PATHS)(
    'a check answered 503 that Redis ran after all gives its units back: %s',
    (_, batchMax) =>
      onPath(batchMax, async (ratelimit, deps) => {
        const policy = compilePolicy('strict', 'inline', {
          algorithm: 'fixed_window',
          limit: 5,
          windowMs: 3_600_000,
          failureMode: 'closed',
          timeoutMs: 50,
        });
        const identifier = `refund-${batchMax}`;
        const counted = windowCount(policy, identifier);
        const refunded = async () =>
          Number(
            /gateway_ratelimit_refunded_units_total (\d+)/.exec(
              await deps.metrics.registry.getSingleMetricAsString(
                'gateway_ratelimit_refunded_units_total',
              ),
            )?.[1] ?? 0,
          );
        const check = (cost: number) => ratelimit.check(tenant, { policy, identifier, cost });
        expect((await check(1)).allowed).toBe(true);
        expect(await counted()).toBe(1);
        const before = await refunded();
        topology.pause(topology.master.name);
        try {
          // Sent, then answered 503 at 50 ms: Redis runs them when it wakes.
          await expect(check(2)).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
          if (batchMax === 0) {
            await expect(
              ratelimit.checkMany(tenant, [{ policy, identifier, cost: 1 }], true),
            ).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
          }
        } finally {
          topology.resume(topology.master.name);
        }
        const sent = batchMax === 0 ? 3 : 2;
        const deadline = Date.now() + 5000;
        while ((await refunded()) - before < sent && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 20));
        }
        // Redis counted them (the refunds say so), and their units went back.
        expect((await refunded()) - before).toBe(sent);
        await new Promise((r) => setTimeout(r, 200));
        expect(await counted()).toBe(1);
        // The limit holds as if they had never been: 3 more, and then 1 is left.
        expect((await check(3)).allowed).toBe(true);
        expect(await counted()).toBe(4);

        // A master change between the check and its late answer: the refund would go to a master
        // that may never have counted the check, so none is sent.
        topology.pause(topology.master.name);
        try {
          await expect(check(1)).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
          ratelimit.forgetLeases();
        } finally {
          topology.resume(topology.master.name);
        }
        const counts = Date.now() + 5000;
        while ((await counted()) < 5 && Date.now() < counts) {
          await new Promise((r) => setTimeout(r, 20));
        }
        await new Promise((r) => setTimeout(r, 300));
        expect(await counted()).toBe(5);
        expect((await refunded()) - before).toBe(sent);
        expect((await check(1)).allowed).toBe(false);
      }),
  );

  async function lateGrantGivenOut(ratelimit: TestApp['deps']['ratelimit'], identifier: string) {
    const policy = compilePolicy('late', 'inline', {
      algorithm: 'fixed_window',
      limit: 1000,
      windowMs: 3_600_000,
      failureMode: 'open',
      timeoutMs: 50,
      leaseMs: 30_000,
    });
    const stateKey = keys.ratelimit(tenant, policy.stateName, policy.code as string, identifier);
    const check = () => ratelimit.check(tenant, { policy, identifier, cost: 1 });
    const counted = async () =>
      Number(String(await rawCommand(await topology.masterPort(), 'GET', stateKey)).split(' ')[1]);
    // Seen once (no lease), then leases of 1 and 2, each used up: the next check asks for 4.
    for (let i = 0; i < 6; i++) expect((await check()).degraded).toBeUndefined();
    expect(ratelimit.leasedUnits(stateKey)).toBe(0);
    topology.pause(topology.master.name);
    let late;
    try {
      late = await check();
    } finally {
      topology.resume(topology.master.name);
    }
    expect(late).toMatchObject({ allowed: true, degraded: true });
    // Redis counts it (and the 4 units) once it runs again; the answer then reaches the lease.
    const deadline = Date.now() + 5000;
    while (ratelimit.leasedUnits(stateKey) === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(ratelimit.leasedUnits(stateKey)).toBe(4);
    expect(await counted()).toBe(1 + (1 + 1) + (1 + 2) + (1 + 4)); // the checks that asked Redis
    for (let i = 0; i < 4; i++) expect((await check()).degraded).toBeUndefined();
    expect(ratelimit.leasedUnits(stateKey)).toBe(0);
    expect(await counted()).toBe(11); // all four from the lease, none from Redis
  }

  it('the envoyproxy/ratelimit endpoint and the gRPC rate limit service fail open, flagged', async () => {
    const rls = await startTestRlsServer(gw.deps, { legacyHeaders: true });
    const client = rlsClient(rls.port);
    const meta = { 'x-gateway-key': key };
    const request = {
      domain: 'edge',
      descriptors: [{ entries: [{ key: 'remote_address', value: '192.0.2.9' }] }],
    };
    const viaGrpc = async () => {
      const started = performance.now();
      const { response, error } = await client.call(request, meta);
      return { r: response, e: error, ms: performance.now() - started };
    };
    const viaHttp = async () => {
      const started = performance.now();
      const res = await rawHttp(
        port,
        'POST',
        '/v1/ratelimit/envoy',
        {
          authorization: `Bearer ${key}`,
          'content-type': 'application/json',
        },
        JSON.stringify(request),
      );
      return { ...res, ms: performance.now() - started };
    };
    try {
      // Warm: key verified and cached, the connection and script ready.
      expect((await viaHttp()).status).toBe(200);
      expect((await viaGrpc()).r?.overallCode).toBe('OK');
      topology.pause(topology.master.name);
      try {
        for (let i = 0; i < 3; i++) {
          const http = await viaHttp();
          expect(http.status).toBe(200);
          expect(http.headers['x-ratelimit-degraded']).toBe('true');
          expect(http.ms).toBeLessThan(400);
          const g = await viaGrpc();
          expect(g.r?.overallCode).toBe('OK');
          expect(g.r?.responseHeadersToAdd).toEqual(
            expect.arrayContaining([{ key: 'x-ratelimit-degraded', value: 'true' }]),
          );
          expect(g.ms).toBeLessThan(400);
        }
      } finally {
        topology.resume(topology.master.name);
      }
    } finally {
      client.close();
      await rls.close(1000);
    }
  });
});
