/**
 * Failover under load, against a real Sentinel topology of its own (1 master, 2 replicas,
 * 3 sentinels, down-after 2500 ms) and a gateway serving over real HTTP on loopback.
 *
 * What must hold in every scenario: every answer is a 2xx or a declared 503 problem with
 * Retry-After (never a 500, never a hang past the request deadline), and the gateway serves again
 * on the new master without a restart.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { compilePolicy } from '../../src/modules/ratelimit/policy.js';
import { keys } from '../../src/redis/keys.js';
import { Redis } from 'ioredis';
import {
  ADMIN_TOKEN,
  type TestApp,
  body,
  buildTestApp,
  newTenant,
  randomTenantId,
  scanAll,
  seriesBy,
} from '../harness/app.js';
import {
  type LedgerEntry,
  assertOnlyDeclaredAnswers,
  describeLedger,
  logTopologyOnFailure,
  startCacheLoad,
  timeline,
} from '../harness/ledger.js';
import {
  HARNESS_ADMIN,
  HOST,
  type Topology,
  rawCommand,
  rawCommandWithin,
  rawText,
  startTopology,
} from '../harness/topology.js';

const REQUEST_TIMEOUT_MS = 2000;
/**
 * Not shorter: a sentinel whose link to a just-promoted master has not answered a PING within
 * down-after marks it down too and fails over a second time, and the demoted first choice is only
 * turned into a replica seconds later, so the new master has no replica and refuses writes
 * (NOREPLICAS) meanwhile. With 1000 ms this happened on a loaded 2-core CI machine (the sentinel
 * logs of a failed run: +switch-master, +sdown of the new master 1 s later, +new-epoch 2,
 * +convert-to-slave 10 s after that). Sentinel's own default is 30 s.
 */
const DOWN_AFTER_MS = 2500;
/** REDIS_CONNECT_TIMEOUT_MS, also ioredis's sentinelCommandTimeout: how long a hung sentinel costs. */
const CONNECT_TIMEOUT_MS = 2000;
/** A request may take its deadline plus scheduling noise on a loaded 2-core machine. */
const LATENCY_BOUND_MS = REQUEST_TIMEOUT_MS + 1000;

let topology: Topology;
let gw: TestApp;
let port: number;
let key: string;

beforeAll(async () => {
  topology = await startTopology({ downAfterMs: DOWN_AFTER_MS });
  gw = await buildTestApp({
    sentinels: topology.sentinels,
    masterName: topology.masterName,
    env: {
      REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
      REDIS_COMMAND_TIMEOUT_MS: '500',
      REDIS_CONNECT_TIMEOUT_MS: String(CONNECT_TIMEOUT_MS),
      // Every sentinel asked for the master twice a second (10 s by default).
      REDIS_SENTINEL_PROBE_INTERVAL_MS: '500',
    },
  });
  await gw.app.listen({ port: 0, host: '127.0.0.1' });
  port = (gw.app.server.address() as { port: number }).port;
  key = (await newTenant(gw.deps, ['cache:read', 'cache:write', 'ratelimit:check'])).key;
});

// Each test starts from a whole topology: the master of the moment with both replicas online (the
// last test's demoted master may still be resyncing). Not part of what a test measures.
beforeEach(async () => {
  await topology.waitForReplicas();
});

logTopologyOnFailure(() => topology);

afterAll(async () => {
  await gw?.close();
  await topology?.stop();
});

/** The node currently acting as master. */
async function currentMaster(): Promise<string> {
  const p = await topology.masterPort();
  const node = [topology.master, ...topology.replicas].find((n) => n.port === p);
  if (!node) throw new Error(`no node on master port ${p}`);
  return node.name;
}

async function failoversSeen(): Promise<number> {
  const m = await gw.deps.metrics.redisFailovers.get();
  return m.values[0]?.value ?? 0;
}

/** gateway_redis_sentinel_up: sentinel `host:port` -> 1 or 0, as at the last probe. */
const sentinelsUp = () => seriesBy(gw.deps.metrics.sentinelUp, 'sentinel');

const sentinelAddress = (name: string) => `127.0.0.1:${topology.node(name).port}`;

/** gateway_redis_sentinel_quorum: sentinel `host:port` -> 1 or 0 (CKQUORUM), for those that said. */
const sentinelsQuorum = () => seriesBy(gw.deps.metrics.sentinelQuorum, 'sentinel');

async function redisErrors(kind: string): Promise<number> {
  const m = await gw.deps.metrics.redisErrors.get();
  return m.values.filter((v) => v.labels.kind === kind).reduce((n, v) => n + v.value, 0);
}

const ok = (e: LedgerEntry) => e.status === 200 || e.status === 201;

/**
 * When the gateway served writes again after an outage that began at `from`: the completion of the
 * first successful PUT sent after the first failure that followed `from`.
 */
function servedAgainAt(ledger: readonly LedgerEntry[], from: number): number {
  const firstFailure = ledger
    .filter((e) => !ok(e) && e.t + e.latencyMs >= from)
    .reduce((m, e) => Math.min(m, e.t), Infinity);
  const recovered = ledger
    .filter((e) => e.op === 'put' && ok(e) && e.t > firstFailure)
    .reduce((m, e) => Math.min(m, e.t + e.latencyMs), Infinity);
  return firstFailure === Infinity ? from : recovered;
}

/** Writes were served again within `boundMs` of an outage that began at `from` (a kill). */
function expectServedAgainWithin(
  ledger: readonly LedgerEntry[],
  from: number,
  boundMs: number,
): void {
  const served = servedAgainAt(ledger, from);
  expect(
    served - from,
    `served writes again ${served - from} ms after the kill at ${from} ms:\n${timeline(ledger)}`,
  ).toBeLessThanOrEqual(boundMs);
}

/** Every answer to a request sent after `from` is a success (and there were some). */
function expectSettledAfter(ledger: readonly LedgerEntry[], from: number): void {
  const after = ledger.filter((e) => e.t > from);
  expect(after.length, `requests after ${from} ms:\n${timeline(ledger)}`).toBeGreaterThan(10);
  expect(
    after.filter((e) => !ok(e)).length,
    `failures after ${from} ms:\n${timeline(ledger)}`,
  ).toBe(0);
}

interface RateLimitAnswer {
  t: number;
  latencyMs: number;
  status: number;
  allowed?: boolean;
  code?: string;
  retryAfter?: string | null;
}

/** Workers asking /v1/ratelimit/check for one identifier, `pauseMs` apart, until stopped. */
function startRateLimitLoad(policy: object, identifier: string, pauseMs: number, workers = 2) {
  const answers: RateLimitAnswer[] = [];
  let running = true;
  const loops = Array.from({ length: workers }, async () => {
    while (running) {
      const t = Date.now();
      try {
        const res = await fetch(`http://127.0.0.1:${port}/v1/ratelimit/check`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ policy, key: identifier }),
          signal: AbortSignal.timeout(10_000),
        });
        const b = (await res.json()) as { allowed?: boolean; code?: string };
        answers.push({
          t,
          latencyMs: Date.now() - t,
          status: res.status,
          allowed: b.allowed,
          code: b.code,
          retryAfter: res.headers.get('retry-after'),
        });
      } catch (err) {
        answers.push({ t, latencyMs: Date.now() - t, status: 0, code: String(err) });
      }
      await new Promise((r) => setTimeout(r, pauseMs));
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

/**
 * Waits until the sentinels have made `name` (a master that came back) a replica, and it has
 * synced: a manual failover that picks a replica still resyncing can abort
 * (`-failover-abort-slave-timeout`, seen once in CI).
 */
async function waitUntilReplica(name: string): Promise<void> {
  const port = topology.node(name).port;
  await waitUntil(async () => {
    const role = await rawCommand(port, 'ROLE');
    if (!Array.isArray(role) || role[0] !== 'slave') return false;
    return (await rawText(port, 'INFO', 'replication')).includes('master_link_status:up');
  }, 20_000);
}

/** Polls `check` until it holds; a check that throws (a node still starting) counts as not yet. */
async function waitUntil(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (err) {
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(
    `condition not met in time${lastError instanceof Error ? ` (last error: ${lastError.message})` : ''}`,
  );
}

describe('master crash (kill -9) under load', () => {
  it('serves again on the promoted replica within down-after + 5 s; nothing but declared 503s in between', async () => {
    const before = await failoversSeen();
    const oldPort = await topology.masterPort();
    const victim = await currentMaster();
    const load = startCacheLoad({ port, key, prefix: 'crash' });
    // Rate-limit checks through the same crash (RELIABILITY.md scenario 13): a limit that fails
    // closed, partly used before the kill and used up after it (a day's window: no reset mid-test).
    const limit = 500;
    const limits = startRateLimitLoad(
      { algorithm: 'fixed_window', limit, windowMs: 86_400_000, failureMode: 'closed' },
      `crash-${Date.now()}`,
      10,
    );
    // The same limit with leases: what a grant the crash takes with it costs.
    const leased = startRateLimitLoad(
      {
        algorithm: 'fixed_window',
        limit,
        windowMs: 86_400_000,
        failureMode: 'closed',
        leaseMs: 1000,
      },
      `crash-lease-${Date.now()}`,
      10,
    );
    await new Promise((r) => setTimeout(r, 1500));
    const killedAt = load.now();
    const killedAtMs = Date.now();
    await topology.kill(victim, 'SIGKILL');
    const newPort = await topology.waitForNewMaster(oldPort, 20_000);
    expect(newPort).not.toBe(oldPort);
    // Keep the load on for a while after the promotion to see the recovery.
    const promotedAt = load.now();
    await new Promise((r) => setTimeout(r, 7000));
    await Promise.all([load.stop(), limits.stop(), leased.stop()]);

    assertOnlyDeclaredAnswers(load.ledger, LATENCY_BOUND_MS);
    expectServedAgainWithin(load.ledger, killedAt, DOWN_AFTER_MS + 5000);
    // The rate limit: decisions (200) or the closed policy's 503 with Retry-After, in time; the
    // limit used up in the end, and never more admitted than it allows, but for counts the new
    // master may not have received (admissions answered in the last moments before the kill).
    // With leases, a grant the new master never received lets its units be given out twice: from
    // the lease (until it ends or the replica reaches the new master) and again by the new master.
    // A lease holds at most 1/16 of the limit, and this gateway holds one per identifier. (And
    // units can go unused: 6-91 of the 500 were, in 6 runs, while a pub/sub reconnect dropped
    // leases; with it ending them, 31-33 in 3 of 18 runs: in the two traced, a grant whose answer
    // came after its check's 50 ms. With late grants kept, 0-2 in 12 runs; the exact limit 0-3.)
    const rateLimitThroughCrash = (rl: RateLimitAnswer[], lostGrant: number, name: string) => {
      expect(
        rl
          .filter(
            (a) =>
              !(
                a.status === 200 ||
                (a.status === 503 && a.retryAfter && /^BACKEND_/.test(a.code ?? ''))
              ) || a.latencyMs > LATENCY_BOUND_MS,
          )
          .slice(0, 5),
      ).toEqual([]);
      const admitted = rl.filter((a) => a.status === 200 && a.allowed === true);
      const unreplicated = admitted.filter(
        (a) => a.t + a.latencyMs > killedAtMs - 250 && a.t + a.latencyMs <= killedAtMs,
      ).length;
      const admittedBefore = admitted.filter((a) => a.t + a.latencyMs <= killedAtMs).length;
      const inOutage = admitted.filter(
        (a) => a.t > killedAtMs && a.t + a.latencyMs < killedAtMs + DOWN_AFTER_MS,
      ).length;
      const context = `${admitted.length} admitted of ${rl.length} checks (limit ${limit}): ${admittedBefore} before the kill, ${unreplicated} of them in its last 250 ms; ${inOutage} admitted while the master was down`;
      expect(admittedBefore, context).toBeLessThan(limit);
      expect(admitted.length, context).toBeLessThanOrEqual(limit + unreplicated + lostGrant);
      expect(rl.at(-1)?.allowed, context).toBe(false);
      console.log(`rate limit through the crash, ${name}: ${context}`);
    };
    rateLimitThroughCrash(limits.answers, 0, 'exact');
    rateLimitThroughCrash(leased.answers, Math.floor(limit / 16), 'leases');
    // Right after a promotion the new master may refuse writes (NOREPLICAS) until the other
    // replica re-attaches; by promotion + 5 s everything must succeed.
    expectSettledAfter(load.ledger, promotedAt + 5000);
    const beforeKill = load.ledger.filter((e) => e.t + e.latencyMs < killedAt);
    expect(
      beforeKill.every((e) => e.status < 300),
      timeline(beforeKill),
    ).toBe(true);
    expect(await failoversSeen()).toBeGreaterThan(before);

    // The crashed master comes back (from its AOF) and is demoted to a replica of the new master.
    await topology.restart(victim);
    await waitUntilReplica(victim);
  });
});

describe('master hangs (SIGSTOP) under load', () => {
  it('answers within the deadline, follows the failover, and never returns to the old master after SIGCONT', async () => {
    const oldPort = await topology.masterPort();
    const victim = await currentMaster();
    const load = startCacheLoad({ port, key, prefix: 'hang' });
    await new Promise((r) => setTimeout(r, 1000));
    const pausedAt = load.now();
    topology.pause(victim);
    try {
      await topology.waitForNewMaster(oldPort, 20_000);
    } finally {
      topology.resume(victim);
    }
    const newMasterAt = load.now();
    const resumedAt = load.now();
    // The old master wakes up, is told by the sentinels to follow the new master.
    await new Promise((r) => setTimeout(r, 7000));
    await load.stop();

    assertOnlyDeclaredAnswers(load.ledger, LATENCY_BOUND_MS);
    // RELIABILITY.md: recovery within the failover time + 3 s.
    const served = servedAgainAt(load.ledger, pausedAt);
    expect(
      served - newMasterAt,
      `served writes again ${served - newMasterAt} ms after the failover:\n${timeline(load.ledger)}`,
    ).toBeLessThanOrEqual(3000);
    expectSettledAfter(load.ledger, resumedAt + 5000);
    // Writes acknowledged after the failover live on the new master, not on the old one.
    const newPort = await topology.masterPort();
    const lastPut = [...load.ledger].reverse().find((e) => e.op === 'put' && e.status < 300);
    expect(lastPut).toBeDefined();
    const tenant = (await gw.deps.admin.verifyApiKey(key)) as { tenant: string };
    expect(await rawCommand(newPort, 'EXISTS', `${tenant.tenant}:cache:${lastPut!.key}`)).toBe(1);
    // The sentinels demote the old master once it answers again.
    await waitUntilReplica(victim);
  });
});

describe('manual failover (SENTINEL FAILOVER), connections stay up', () => {
  it('no READONLY ever reaches a client and writes keep succeeding on the new master', async () => {
    const readonlyBefore = await redisErrors('readonly');
    const oldPort = await topology.masterPort();
    // A lease the old master granted: gone once the new master answers (a grant its replica had
    // not received when a master crashed would otherwise be spent with nothing counting it).
    // Either the failover hook or the resubscribe after it drops it; the test fails without both.
    const leased = compilePolicy('failover-lease', 'file', {
      algorithm: 'token_bucket',
      capacity: 10_000,
      refillPerSecond: 1,
      leaseMs: 10_000,
      timeoutMs: 2000,
    });
    const { tenant } = await newTenant(gw.deps, ['ratelimit:check']);
    const check = () =>
      gw.deps.ratelimit.check(tenant, { policy: leased, identifier: 'x', cost: 1 });
    for (let i = 0; i < 4; i++) await check(); // leases of 1, then 2
    const stateKey = keys.ratelimit(tenant, leased.stateName, 'tb', 'x');
    expect(gw.deps.ratelimit.leasedUnits(stateKey)).toBeGreaterThan(0);
    const load = startCacheLoad({ port, key, prefix: 'manual' });
    await new Promise((r) => setTimeout(r, 1000));
    const reply = await rawCommandWithin(
      5000,
      topology.sentinels[0]!.port,
      'SENTINEL',
      'FAILOVER',
      topology.masterName,
    );
    expect(reply).toBe('OK');
    const newPort = await topology.waitForNewMaster(oldPort, 20_000);
    const switchedAt = load.now();
    await new Promise((r) => setTimeout(r, 7000));
    await load.stop();

    assertOnlyDeclaredAnswers(load.ledger, LATENCY_BOUND_MS);
    expect(newPort).not.toBe(oldPort);
    expectSettledAfter(load.ledger, switchedAt + 5000);
    // A write that meets the demoted master (READONLY) was not executed: the gateway reconnects and
    // sends it again, so no request fails with it.
    expect((await redisErrors('readonly')) - readonlyBefore).toBe(0);
    expect(gw.deps.ratelimit.leasedUnits(stateKey)).toBe(0);
    expect((await check()).allowed).toBe(true);
  });
});

describe('tenant deletion across a failover (SENTINEL FAILOVER)', () => {
  const operator = { authorization: `Bearer ${ADMIN_TOKEN}` };
  const deleteTenant = (tenant: string, query = '') =>
    gw.app.inject({
      method: 'DELETE',
      url: `/v1/admin/tenants/${tenant}${query}`,
      headers: operator,
    });
  const createTenant = (id: string) =>
    gw.app.inject({ method: 'POST', url: '/v1/admin/tenants', headers: operator, payload: { id } });

  it('a deletion that runs through the failover is called done only when nothing of the tenant is left on any node', async () => {
    // The old master goes on answering for seconds after a replica was promoted in its place
    // (until the sentinels turn it into a replica); what it erases then never reaches the new
    // master. Before the fix, the deletion finished there, with 200 `deleted`, and the new master
    // still held the tenant's keys.
    const { tenant } = await newTenant(gw.deps, ['cache:write']);
    const filler = randomTenantId('filler');
    const admin = (p: number) =>
      new Redis({ host: HOST, port: p, ...HARNESS_ADMIN, maxRetriesPerRequest: 1 });
    const oldPort = await topology.masterPort();
    const master = admin(oldPort);
    const pipeline = master.pipeline();
    for (let i = 0; i < 3000; i++) pipeline.set(keys.cache(tenant, `k${i}`), 'x');
    for (let i = 0; i < 3000; i++) pipeline.set(keys.cache(filler, `f${i}`), 'x');
    await pipeline.exec();
    const stored = (await scanAll(master, `${tenant}:*`)).length;
    expect(stored).toBeGreaterThanOrEqual(3000);
    await master.wait(2, 5000);
    master.disconnect();

    type Answer = { state: string; erased: number; cursor: string | null };
    const del = (cursor: string | null) =>
      deleteTenant(tenant, `?limit=300${cursor === null ? '' : `&cursor=${cursor}`}`);
    const first = await del(null);
    expect(first.statusCode, first.body).toBe(202);
    let answer = body<Answer>(first);
    let erased = answer.erased;
    expect(
      await rawCommandWithin(
        5000,
        topology.sentinels[0]!.port,
        'SENTINEL',
        'FAILOVER',
        topology.masterName,
      ),
    ).toBe('OK');
    // The sentinels name the new master; the gateway may still be on the old one for a while.
    const newPort = await topology.waitForNewMaster(oldPort, 20_000);
    const statuses: number[] = [];
    const until = Date.now() + 40_000;
    while (answer.cursor !== null && Date.now() < until) {
      const res = await del(answer.cursor);
      statuses.push(res.statusCode);
      if (res.statusCode === 503) {
        // Declared: the replicas did not confirm an erasure, or the gateway is finding the new
        // master. Called again with the same cursor.
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      expect([200, 202], res.body).toContain(res.statusCode);
      answer = body<Answer>(res);
      erased += answer.erased;
      // A pass started over (the master not confirmed yet): as an operator's loop would, on.
      if (answer.cursor?.startsWith('0.0.') === true) await new Promise((r) => setTimeout(r, 50));
    }
    expect(answer.state, statuses.join(' ')).toBe('deleted');
    expect(erased).toBeGreaterThanOrEqual(stored);

    // Once the old master is a replica of the new one: nothing of the tenant on any node, and
    // the other tenant's keys whole.
    await topology.waitForReplicas();
    const all = [topology.master, ...topology.replicas];
    const nodes = all.map((n) => admin(n.port));
    try {
      const onNew = nodes[all.findIndex((n) => n.port === newPort)]!;
      await onNew.wait(2, 5000);
      for (const [i, r] of nodes.entries()) {
        expect(await scanAll(r, `${tenant}:*`), all[i]!.name).toEqual([]);
        expect((await scanAll(r, `${filler}:*`)).length, all[i]!.name).toBe(3000);
      }
      const left = await scanAll(onNew, `${filler}:*`);
      for (let i = 0; i < left.length; i += 1000) await onNew.unlink(...left.slice(i, i + 1000));
    } finally {
      for (const r of nodes) r.disconnect();
    }
    // And its id is free again.
    const again = await createTenant(tenant);
    expect(again.statusCode, again.body).toBe(201);
  });

  it('is not called done while too few sentinels answer to confirm the master; it is once they do', async () => {
    const { tenant } = await newTenant(gw.deps, ['cache:write']);
    await gw.deps.redis.onMaster((c) => c.set(keys.cache(tenant, 'k'), 'x'));
    // Killed, not paused: a sentinel resumed after more than 2 s stopped sees its clock jump and
    // goes into TILT mode for 30 s, where it takes no part in a failover (the tests after this
    // one would wait for it).
    const down = topology.sentinelNodes.slice(0, 2).map((n) => n.name);
    await Promise.all(down.map((n) => topology.kill(n, 'SIGKILL')));
    try {
      const res = await deleteTenant(tenant);
      expect(res.statusCode, res.body).toBe(503);
      expect(body(res)).toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
      expect(body<{ detail: string }>(res).detail).toMatch(/Only 1 of 3 sentinels answered/);
      // The data is erased, but the id stays taken: the tenant is not deleted yet.
      expect(await gw.deps.redis.onMaster((c) => c.exists(keys.cache(tenant, 'k')))).toBe(0);
      const create = await createTenant(tenant);
      expect(create.statusCode, create.body).toBe(409);
    } finally {
      await Promise.all(down.map((n) => topology.restart(n)));
    }
    const done = await deleteTenant(tenant);
    expect(done.statusCode, done.body).toBe(200);
    expect(body(done)).toMatchObject({ state: 'deleted' });
  });
});

describe('every data node unreachable (all paused) under load', () => {
  it('fails fast with 503 within the deadline, keeps /livez up, and recovers when they return', async () => {
    const nodes = [topology.master, ...topology.replicas].map((n) => n.name);
    const load = startCacheLoad({ port, key, prefix: 'outage' });
    await new Promise((r) => setTimeout(r, 800));
    const downAt = load.now();
    for (const n of nodes) topology.pause(n);
    let livez = 0;
    try {
      await new Promise((r) => setTimeout(r, 4000));
      livez = (await gw.app.inject({ method: 'GET', url: '/livez' })).statusCode;
    } finally {
      for (const n of nodes) topology.resume(n);
    }
    const upAt = load.now();
    expect(livez).toBe(200);
    await waitUntil(
      async () => (await gw.app.inject({ method: 'GET', url: '/readyz' })).statusCode === 200,
      5000,
    );
    // The pause outlasts down-after, so the sentinels may start a failover while every node is
    // stopped; the promotion then completes after SIGCONT, and Sentinel re-points the other
    // replica and demotes the old master only seconds later. Until then the new master has no
    // replica and refuses writes (NOREPLICAS, a declared 503): Redis converging, not the gateway
    // (seen in a fresh-clone .ci/run: the failover began 2.5 s into the 4 s pause, and 16 answers
    // 4-6 s after /readyz were NOREPLICAS). The all-2xx tail is measured once the master has a
    // replica again and no failover is in progress (seen too: the wait returning on the old
    // master, which still had its replica, just before the sentinels switched to the new one).
    await topology.waitForReplicas(1, 30_000);
    await new Promise((r) => setTimeout(r, 3500));
    await load.stop();

    assertOnlyDeclaredAnswers(load.ledger, LATENCY_BOUND_MS);
    const during = load.ledger.filter(
      (e) => e.t > downAt + REQUEST_TIMEOUT_MS && e.t + e.latencyMs < upAt,
    );
    expect(during.length, 'requests kept being answered during the outage').toBeGreaterThan(20);
    expect(during.every((e) => e.status === 503)).toBe(true);
    // Once the outage outlasted one request budget, the breaker answers at once.
    const fast = during.filter((e) => e.latencyMs < 100).length;
    expect(
      fast / during.length,
      'most requests fail fast once the outage is known',
    ).toBeGreaterThan(0.8);
    const tail = load.ledger.filter((e) => e.t > load.now() - 2500);
    expect(tail.length).toBeGreaterThan(10);
    expect(
      tail.every((e) => e.status === 200 || e.status === 201),
      describeLedger(tail),
    ).toBe(true);
  });
});

describe('the first sentinel hung (SIGSTOP) when the master crashes', () => {
  it('finds the new master through the other sentinels and serves again in time', async () => {
    const oldPort = await topology.masterPort();
    const victim = await currentMaster();
    // The gateway asks the sentinels in the order it was given them: the hung one first.
    const hung = topology.sentinelNodes[0]!.name;
    const load = startCacheLoad({ port, key, prefix: 'sentinel-hung' });
    await new Promise((r) => setTimeout(r, 1000));
    topology.pause(hung);
    let killedAt = 0;
    let promotedAt = 0;
    try {
      killedAt = load.now();
      await topology.kill(victim, 'SIGKILL');
      // Two sentinels of three still make a quorum and elect a leader.
      await topology.waitForNewMaster(oldPort, 30_000);
      promotedAt = load.now();
      await new Promise((r) => setTimeout(r, 7000));
      // The probe tells the hung sentinel apart (no reply within REDIS_CONNECT_TIMEOUT_MS), and
      // the other two agree on the new master.
      expect(await sentinelsUp()).toEqual(
        Object.fromEntries(
          topology.sentinelNodes.map((n) => [sentinelAddress(n.name), n.name === hung ? 0 : 1]),
        ),
      );
      expect((await gw.deps.metrics.sentinelMasters.get()).values[0]?.value).toBe(1);
    } finally {
      topology.resume(hung);
    }
    await load.stop();

    assertOnlyDeclaredAnswers(load.ledger, LATENCY_BOUND_MS);
    // A lookup that meets the hung sentinel gives up after REDIS_CONNECT_TIMEOUT_MS (ioredis's
    // sentinelCommandTimeout) and asks the next one: at most that much later than with all up.
    expectServedAgainWithin(load.ledger, killedAt, DOWN_AFTER_MS + CONNECT_TIMEOUT_MS + 5000);
    expectSettledAfter(load.ledger, promotedAt + 5000);

    await topology.restart(victim);
    await waitUntilReplica(victim);
  });
});

describe('every sentinel down (killed), the master up (RELIABILITY.md scenario 5)', () => {
  // Last: killed and started again, the sentinels need a moment to find each other. Not paused: a
  // sentinel whose own timer stalled for over 2 s enters TILT and does nothing for 30 s.
  it('keeps serving on the connections it has and says the sentinels are gone; a master restart meanwhile gets declared 503s until they return', async () => {
    const victim = await currentMaster();
    const sentinels = topology.sentinelNodes.map((s) => s.name);
    const everySentinel = (v: number) =>
      Object.fromEntries(sentinels.map((s) => [sentinelAddress(s), v]));
    expect(await sentinelsUp()).toEqual(everySentinel(1));
    const load = startCacheLoad({ port, key, prefix: 'sentinels-down' });
    await new Promise((r) => setTimeout(r, 800));
    const from = load.now();
    // Two go first: the one left marks them down after down-after and says that a failover can no
    // longer be authorized (SENTINEL CKQUORUM: quorum 2, 1 usable). The one left is not the first:
    // the test before paused that one, and a sentinel back from a pause is in TILT mode for 30 s,
    // in which it marks nothing down.
    const last = sentinels.at(-1)!;
    const first = sentinels.slice(0, -1);
    await Promise.all(first.map((s) => topology.kill(s, 'SIGKILL')));
    await waitUntil(
      async () => (await sentinelsQuorum())[sentinelAddress(last)] === 0,
      // down-after, up to a second to its next PING, a probe round; room for a loaded machine.
      DOWN_AFTER_MS + 5000,
    );
    expect(await sentinelsQuorum()).toEqual({ [sentinelAddress(last)]: 0 });
    await topology.kill(last, 'SIGKILL');
    // The sentinels are asked only on a reconnect; the probe tells at once that none would answer.
    await waitUntil(async () => Object.values(await sentinelsUp()).every((v) => v === 0), 3000);
    expect((await gw.deps.metrics.sentinelMasters.get()).values[0]?.value).toBe(0);
    await new Promise((r) => setTimeout(r, 1000));
    const until = load.now();

    // The master restarts while no sentinel can name it: the gateway cannot reconnect.
    await topology.restart(victim);
    await new Promise((r) => setTimeout(r, 3000));
    const sentinelsBackAt = load.now();
    await Promise.all(sentinels.map((s) => topology.restart(s)));
    await waitUntil(async () => Object.values(await sentinelsUp()).every((v) => v === 1), 10_000);
    await new Promise((r) => setTimeout(r, 5000));
    await load.stop();

    const during = load.ledger.filter((e) => e.t >= from && e.t + e.latencyMs <= until);
    expect(during.length, timeline(load.ledger)).toBeGreaterThan(20);
    expect(
      during.filter((e) => !ok(e)).map((e) => `${e.op} ${e.status} ${e.body}`),
      timeline(load.ledger),
    ).toEqual([]);
    assertOnlyDeclaredAnswers(load.ledger, LATENCY_BOUND_MS);
    // Between the restart and the sentinels' return: 503s, the outage known, answered at once.
    const stranded = load.ledger.filter(
      (e) => e.t > until + REQUEST_TIMEOUT_MS + 500 && e.t + e.latencyMs < sentinelsBackAt,
    );
    expect(stranded.length, timeline(load.ledger)).toBeGreaterThan(5);
    expect(
      stranded.filter((e) => e.status !== 503 || !/BACKEND_UNAVAILABLE/.test(e.body)),
      timeline(load.ledger),
    ).toEqual([]);
    expect(
      stranded.filter((e) => e.latencyMs < 100).length / stranded.length,
      'most answered at once',
    ).toBeGreaterThan(0.8);
    // Back within a reconnect attempt or two of the sentinels' return.
    expectServedAgainWithin(load.ledger, sentinelsBackAt, 5000);
    console.log(
      `sentinels down: ${during.length} answers, all 2xx, before the master restart; then ${stranded.length} 503s; served again ${servedAgainAt(load.ledger, sentinelsBackAt) - sentinelsBackAt} ms after the sentinels were started again`,
    );
    expectSettledAfter(load.ledger, sentinelsBackAt + 5000);
    expect(await topology.masterPort()).toBeGreaterThan(0);
  });
});
