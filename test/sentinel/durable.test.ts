/**
 * Durable writes (WAIT) against a topology of their own: with both replicas paused a durable
 * write answers 503 BACKEND_NO_REPLICAS (a plain one still succeeds); durable sessions and
 * idempotency records acknowledged just before `kill -9` of the master are all readable once a
 * replica has been promoted. And a master that crashes and is back before the sentinels call it
 * down (a container restart) keeps, from its AOF, everything it acknowledged a second before.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type TestApp,
  type TestTenant,
  body,
  buildTestApp,
  expectProblem,
  newTenant,
} from '../harness/app.js';
import { keys } from '../../src/redis/keys.js';
import { logTopologyOnFailure } from '../harness/ledger.js';
import { type Topology, rawCommand, startTopology } from '../harness/topology.js';

let topology: Topology;
let gw: TestApp;
let owner: TestTenant;

beforeAll(async () => {
  // down-after 2500 ms, as in failover.test.ts (why not shorter: see there).
  topology = await startTopology({ downAfterMs: 2500 });
  gw = await buildTestApp({
    sentinels: topology.sentinels,
    masterName: topology.masterName,
    env: { DURABLE_WAIT_TIMEOUT_MS: '300' },
  });
  owner = await newTenant(gw.deps, [
    'session:read',
    'session:write',
    'idempotency:use',
    'queue:publish',
    'queue:consume',
    'queue:admin',
    'ratelimit:check',
    'cache:read',
    'cache:write',
  ]);
});

// Each test starts with both replicas online (the first one pauses them).
beforeEach(async () => {
  await topology.waitForReplicas();
});

logTopologyOnFailure(
  () => topology,
  () => ` (gateway connections: ${JSON.stringify(gw.deps.redis.state())})`,
);

afterAll(async () => {
  for (const r of topology?.replicas ?? []) topology.resume(r.name);
  await gw?.close();
  await topology?.stop();
});

/** GETs `url` as the owner, again while it answers 503 (Redis away), until `deadline`. */
async function getThroughOutage(url: string, deadline: number) {
  for (;;) {
    const res = await gw.app.inject({ method: 'GET', url, headers: owner.auth });
    if (res.statusCode !== 503 || Date.now() > deadline) return res;
    await new Promise((r) => setTimeout(r, 100));
  }
}

function createSession(payload: Record<string, unknown>) {
  return gw.app.inject({ method: 'POST', url: '/v1/sessions', headers: owner.auth, payload });
}

describe('durable writes', () => {
  it('answer 503 BACKEND_NO_REPLICAS when no replica confirms in time; plain writes go on', async () => {
    for (const r of topology.replicas) topology.pause(r.name);
    try {
      const started = performance.now();
      const res = await createSession({ userId: 'u', durable: true });
      const p = expectProblem(res, 503, 'BACKEND_NO_REPLICAS');
      expect(res.headers['retry-after']).toBe('1');
      expect(p.detail).toMatch(/could be lost in a failover/);
      expect(performance.now() - started).toBeLessThan(1500);
      expect((await createSession({ userId: 'u' })).statusCode).toBe(201);
      const m = await gw.deps.metrics.registry.getSingleMetricAsString(
        'gateway_durable_writes_total',
      );
      expect(m).toMatch(/module="sessions",result="unconfirmed"} 1/);
    } finally {
      for (const r of topology.replicas) topology.resume(r.name);
    }
  });

  it('a master restarted before the sentinels call it down loads every acknowledged write from its AOF, scripts included', async () => {
    // Sessions, idempotency records, queues and rate limits are written by Lua scripts, which
    // the AOF records as MULTI/EXEC blocks. Redis 7 replays those as the default user and drops
    // them when that user may not run them (redis/redis#14541): deploy/redis/users.acl must give
    // the default user (off: nobody can log in as it) every permission.
    const masterPort = await topology.masterPort();
    const victim = [topology.master, ...topology.replicas].find((n) => n.port === masterPort)!;
    const session = await createSession({ userId: 'restart', data: { kept: true } });
    expect(session.statusCode, session.body).toBe(201);
    const sessionId = body<{ sessionId: string }>(session).sessionId;
    const begun = await gw.app.inject({
      method: 'POST',
      url: '/v1/idempotency/restart-1/_begin',
      headers: owner.auth,
      payload: {},
    });
    expect(begun.statusCode, begun.body).toBe(201);
    const completed = await gw.app.inject({
      method: 'PUT',
      url: '/v1/idempotency/restart-1',
      headers: owner.auth,
      payload: { token: body<{ token: string }>(begun).token, response: { status: 200 } },
    });
    expect(completed.statusCode, completed.body).toBe(200);
    const q = (url: string, payload: object) =>
      gw.app.inject({ method: 'POST', url, headers: owner.auth, payload });
    expect(
      (
        await gw.app.inject({
          method: 'PUT',
          url: '/v1/queues/restart/groups/g',
          headers: owner.auth,
          payload: {},
        })
      ).statusCode,
    ).toBe(201);
    const published = await q('/v1/queues/restart/messages', { data: { kept: true } });
    expect(published.statusCode, published.body).toBe(201);
    const policy = { algorithm: 'fixed_window', limit: 10, windowMs: 3_600_000 };
    const check = async () =>
      body<{ remaining: number }>(
        await q('/v1/ratelimit/check', { policy, key: 'restart', cost: 3 }),
      );
    expect((await check()).remaining).toBe(7);

    // appendfsync everysec: what was acknowledged over a second ago is on disk.
    await new Promise((r) => setTimeout(r, 1500));
    const keysBefore = ((await rawCommand(masterPort, 'KEYS', '*')) as string[]).sort();
    expect(keysBefore.length).toBeGreaterThan(5);
    await topology.restart(victim.name); // kill -9, then start it again at once
    // Started means answering INFO; KEYS answers LOADING until the AOF is read.
    let loaded = await rawCommand(masterPort, 'KEYS', '*');
    for (let i = 0; i < 50 && !Array.isArray(loaded); i++) {
      await new Promise((r) => setTimeout(r, 100));
      loaded = await rawCommand(masterPort, 'KEYS', '*');
    }
    if (!Array.isArray(loaded)) throw new Error(`KEYS after the restart: ${String(loaded)}`);
    expect(keysBefore.filter((k) => !(loaded as string[]).includes(k))).toEqual([]);
    // Still the master (no failover: the data came from the AOF, not from a promoted replica).
    expect(await topology.masterPort()).toBe(masterPort);

    const read = await getThroughOutage(`/v1/sessions/${sessionId}`, Date.now() + 20_000);
    expect(read.statusCode, read.body).toBe(200);
    expect(body<{ data: unknown }>(read).data).toEqual({ kept: true });
    const replay = await q('/v1/idempotency/restart-1/_begin', {});
    expect(body(replay)).toEqual({ state: 'completed', response: { status: 200 } });
    const received = await q('/v1/queues/restart/groups/g/_receive', { consumer: 'c' });
    expect(body<{ messages: { id: string }[] }>(received).messages.map((m) => m.id)).toEqual([
      body<{ id: string }>(published).id,
    ]);
    // The window's count survived too: 3 + 3 of 10 used.
    expect((await check()).remaining).toBe(4);
  });

  it('both replicas down: reads go on (from the master with READ_FROM_REPLICAS too), writes answer 503 BACKEND_NO_REPLICAS, and are served again when a replica returns (RELIABILITY.md scenario 9)', async () => {
    const reader = await buildTestApp({
      sentinels: topology.sentinels,
      masterName: topology.masterName,
      env: { READ_FROM_REPLICAS: 'true' },
    });
    try {
      const cache = (app: TestApp, method: 'GET' | 'PUT', key: string) =>
        app.app.inject({
          method,
          url: `/v1/cache/${key}`,
          headers: owner.auth,
          ...(method === 'PUT' ? { payload: { value: key } } : {}),
        });
      expect((await cache(gw, 'PUT', 'before')).statusCode).toBe(201);
      // The replica reader has the key before the replicas go.
      await expect.poll(async () => (await cache(reader, 'GET', 'before')).statusCode).toBe(200);
      await Promise.all(topology.replicas.map((r) => topology.kill(r.name, 'SIGKILL')));
      const answers: {
        t: number;
        op: string;
        key: string;
        ms: number;
        status: number;
        code?: string;
        retry?: unknown;
      }[] = [];
      const started = Date.now();
      for (let i = 0; Date.now() - started < 5000; i++) {
        for (const [name, app] of [
          ['gw', gw],
          ['reader', reader],
        ] as const) {
          let sent = Date.now();
          const get = await cache(app, 'GET', 'before');
          answers.push({
            t: Date.now() - started,
            op: `${name} get`,
            key: 'before',
            ms: Date.now() - sent,
            status: get.statusCode,
          });
          const key = `during-${name}-${i}`;
          sent = Date.now();
          const put = await cache(app, 'PUT', key);
          answers.push({
            t: Date.now() - started,
            op: `${name} put`,
            key,
            ms: Date.now() - sent,
            status: put.statusCode,
            code: put.statusCode === 503 ? body<{ code: string }>(put).code : undefined,
            retry: put.headers['retry-after'],
          });
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      const context = JSON.stringify(answers.filter((a) => a.status !== 200).slice(0, 10));
      // Reads: all found, on both gateways (the reader's replica connection is gone: the master).
      expect(
        answers.filter((a) => a.op.endsWith('get') && a.status !== 200),
        context,
      ).toEqual([]);
      // Writes: the master drops a replica whose connection closed at once, so with none left
      // min-replicas-to-write refuses writes from the first moment; a declared 503 with
      // Retry-After, the write not applied.
      const puts = answers.filter((a) => a.op.endsWith('put'));
      expect(
        puts.filter((a) => a.t > 1000 && !(a.status === 503 && a.code === 'BACKEND_NO_REPLICAS')),
        context,
      ).toEqual([]);
      expect(puts.filter((a) => a.status === 503).every((a) => a.retry !== undefined)).toBe(true);
      // Each gateway's first refused write is retried for its whole budget (a failover settling
      // looks the same at first); after that they are answered at once.
      const slow = puts.filter((a) => a.ms > 500);
      expect(slow.length, JSON.stringify(slow)).toBeLessThanOrEqual(2);
      expect(puts.length - slow.length, context).toBeGreaterThan(20);
      const fast = puts
        .filter((a) => a.ms <= 500)
        .map((a) => a.ms)
        .sort((a, b) => a - b);
      // A refused write was not applied.
      const refused = puts.find((a) => a.status === 503)!;
      expect((await cache(gw, 'GET', refused.key)).statusCode).toBe(404);

      await Promise.all(topology.replicas.map((r) => topology.restart(r.name)));
      const back = Date.now();
      let status = 0;
      while (status !== 201 && Date.now() - back < 10_000) {
        status = (await cache(gw, 'PUT', 'after')).statusCode;
        if (status !== 201) await new Promise((r) => setTimeout(r, 100));
      }
      expect(status).toBe(201);
      console.log(
        `replicas down: ${puts.length} writes, ${puts.filter((a) => a.status === 503).length} answered 503 BACKEND_NO_REPLICAS (${slow.length} after the request budget; the others in ${fast[Math.floor(fast.length / 2)]} ms at the median, ${fast.at(-1)} ms at most), reads all found; writes served again ${Date.now() - back} ms after the replicas were started again`,
      );
    } finally {
      await reader.close();
    }
  });

  it('acknowledged durable sessions, idempotency records and queue messages survive kill -9 of the master; consumers resume', async () => {
    // Replicas back in sync after the pause above.
    let ok = 0;
    for (let i = 0; i < 50 && ok === 0; i++) {
      ok = (await createSession({ userId: 'warm', durable: true })).statusCode === 201 ? 1 : 0;
      if (ok === 0) await new Promise((r) => setTimeout(r, 100));
    }
    const sessions: { id: string; n: number }[] = [];
    for (let n = 0; n < 20; n++) {
      const res = await createSession({ userId: `user-${n}`, data: { n }, durable: true });
      expect(res.statusCode, res.body).toBe(201);
      sessions.push({ id: body<{ sessionId: string }>(res).sessionId, n });
    }
    const begun = await gw.app.inject({
      method: 'POST',
      url: '/v1/idempotency/pay-1/_begin',
      headers: owner.auth,
      payload: { durable: true },
    });
    const token = body<{ token: string }>(begun).token;
    const done = await gw.app.inject({
      method: 'PUT',
      url: '/v1/idempotency/pay-1',
      headers: owner.auth,
      payload: { token, response: { status: 201, body: { id: 'pay-1' } }, durable: true },
    });
    expect(done.statusCode, done.body).toBe(200);

    // Queue ledger: every acknowledged durable publish, and a consumer that keeps receiving.
    const q = (method: 'POST' | 'PUT', url: string, payload: unknown) =>
      gw.app.inject({ method, url, headers: owner.auth, payload: payload as object });
    expect((await q('PUT', '/v1/queues/ledger/groups/g', {})).statusCode).toBe(201);
    expect((await q('PUT', '/v1/queues/ledger/groups/audit', {})).statusCode).toBe(201);
    const published = new Set<string>();
    for (let b = 0; b < 10; b++) {
      const res = await q('POST', '/v1/queues/ledger/messages/_batch', {
        messages: Array.from({ length: 20 }, (_, i) => ({ data: { n: b * 20 + i } })),
        durable: true,
      });
      expect(res.statusCode, res.body).toBe(201);
      for (const m of body<{ messages: { id: string }[] }>(res).messages) published.add(m.id);
    }
    const received = new Set<string>();
    let consuming = true;
    const consumer = (async () => {
      while (consuming) {
        const res = await q('POST', '/v1/queues/ledger/groups/g/_receive', {
          consumer: 'w',
          max: 7,
          waitMs: 500,
          visibilityTimeoutMs: 2000,
        });
        if (res.statusCode !== 200) {
          await new Promise((r) => setTimeout(r, 100));
          continue;
        }
        const ids = body<{ messages: { id: string }[] }>(res).messages.map((m) => m.id);
        if (ids.length === 0) continue;
        const acked = await q('POST', '/v1/queues/ledger/groups/g/_ack', { ids });
        if (acked.statusCode === 200) for (const id of ids) received.add(id);
      }
    })();
    await new Promise((r) => setTimeout(r, 200));

    const oldPort = topology.master.port;
    await topology.kill(topology.master.name, 'SIGKILL');
    await topology.waitForNewMaster(oldPort, 30_000);

    const deadline = Date.now() + 20_000;
    const read = (url: string) => getThroughOutage(url, deadline);
    for (const s of sessions) {
      const res = await read(`/v1/sessions/${s.id}`);
      expect(res.statusCode, res.body).toBe(200);
      expect(body<{ data: unknown }>(res).data).toEqual({ n: s.n });
    }
    const replay = await gw.app.inject({
      method: 'POST',
      url: '/v1/idempotency/pay-1/_begin',
      headers: owner.auth,
      payload: {},
    });
    expect(replay.statusCode, replay.body).toBe(200);
    // Every acknowledged publish is on the new master: a group that read nothing before sees all.
    const audited = new Set<string>();
    for (;;) {
      const res = await q('POST', '/v1/queues/ledger/groups/audit/_receive', {
        consumer: 'a',
        max: 100,
      });
      expect(res.statusCode, res.body).toBe(200);
      const ids = body<{ messages: { id: string }[] }>(res).messages.map((m) => m.id);
      if (ids.length === 0) break;
      for (const id of ids) audited.add(id);
    }
    expect([...published].filter((id) => !audited.has(id))).toEqual([]);
    // Publishes after the promotion reach the consumer that was polling through the failover.
    for (let i = 0; i < 5; i++) {
      const res = await q('POST', '/v1/queues/ledger/messages', { data: { after: i } });
      expect(res.statusCode, res.body).toBe(201);
      published.add(body<{ id: string }>(res).id);
    }
    const until = Date.now() + 20_000;
    while (Date.now() < until && [...published].some((id) => !received.has(id))) {
      await new Promise((r) => setTimeout(r, 100));
    }
    consuming = false;
    await consumer;
    expect([...published].filter((id) => !received.has(id))).toEqual([]);
    expect(body(replay)).toEqual({
      state: 'completed',
      response: { status: 201, body: { id: 'pay-1' } },
    });
    // Every connection followed the failover, not only those the requests above used: the
    // subscriber (revocations, policy changes), the tracker of the near cache, the durable pool.
    // ioredis can give one up on its own; client.ts starts it again.
    const allReady = () =>
      Object.values(gw.deps.redis.state()).every((v) =>
        v.split(',').every((s) => s === 'ready' || s === 'active'),
      );
    const settled = Date.now() + 10_000;
    while (!allReady() && Date.now() < settled) await new Promise((r) => setTimeout(r, 50));
    expect(allReady(), JSON.stringify(gw.deps.redis.state())).toBe(true);
  });
});

describe('durable writes through a manual failover (SENTINEL FAILOVER)', () => {
  // The kill -9 test above leaves the first master down: it comes back, as a replica.
  beforeAll(async () => {
    const p = topology.node(topology.master.name).proc;
    if (p === undefined || p.exitCode !== null || p.signalCode !== null) {
      await topology.restart(topology.master.name);
    }
  });

  it('with DURABLE_REPLICAS at the replica count, no acknowledged durable publish is lost', async () => {
    // The old master answers on for about a second after the sentinels promoted a replica, and
    // the other replica confirms its writes until it is moved to the new master: with
    // DURABLE_REPLICAS=1 that replica's confirmation acknowledged writes the new master never got
    // (7 368 of 111 957 durable publishes in one run, all acknowledged 0.2-1.1 s after the
    // SENTINEL FAILOVER; README "Failure behaviour"). A WAIT for both replicas fails once the
    // promoted one stops confirming.
    const all = await buildTestApp({
      sentinels: topology.sentinels,
      masterName: topology.masterName,
      env: {
        DURABLE_REPLICAS: '2',
        DURABLE_WAIT_TIMEOUT_MS: '1000',
        REQUEST_TIMEOUT_MS: '2000',
        REDIS_COMMAND_TIMEOUT_MS: '500',
      },
    });
    try {
      const a = await newTenant(all.deps, ['queue:publish', 'queue:admin']);
      const group = await all.app.inject({
        method: 'PUT',
        url: '/v1/queues/q/groups/g',
        headers: a.auth,
        payload: {},
      });
      expect(group.statusCode, group.body).toBeLessThan(300); // nothing is trimmed unread
      const acked: string[] = [];
      const statuses = new Map<number, number>();
      let stop = false;
      const publisher = async () => {
        while (!stop) {
          const res = await all.app.inject({
            method: 'POST',
            url: '/v1/queues/q/messages',
            headers: a.auth,
            payload: { data: 1, durable: true },
          });
          statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
          if (res.statusCode === 201) acked.push(body<{ id: string }>(res).id);
          else {
            expect(res.statusCode, res.body).toBe(503);
            await new Promise((r) => setTimeout(r, 20));
          }
        }
      };
      const publishers = Array.from({ length: 8 }, publisher);
      await new Promise((r) => setTimeout(r, 1000));
      const oldPort = await topology.masterPort();
      expect(
        await rawCommand(topology.sentinels[0]!.port, 'SENTINEL', 'FAILOVER', topology.masterName),
      ).toBe('OK');
      const newPort = await topology.waitForNewMaster(oldPort, 20_000);
      await new Promise((r) => setTimeout(r, 3000));
      stop = true;
      await Promise.all(publishers);
      expect(acked.length, JSON.stringify(Object.fromEntries(statuses))).toBeGreaterThan(1000);

      await topology.waitForReplicas();
      const stored = await all.deps.redis.onMaster((c) =>
        c.xrange(keys.queue(a.tenant, 'q'), '-', '+'),
      );
      expect(all.deps.redis.primary.stream?.remotePort).toBe(newPort);
      const ids = new Set(stored.map((e) => e[0]));
      expect(acked.filter((id) => !ids.has(id))).toEqual([]);
    } finally {
      await all.close();
    }
  });
});
