/**
 * Queues against real Redis: publish (single, batch, dedup, delay), groups, receive with
 * visibility timeouts and long polling, ack / nack / extend, dead-letter and redrive, trimming
 * that never drops an unacknowledged message, deleting and listing queues, at-least-once
 * delivery of 10 000 messages to three consumers one of which crashes, isolation, scopes and
 * hostile input.
 */
import { describe, expect, it } from 'vitest';
import { keys } from '../../../src/redis/keys.js';
import {
  type TestTenant,
  addKey,
  adminRedis,
  body,
  expectProblem,
  newTenant,
  useTestApp,
} from '../../harness/app.js';
import { runCommonRouteTests } from '../../harness/common-route-tests.js';

const t = useTestApp({
  env: {
    QUEUE_MAX_RECEIVE_COUNT: '3',
    QUEUE_MAX_LENGTH: '100',
    QUEUE_MAX_MESSAGE_BYTES: '1000',
    QUEUE_BLOCKING_CONNECTIONS: '4',
    QUEUE_MAX_DELAY_SECONDS: '60',
  },
});
const ALL = ['queue:publish', 'queue:consume', 'queue:admin'];

type Msg = { id: string; data: unknown; receiveCount: number; enqueuedAt: string };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let n = 0;
const qname = () => `q-${Date.now().toString(36)}-${++n}`;

function call(
  o: TestTenant,
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  url: string,
  payload?: unknown,
) {
  return t.app.inject({
    method,
    url,
    headers: o.auth,
    ...(payload === undefined ? {} : { payload: payload as object }),
  });
}

async function publish(o: TestTenant, q: string, payload: Record<string, unknown>) {
  const res = await call(o, 'POST', `/v1/queues/${q}/messages`, payload);
  expect(res.statusCode, res.body).toBe(201);
  return body<{ id: string; duplicate?: boolean }>(res);
}

async function publishBatch(o: TestTenant, q: string, messages: Record<string, unknown>[]) {
  const res = await call(o, 'POST', `/v1/queues/${q}/messages/_batch`, { messages });
  expect(res.statusCode, res.body).toBe(201);
  return body<{ messages: { id: string }[] }>(res).messages.map((m) => m.id);
}

async function group(o: TestTenant, q: string, g = 'g', startFrom = 'earliest') {
  const res = await call(o, 'PUT', `/v1/queues/${q}/groups/${g}`, { startFrom });
  expect([200, 201]).toContain(res.statusCode);
}

async function receive(o: TestTenant, q: string, payload: Record<string, unknown>, g = 'g') {
  const res = await call(o, 'POST', `/v1/queues/${q}/groups/${g}/_receive`, {
    consumer: 'c1',
    ...payload,
  });
  expect(res.statusCode, res.body).toBe(200);
  return { messages: body<{ messages: Msg[] }>(res).messages, res };
}

async function ack(o: TestTenant, q: string, ids: string[], g = 'g') {
  const res = await call(o, 'POST', `/v1/queues/${q}/groups/${g}/_ack`, { ids });
  expect(res.statusCode, res.body).toBe(200);
  return body<{ acked: number }>(res).acked;
}

describe('publish, receive, ack', () => {
  it('delivers a message once to a group with its data, receive count and enqueue time', async () => {
    const a = await newTenant(t.deps, ALL);
    const q = qname();
    await group(a, q);
    const before = Date.now();
    const { id } = await publish(a, q, { data: { order: 42, tags: ['x', null], s: 'é' } });
    expect(id).toMatch(/^\d+-\d+$/);
    const { messages } = await receive(a, q, { max: 10 });
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatchObject({
      id,
      data: { order: 42, tags: ['x', null], s: 'é' },
      receiveCount: 1,
    });
    expect(Date.parse(messages[0]?.enqueuedAt ?? '')).toBeGreaterThanOrEqual(before - 5);
    expect((await receive(a, q, {})).messages).toEqual([]);
    expect(await ack(a, q, [id])).toBe(1);
    expect(await ack(a, q, [id])).toBe(0);
    // Two groups each get every message.
    await group(a, q, 'g2');
    expect((await receive(a, q, {}, 'g2')).messages.map((m) => m.id)).toEqual([id]);
  });

  it('batch publishes in order; max bounds a receive', async () => {
    const a = await newTenant(t.deps, ALL);
    const q = qname();
    await group(a, q);
    const ids = await publishBatch(
      a,
      q,
      Array.from({ length: 5 }, (_, i) => ({ data: i })),
    );
    expect(ids).toHaveLength(5);
    const first = await receive(a, q, { max: 3 });
    expect(first.messages.map((m) => m.data)).toEqual([0, 1, 2]);
    const rest = await receive(a, q, { max: 100 });
    expect(rest.messages.map((m) => m.id)).toEqual(ids.slice(3));
  });

  it('dedupId: a repeat within the window adds nothing and answers the first id', async () => {
    const a = await newTenant(t.deps, ALL);
    const q = qname();
    await group(a, q);
    const first = await publish(a, q, { data: 1, dedupId: 'order-1' });
    const again = await publish(a, q, { data: 2, dedupId: 'order-1' });
    expect(again).toEqual({ id: first.id, duplicate: true });
    const ids = await publishBatch(a, q, [
      { data: 3, dedupId: 'order-2' },
      { data: 4, dedupId: 'order-2' },
      { data: 5, dedupId: 'order-1' },
    ]);
    expect(ids[1]).toBe(ids[0]);
    expect(ids[2]).toBe(first.id);
    expect((await receive(a, q, { max: 10 })).messages.map((m) => m.data)).toEqual([1, 3]);
  });

  it('dedupId: ids seen before a purge or a delete no longer count; settings changes and other queues keep them', async () => {
    const a = await newTenant(t.deps, ALL);
    const q = qname();
    const other = `${q}-other`;
    await group(a, q);
    const first = await publish(a, q, { data: 1, dedupId: 'order-1' });
    const kept = await publish(a, other, { data: 'o', dedupId: 'order-1' });
    // Changing the queue's settings (and resetting them) does not end the window.
    expect((await call(a, 'PUT', `/v1/queues/${q}`, { maxReceiveCount: 5 })).statusCode).toBe(200);
    expect((await call(a, 'PUT', `/v1/queues/${q}`, { maxReceiveCount: null })).statusCode).toBe(
      200,
    );
    expect(await publish(a, q, { data: 1, dedupId: 'order-1' })).toEqual({
      id: first.id,
      duplicate: true,
    });

    expect((await call(a, 'POST', `/v1/queues/${q}/_purge`)).statusCode).toBe(200);
    const republished = await publish(a, q, { data: 1, dedupId: 'order-1' });
    expect(republished.duplicate).toBeUndefined();
    expect(republished.id).not.toBe(first.id);
    // The window goes on from the new publish, and the purge of q did not touch `other`.
    expect(await publish(a, q, { data: 1, dedupId: 'order-1' })).toEqual({
      id: republished.id,
      duplicate: true,
    });
    expect(await publish(a, other, { data: 'o', dedupId: 'order-1' })).toEqual({
      id: kept.id,
      duplicate: true,
    });
    expect((await receive(a, q, { max: 10 })).messages.map((m) => m.id)).toEqual([republished.id]);

    // A delayed message's dedup id too.
    const later = await publish(a, q, { data: 2, dedupId: 'order-2', delayMs: 60_000 });
    expect((await call(a, 'DELETE', `/v1/queues/${q}`)).statusCode).toBe(200);
    const fresh = await publishBatch(a, q, [
      { data: 1, dedupId: 'order-1' },
      { data: 2, dedupId: 'order-2' },
      { data: 3, dedupId: 'order-1' },
    ]);
    expect(fresh[0]).not.toBe(republished.id);
    expect(fresh[1]).not.toBe(later.id);
    expect(fresh[2]).toBe(fresh[0]);
    await group(a, q);
    expect((await receive(a, q, { max: 10 })).messages.map((m) => m.data)).toEqual([1, 2]);
  });

  it('dedupId: an id remembered before dedup epochs existed (a bare id) still counts', async () => {
    const a = await newTenant(t.deps, ALL);
    const q = qname();
    const redis = await adminRedis(t);
    try {
      await redis.set(keys.queueDedup(a.tenant, q, 'old'), '1700000000000-0', 'PX', 60_000);
    } finally {
      redis.disconnect();
    }
    expect(await publish(a, q, { data: 1, dedupId: 'old' })).toEqual({
      id: '1700000000000-0',
      duplicate: true,
    });
    expect((await publish(a, q, { data: 1, dedupId: 'new' })).duplicate).toBeUndefined();
  });

  it('delayMs: receivable only after the delay; a long poll wakes when it is due', async () => {
    const a = await newTenant(t.deps, ALL);
    const q = qname();
    await group(a, q);
    const { id } = await publish(a, q, { data: 'later', delayMs: 400 });
    expect(id).toMatch(/^scheduled:/);
    expect((await receive(a, q, {})).messages).toEqual([]);
    const started = Date.now();
    const { messages, res } = await receive(a, q, { waitMs: 3000 });
    expect(messages.map((m) => m.data)).toEqual(['later']);
    expect(Date.now() - started).toBeLessThan(1500);
    expect(res.headers['x-queue-long-poll']).toBe('woken');
  });
});

describe('visibility, nack, extend, dead letters', () => {
  it('redelivers after the visibility timeout; extend keeps it hidden; nack gives it back', async () => {
    const a = await newTenant(t.deps, ALL);
    const q = qname();
    await group(a, q);
    const { id } = await publish(a, q, { data: 'job' });
    expect((await receive(a, q, { visibilityTimeoutMs: 300 })).messages).toHaveLength(1);
    expect((await receive(a, q, { consumer: 'c2' })).messages).toEqual([]);
    await sleep(350);
    const again = await receive(a, q, { consumer: 'c2', visibilityTimeoutMs: 300 });
    expect(again.messages).toMatchObject([{ id, receiveCount: 2 }]);
    // c1 no longer holds it: its extend changes nothing; c2's does.
    const ext = (consumer: string) =>
      call(a, 'POST', `/v1/queues/${q}/groups/g/_extend`, {
        consumer,
        ids: [id],
        visibilityTimeoutMs: 1000,
      });
    expect(body(await ext('c1'))).toEqual({ changed: 0 });
    expect(body(await ext('c2'))).toEqual({ changed: 1 });
    await sleep(400);
    expect((await receive(a, q, { consumer: 'c3' })).messages).toEqual([]);
    const nack = await call(a, 'POST', `/v1/queues/${q}/groups/g/_nack`, {
      consumer: 'c2',
      ids: [id],
    });
    expect(body(nack)).toEqual({ changed: 1 });
    expect((await receive(a, q, { consumer: 'c3' })).messages).toMatchObject([
      { id, receiveCount: 3 },
    ]);
  });

  it('after QUEUE_MAX_RECEIVE_COUNT receives a message goes to the DLQ, never out again; redrive brings it back', async () => {
    const a = await newTenant(t.deps, ALL);
    const q = qname();
    await group(a, q);
    const { id } = await publish(a, q, { data: { poison: true } });
    for (let i = 1; i <= 3; i++) {
      const r = await receive(a, q, { visibilityTimeoutMs: 50 });
      expect(r.messages).toMatchObject([{ id, receiveCount: i }]);
      await sleep(70);
    }
    expect((await receive(a, q, {})).messages).toEqual([]);
    expect((await receive(a, q, {})).messages).toEqual([]);
    const dlq = await call(a, 'GET', `/v1/queues/${q}/dlq`);
    expect(dlq.statusCode, dlq.body).toBe(200);
    const dead = body<{
      messages: {
        id: string;
        data: unknown;
        originalId: string;
        group: string;
        receiveCount: number;
      }[];
    }>(dlq);
    expect(dead.messages).toMatchObject([
      { data: { poison: true }, originalId: id, group: 'g', receiveCount: 3 },
    ]);
    const info = body<{ deadLettered: number; groups: { pending: number }[] }>(
      await call(a, 'GET', `/v1/queues/${q}`),
    );
    expect(info.deadLettered).toBe(1);
    expect(info.groups[0]?.pending).toBe(0);
    const m = await t.deps.metrics.registry.getSingleMetricAsString('gateway_queue_messages_total');
    expect(m).toMatch(/event="dead_lettered"} [1-9]/);

    const rd = await call(a, 'POST', `/v1/queues/${q}/dlq/_redrive`, {});
    expect(body(rd)).toEqual({ redriven: 1, remaining: 0 });
    expect((await receive(a, q, {})).messages).toMatchObject([
      { data: { poison: true }, receiveCount: 1 },
    ]);
  });
});

describe('per-queue settings', () => {
  it('PUT /v1/queues/{name} overrides the dead-letter limit and retention for that queue only', async () => {
    const a = await newTenant(t.deps, ALL);
    const q = qname();
    const other = qname();
    await group(a, q);
    await group(a, other);
    const put = await call(a, 'PUT', `/v1/queues/${q}`, { maxReceiveCount: 1 });
    expect(put.statusCode, put.body).toBe(200);
    expect(body(put)).toEqual({ name: q, maxReceiveCount: 1, maxLength: 100 });
    for (const name of [q, other]) await publish(a, name, { data: name });
    // q: dead-lettered after one receive; other: the default of 3.
    for (const name of [q, other]) {
      expect((await receive(a, name, { visibilityTimeoutMs: 30 })).messages).toHaveLength(1);
    }
    await sleep(50);
    expect((await receive(a, q, {})).messages).toEqual([]);
    expect((await receive(a, other, {})).messages).toMatchObject([{ receiveCount: 2 }]);
    const info = body<Record<string, unknown>>(await call(a, 'GET', `/v1/queues/${q}`));
    expect(info).toMatchObject({ maxReceiveCount: 1, maxLength: 100, deadLettered: 1 });
    // null resets to the configured default; a bad value is a 400 and changes nothing.
    expectProblem(
      await call(a, 'PUT', `/v1/queues/${q}`, { maxLength: 5 }),
      400,
      'VALIDATION_FAILED',
    );
    expect(body(await call(a, 'PUT', `/v1/queues/${q}`, { maxReceiveCount: null }))).toEqual({
      name: q,
      maxReceiveCount: 3,
      maxLength: 100,
    });
    expectProblem(
      await call(await addKey(t.deps, a.tenant, ['queue:consume']), 'PUT', `/v1/queues/${q}`, {}),
      403,
      'SCOPE_MISSING',
    );
  });

  it('a larger maxLength keeps more acknowledged history', async () => {
    const a = await newTenant(t.deps, ALL);
    const kept = qname();
    const trimmed = qname();
    await call(a, 'PUT', `/v1/queues/${kept}`, { maxLength: 1000 });
    const redis = await adminRedis(t);
    try {
      for (const q of [kept, trimmed]) {
        await group(a, q);
        for (let b = 0; b < 2; b++) {
          await publishBatch(
            a,
            q,
            Array.from({ length: 100 }, (_, i) => ({ data: i })),
          );
        }
        for (;;) {
          const r = await receive(a, q, { max: 100 });
          if (r.messages.length === 0) break;
          await ack(
            a,
            q,
            r.messages.map((m) => m.id),
          );
        }
      }
      expect(await redis.xlen(keys.queue(a.tenant, kept))).toBe(200);
      expect(await redis.xlen(keys.queue(a.tenant, trimmed))).toBeLessThan(200);
    } finally {
      redis.disconnect();
    }
  });
});

describe('long polling', () => {
  it('a publish wakes a waiting receiver at once, not at the end of its wait', async () => {
    const a = await newTenant(t.deps, ALL);
    const q = qname();
    await group(a, q);
    const waiting = receive(a, q, { waitMs: 10_000 });
    while (t.deps.redis.blocking.inUse() === 0) await sleep(5); // the receiver is blocked
    const sent = Date.now();
    await publish(a, q, { data: 'wake' });
    const { messages, res } = await waiting;
    const latency = Date.now() - sent;
    expect(messages.map((m) => m.data)).toEqual(['wake']);
    expect(res.headers['x-queue-long-poll']).toBe('woken');
    expect(latency).toBeLessThan(500);
  });

  it('answers after waitMs with nothing; with the pool exhausted it does not wait and says so', async () => {
    const a = await newTenant(t.deps, ALL);
    const q = qname();
    await group(a, q);
    const started = Date.now();
    const { messages, res } = await receive(a, q, { waitMs: 300 });
    expect(messages).toEqual([]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(280);
    expect(res.headers['x-queue-long-poll']).toBe('timeout');

    const holders = Array.from({ length: 4 }, () => receive(a, q, { waitMs: 1500 }));
    // Until all four hold a connection (a fixed sleep was too short on a busy CI host).
    const pool = t.deps.redis.blocking;
    while (pool.inUse() < pool.size) await sleep(5);
    const t0 = Date.now();
    const degraded = await receive(a, q, { waitMs: 1500 });
    expect(Date.now() - t0).toBeLessThan(500);
    expect(degraded.res.headers['x-queue-long-poll']).toBe('degraded');
    await Promise.all(holders);
  });

  it('a shutdown cuts a long poll short', async () => {
    const a = await newTenant(t.deps, ALL);
    const q = qname();
    await group(a, q);
    const started = Date.now();
    const waiting = receive(a, q, { waitMs: 10_000 });
    await sleep(200);
    t.deps.lifecycle.draining = true;
    t.deps.queues.interruptWaits();
    try {
      const { messages } = await waiting;
      expect(messages).toEqual([]);
      expect(Date.now() - started).toBeLessThan(2000);
    } finally {
      t.deps.lifecycle.draining = false;
    }
  });
});

describe('retention', () => {
  it('trims acknowledged history past QUEUE_MAX_LENGTH, never an unacknowledged message', async () => {
    const a = await newTenant(t.deps, ALL);
    const q = qname();
    await group(a, q, 'fast');
    await group(a, q, 'slow');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      ids.push(
        ...(await publishBatch(
          a,
          q,
          Array.from({ length: 100 }, (_, j) => ({ data: i * 100 + j })),
        )),
      );
    }
    // 'fast' reads and acks everything; 'slow' has read nothing.
    for (;;) {
      const r = await receive(a, q, { max: 100 }, 'fast');
      if (r.messages.length === 0) break;
      await ack(
        a,
        q,
        r.messages.map((m) => m.id),
        'fast',
      );
    }
    const redis = await adminRedis(t);
    try {
      expect(await redis.xlen(keys.queue(a.tenant, q))).toBe(300);
      // 'slow' gets every message, in order, and acks them; then history is trimmed.
      const got: string[] = [];
      for (;;) {
        const r = await receive(a, q, { max: 100 }, 'slow');
        if (r.messages.length === 0) break;
        got.push(...r.messages.map((m) => m.id));
        await ack(
          a,
          q,
          r.messages.map((m) => m.id),
          'slow',
        );
      }
      expect(got).toEqual(ids);
      expect(await redis.xlen(keys.queue(a.tenant, q))).toBeLessThanOrEqual(200);
    } finally {
      redis.disconnect();
    }
  });
});

describe('at-least-once delivery', () => {
  it('10 000 messages, three consumers, one crashes: every message acked exactly once, none lost, none delivered after its ack', async () => {
    const a = await newTenant(t.deps, ALL);
    const q = qname();
    await group(a, q);
    const all: string[] = [];
    for (let i = 0; i < 100; i += 10) {
      const batches = await Promise.all(
        Array.from({ length: 10 }, (_, j) =>
          publishBatch(
            a,
            q,
            Array.from({ length: 100 }, (_, k) => ({ data: { n: (i + j) * 100 + k } })),
          ),
        ),
      );
      for (const b of batches) all.push(...b);
    }
    expect(new Set(all).size).toBe(10_000);

    const ackedAt = new Map<string, number>();
    const ackedBy = new Map<string, string>();
    const violations: string[] = [];
    let totalAcked = 0;
    const consume = async (consumer: string, crashAfter?: number) => {
      let receives = 0;
      const deadline = Date.now() + 60_000;
      while (ackedAt.size < 10_000 && Date.now() < deadline) {
        const asked = Date.now();
        const res = await call(a, 'POST', `/v1/queues/${q}/groups/g/_receive`, {
          consumer,
          max: 100,
          waitMs: 200,
          visibilityTimeoutMs: 1500,
        });
        const got = body<{ messages: Msg[] }>(res).messages;
        for (const m of got) {
          const at = ackedAt.get(m.id);
          if (at !== undefined && at < asked)
            violations.push(`${m.id} delivered to ${consumer} after its ack`);
        }
        receives++;
        // The crashing consumer acks half of what it got, then dies holding the rest.
        const toAck = crashAfter === undefined ? got : got.filter((_, i) => i % 2 === 0);
        if (toAck.length > 0) {
          const ids = toAck.map((m) => m.id);
          const acked = await ack(a, q, ids);
          if (acked !== ids.length) violations.push(`${consumer}: acked ${acked} of ${ids.length}`);
          totalAcked += acked;
          const now = Date.now();
          for (const id of ids) {
            if (ackedBy.has(id))
              violations.push(`${id} acked by ${ackedBy.get(id)} and ${consumer}`);
            ackedBy.set(id, consumer);
            ackedAt.set(id, now);
          }
        }
        if (crashAfter !== undefined && receives >= crashAfter) return;
      }
    };
    await Promise.all([consume('crasher', 5), consume('survivor-1'), consume('survivor-2')]);
    expect(violations.slice(0, 5)).toEqual([]);
    expect(totalAcked).toBe(10_000);
    expect(new Set(ackedAt.keys())).toEqual(new Set(all));
    const bySurvivors = [...ackedBy.values()].filter((c) => c !== 'crasher').length;
    expect(bySurvivors).toBeGreaterThan(0);
    const info = body<{ groups: { pending: number }[] }>(await call(a, 'GET', `/v1/queues/${q}`));
    expect(info.groups[0]?.pending).toBe(0);
  }, 90_000);
});

describe('groups, info, pending', () => {
  it('group create is idempotent; missing groups are 404; info and pending report state', async () => {
    const a = await newTenant(t.deps, ALL);
    const q = qname();
    const created = await call(a, 'PUT', `/v1/queues/${q}/groups/g`, {});
    expect(created.statusCode).toBe(201);
    expect(body(created)).toEqual({ group: 'g', created: true });
    const again = await call(a, 'PUT', `/v1/queues/${q}/groups/g`, { startFrom: 'latest' });
    expect(again.statusCode).toBe(200);
    expectProblem(
      await call(a, 'POST', `/v1/queues/${q}/groups/nope/_receive`, { consumer: 'c' }),
      404,
      'GROUP_NOT_FOUND',
    );
    expectProblem(
      await call(a, 'GET', `/v1/queues/${q}/groups/nope/pending`),
      404,
      'GROUP_NOT_FOUND',
    );
    expectProblem(
      await call(a, 'POST', `/v1/queues/${q}/groups/nope/_nack`, { consumer: 'c', ids: ['1-0'] }),
      404,
      'GROUP_NOT_FOUND',
    );
    expectProblem(await call(a, 'DELETE', `/v1/queues/${q}/groups/nope`), 404, 'GROUP_NOT_FOUND');
    expectProblem(
      await call(a, 'DELETE', `/v1/queues/${qname()}/groups/g`),
      404,
      'GROUP_NOT_FOUND',
    );
    expectProblem(await call(a, 'GET', `/v1/queues/${qname()}`), 404, 'QUEUE_NOT_FOUND');

    const ids = await publishBatch(a, q, [{ data: 1 }, { data: 2 }, { data: 3 }]);
    await publish(a, q, { data: 4, delayMs: 60_000 });
    await receive(a, q, { max: 2, visibilityTimeoutMs: 10_000, consumer: 'w1' });
    const info = body<Record<string, unknown>>(await call(a, 'GET', `/v1/queues/${q}`));
    expect(info).toMatchObject({ name: q, length: 3, delayed: 1, deadLettered: 0 });
    expect(info.oldestMessageAgeMs).toBeGreaterThanOrEqual(0);
    expect(info.groups).toMatchObject([
      { name: 'g', pending: 2, lag: 1, consumers: [{ name: 'w1', pending: 2 }] },
    ]);
    const page1 = body<{
      entries: { id: string; consumer: string; visibleInMs: number; receiveCount: number }[];
      cursor: string | null;
    }>(await call(a, 'GET', `/v1/queues/${q}/groups/g/pending?limit=1`));
    expect(page1.entries).toMatchObject([{ id: ids[0], consumer: 'w1', receiveCount: 1 }]);
    expect(page1.entries[0]?.visibleInMs).toBeGreaterThan(8000);
    expect(page1.entries[0]?.visibleInMs).toBeLessThanOrEqual(10_000);
    const page2 = body<{ entries: { id: string }[]; cursor: string | null }>(
      await call(a, 'GET', `/v1/queues/${q}/groups/g/pending?limit=1&cursor=${page1.cursor}`),
    );
    expect(page2.entries.map((e) => e.id)).toEqual([ids[1]]);
    expect((await call(a, 'DELETE', `/v1/queues/${q}/groups/g`)).statusCode).toBe(204);
  });
});

describe('delete, purge and list', () => {
  it('DELETE removes the queue, its groups, delayed messages, settings and dead letters at once, nothing else', async () => {
    const a = await newTenant(t.deps, ALL);
    const b = await newTenant(t.deps, ALL);
    const q = qname();
    const other = `${q}-other`;
    await group(a, q);
    await publishBatch(a, q, [{ data: 1 }, { data: 2 }]);
    await group(a, q, 'h', 'latest');
    await publish(a, q, { data: 3, delayMs: 60_000 });
    await publish(a, `${q}.dlq`, { data: 'dead' });
    expect((await call(a, 'PUT', `/v1/queues/${q}`, { maxReceiveCount: 7 })).statusCode).toBe(200);
    await receive(a, q, { max: 1, visibilityTimeoutMs: 60_000 });
    await group(a, other);
    await publish(a, other, { data: 'kept' });
    await group(b, q);
    await publish(b, q, { data: 'b kept' });

    // A consumer long-polling the queue when it goes.
    const waiting = call(a, 'POST', `/v1/queues/${q}/groups/h/_receive`, {
      consumer: 'c2',
      waitMs: 20_000,
    });
    await sleep(100);
    const started = Date.now();
    const res = await call(a, 'DELETE', `/v1/queues/${q}`);
    expect(res.statusCode, res.body).toBe(200);
    expect(body(res)).toEqual({ name: q, messages: 2, delayed: 1, groups: 2, deadLettered: 1 });
    const waited = await waiting;
    expectProblem(waited, 404, 'GROUP_NOT_FOUND');
    expect(Date.now() - started).toBeLessThan(7000);

    const redis = await adminRedis(t);
    try {
      for (const name of [q, `${q}.dlq`]) {
        for (const key of [
          keys.queue(a.tenant, name),
          keys.queueDelayed(a.tenant, name),
          keys.queueConfig(a.tenant, name),
        ]) {
          expect(await redis.exists(key), key).toBe(0);
        }
      }
      expect(await redis.xlen(keys.queue(a.tenant, other))).toBe(1);
      expect(await redis.xlen(keys.queue(b.tenant, q))).toBe(1);
    } finally {
      redis.disconnect();
    }
    expectProblem(await call(a, 'GET', `/v1/queues/${q}`), 404, 'QUEUE_NOT_FOUND');
    expectProblem(await call(a, 'DELETE', `/v1/queues/${q}`), 404, 'QUEUE_NOT_FOUND');
    expectProblem(
      await call(a, 'POST', `/v1/queues/${q}/groups/g/_receive`, { consumer: 'c' }),
      404,
      'GROUP_NOT_FOUND',
    );
    // Tenant B's queue of the same name was not touched, and A cannot delete it again.
    expect((await receive(b, q, {})).messages.map((m) => m.data)).toEqual(['b kept']);

    // A publish starts a new, empty queue with the default settings and no groups.
    await publish(a, q, { data: 'new' });
    expect(body(await call(a, 'GET', `/v1/queues/${q}`))).toMatchObject({
      length: 1,
      delayed: 0,
      deadLettered: 0,
      maxReceiveCount: 3,
      groups: [],
    });
    // Bad names are refused before Redis; scopes are checked.
    expectProblem(await call(a, 'DELETE', `/v1/queues/a:b`), 400, 'VALIDATION_FAILED');
    const consumer = await addKey(t.deps, a.tenant, ['queue:consume', 'queue:publish']);
    expectProblem(await call(consumer, 'DELETE', `/v1/queues/${q}`), 403, 'SCOPE_MISSING');
    const confined = await addKey(t.deps, a.tenant, ['queue:admin:calc-*']);
    expectProblem(await call(confined, 'DELETE', `/v1/queues/${q}`), 403, 'SCOPE_MISSING');
    expect(body(await call(a, 'GET', `/v1/queues/${q}`))).toMatchObject({ length: 1 });
  });

  it('_purge drops every message and delayed message, keeps groups (nothing in flight), settings and dead letters', async () => {
    const a = await newTenant(t.deps, ALL);
    const q = qname();
    await group(a, q);
    const ids = await publishBatch(a, q, [{ data: 1 }, { data: 2 }, { data: 3 }]);
    await group(a, q, 'h', 'latest');
    await publish(a, q, { data: 4, delayMs: 60_000 });
    await publish(a, `${q}.dlq`, { data: 'dead' });
    expect((await call(a, 'PUT', `/v1/queues/${q}`, { maxReceiveCount: 7 })).statusCode).toBe(200);
    const held = (await receive(a, q, { max: 1, visibilityTimeoutMs: 60_000 })).messages;
    expect(held.map((m) => m.id)).toEqual([ids[0]]);

    // A consumer of h long-polls through the purge and gets the next message published.
    const waiting = call(a, 'POST', `/v1/queues/${q}/groups/h/_receive`, {
      consumer: 'c2',
      waitMs: 10_000,
    });
    await sleep(100);
    const res = await call(a, 'POST', `/v1/queues/${q}/_purge`);
    expect(res.statusCode, res.body).toBe(200);
    expect(body(res)).toEqual({ name: q, messages: 3, delayed: 1, groups: 2 });
    const info = body<{ groups: { name: string; pending: number }[] }>(
      await call(a, 'GET', `/v1/queues/${q}`),
    );
    expect(info).toMatchObject({ length: 0, delayed: 0, deadLettered: 1, maxReceiveCount: 7 });
    expect(info.groups.map((g) => [g.name, g.pending]).sort()).toEqual([
      ['g', 0],
      ['h', 0],
    ]);
    expect(await ack(a, q, [ids[0] as string])).toBe(0);
    expect((await receive(a, q, { max: 10 })).messages).toEqual([]);

    const { id } = await publish(a, q, { data: 'after' });
    const woken = await waiting;
    expect(woken.statusCode, woken.body).toBe(200);
    expect(body<{ messages: Msg[] }>(woken).messages.map((m) => [m.id, m.data])).toEqual([
      [id, 'after'],
    ]);
    expect((await receive(a, q, { max: 10 })).messages.map((m) => m.data)).toEqual(['after']);

    expectProblem(await call(a, 'POST', `/v1/queues/${qname()}/_purge`), 404, 'QUEUE_NOT_FOUND');
    expectProblem(await call(a, 'POST', `/v1/queues/a:b/_purge`), 400, 'VALIDATION_FAILED');
    const consumer = await addKey(t.deps, a.tenant, ['queue:consume', 'queue:publish']);
    expectProblem(await call(consumer, 'POST', `/v1/queues/${q}/_purge`), 403, 'SCOPE_MISSING');
  });

  it("GET /v1/queues pages the tenant's queues under a prefix, with their lengths", async () => {
    const a = await newTenant(t.deps, ALL);
    const b = await newTenant(t.deps, ALL);
    const p = `lst-${qname()}`;
    await group(a, `${p}-a`);
    await publishBatch(a, `${p}-b`, [{ data: 1 }, { data: 2 }]);
    await publish(a, `${p}-b.dlq`, { data: 'dead' });
    await publish(a, `${p}-delayed`, { data: 1, delayMs: 60_000 });
    await publish(a, `x${p}`, { data: 1 });
    await publish(b, `${p}-b`, { data: 'b' });

    const res = await call(a, 'GET', `/v1/queues?prefix=${p}`);
    expect(res.statusCode, res.body).toBe(200);
    const all = new Map<string, number>();
    let cursor: string | null = null;
    let pages = 0;
    type Page = { queues: { name: string; length: number }[]; cursor: string | null };
    do {
      const url = `/v1/queues?prefix=${p}&limit=1${cursor === null ? '' : `&cursor=${cursor}`}`;
      const page: Page = body<Page>(await call(a, 'GET', url));
      for (const q of page.queues) all.set(q.name, q.length);
      cursor = page.cursor;
      pages++;
    } while (cursor !== null && pages < 10_000);
    // A queue with only a delayed message is listed too, with no receivable message yet.
    expect(Object.fromEntries([...all].sort())).toEqual({
      [`${p}-a`]: 0,
      [`${p}-b`]: 2,
      [`${p}-b.dlq`]: 1,
      [`${p}-delayed`]: 0,
    });
    const listed = body<{ queues: { name: string }[] }>(res).queues.map((q) => q.name);
    expect(listed.every((n) => n.startsWith(p))).toBe(true);

    // A key confined to a glob lists only under the glob's literal prefix.
    const confined = await addKey(t.deps, a.tenant, [`queue:admin:${p}-b*`]);
    expectProblem(await call(confined, 'GET', `/v1/queues`), 403, 'SCOPE_MISSING');
    const mine = body<{ queues: { name: string }[] }>(
      await call(confined, 'GET', `/v1/queues?prefix=${p}-b&limit=1000`),
    );
    expect(mine.queues.map((q) => q.name).sort()).toEqual([`${p}-b`, `${p}-b.dlq`]);
    const consumer = await addKey(t.deps, a.tenant, ['queue:consume']);
    expectProblem(await call(consumer, 'GET', `/v1/queues`), 403, 'SCOPE_MISSING');
    for (const bad of ['prefix=a*', 'prefix=a:b', 'cursor=abc', 'limit=0', 'limit=1001', 'x=1']) {
      expectProblem(await call(a, 'GET', `/v1/queues?${bad}`), 400, 'VALIDATION_FAILED');
    }
  });
});

describe('bad input, isolation and scopes', () => {
  it('refuses hostile names and bad bodies with a 400 naming the field, and publishes nothing', async () => {
    const a = await newTenant(t.deps, ALL);
    const q = qname();
    await group(a, q);
    for (const bad of ['a:b', 'a*', 'x'.repeat(129), 'a%20b', '%E2%98%83', 'a%3Ab']) {
      expectProblem(
        await call(a, 'POST', `/v1/queues/${bad}/messages`, { data: 1 }),
        400,
        'VALIDATION_FAILED',
      );
    }
    expectProblem(await call(a, 'PUT', `/v1/queues/${q}/groups/a:b`, {}), 400, 'VALIDATION_FAILED');
    const cases: [string, unknown, string][] = [
      ['/messages', {}, 'body.data'],
      ['/messages', { data: 1, delayMs: -1 }, 'body.delayMs'],
      ['/messages', { data: 1, delayMs: 61_000 }, 'body.delayMs'],
      ['/messages', { data: 1, dedupId: '' }, 'body.dedupId'],
      ['/messages', { data: 1, extra: true }, 'body'],
      ['/messages/_batch', { messages: [] }, 'body.messages'],
      [
        '/messages/_batch',
        { messages: Array.from({ length: 101 }, () => ({ data: 1 })) },
        'body.messages',
      ],
      ['/groups/g/_receive', { consumer: 'c', max: 101 }, 'body.max'],
      ['/groups/g/_receive', { consumer: 'c', waitMs: 20_001 }, 'body.waitMs'],
      ['/groups/g/_receive', { consumer: 'c', visibilityTimeoutMs: 0 }, 'body.visibilityTimeoutMs'],
      ['/groups/g/_receive', { max: 1 }, 'body.consumer'],
      ['/groups/g/_ack', { ids: ['nope'] }, 'body.ids'],
      ['/groups/g/_ack', { ids: [] }, 'body.ids'],
      ['/groups/g/_nack', { ids: ['1-0'] }, 'body.consumer'],
      ['/groups/g/_extend', { consumer: 'c', ids: ['1-0'] }, 'body.visibilityTimeoutMs'],
    ];
    for (const [path, payload, field] of cases) {
      const p = expectProblem(
        await call(a, 'POST', `/v1/queues/${q}${path}`, payload),
        400,
        'VALIDATION_FAILED',
      );
      expect(
        p.errors?.some((e) => e.field.startsWith(field)),
        `${path} ${JSON.stringify(payload).slice(0, 80)}: ${JSON.stringify(p.errors)}`,
      ).toBe(true);
    }
    const big = await call(a, 'POST', `/v1/queues/${q}/messages`, { data: 'x'.repeat(2000) });
    expect(expectProblem(big, 413, 'VALUE_TOO_LARGE').errors?.[0]?.limit).toBe(
      'QUEUE_MAX_MESSAGE_BYTES',
    );
    expectProblem(
      await call(a, 'GET', `/v1/queues/${q}/groups/g/pending?cursor=abc`),
      400,
      'VALIDATION_FAILED',
    );
    expect((await receive(a, q, { max: 100 })).messages).toEqual([]);
  });

  it("tenant B never reaches tenant A's queue", async () => {
    const a = await newTenant(t.deps, ALL);
    const b = await newTenant(t.deps, ALL);
    const q = qname();
    await group(a, q);
    const { id } = await publish(a, q, { data: 'secret' });
    expectProblem(await call(b, 'GET', `/v1/queues/${q}`), 404, 'QUEUE_NOT_FOUND');
    expectProblem(
      await call(b, 'POST', `/v1/queues/${q}/groups/g/_receive`, { consumer: 'c' }),
      404,
      'GROUP_NOT_FOUND',
    );
    expect(body(await call(b, 'POST', `/v1/queues/${q}/groups/g/_ack`, { ids: [id] }))).toEqual({
      acked: 0,
    });
    expect(body(await call(b, 'GET', `/v1/queues/${q}/dlq`))).toEqual({
      messages: [],
      cursor: null,
    });
    await group(b, q);
    expect((await receive(b, q, {})).messages).toEqual([]);
    expect((await receive(a, q, {})).messages.map((m) => m.data)).toEqual(['secret']);
  });

  it('scopes: publish, consume and admin are separate; a glob confines a key to matching queues', async () => {
    const a = await newTenant(t.deps, ALL);
    const q = `calc-${qname()}`;
    await group(a, q);
    const producer = await addKey(t.deps, a.tenant, ['queue:publish:calc-*']);
    const consumer = await addKey(t.deps, a.tenant, ['queue:consume']);
    expect((await call(producer, 'POST', `/v1/queues/${q}/messages`, { data: 1 })).statusCode).toBe(
      201,
    );
    expectProblem(
      await call(producer, 'POST', `/v1/queues/other/messages`, { data: 1 }),
      403,
      'SCOPE_MISSING',
    );
    expectProblem(
      await call(producer, 'POST', `/v1/queues/${q}/groups/g/_receive`, { consumer: 'c' }),
      403,
      'SCOPE_MISSING',
    );
    expectProblem(
      await call(consumer, 'POST', `/v1/queues/${q}/messages`, { data: 1 }),
      403,
      'SCOPE_MISSING',
    );
    expectProblem(
      await call(consumer, 'PUT', `/v1/queues/${q}/groups/h`, {}),
      403,
      'SCOPE_MISSING',
    );
    expectProblem(
      await call(consumer, 'POST', `/v1/queues/${q}/dlq/_redrive`, {}),
      403,
      'SCOPE_MISSING',
    );
    expect((await receive(consumer, q, {})).messages).toHaveLength(1);
  });
});

describe('POST /v1/queues/{name}/messages', () => {
  runCommonRouteTests({
    app: () => t,
    scope: 'queue:publish',
    wrongScope: 'queue:consume',
    request: (o) => ({
      method: 'POST',
      url: `/v1/queues/${qname()}/messages`,
      headers: o.auth,
      payload: { data: 1 },
    }),
  });
});

describe('POST /v1/queues/{name}/groups/{group}/_receive', () => {
  runCommonRouteTests({
    app: () => t,
    scope: 'queue:consume',
    wrongScope: 'queue:publish',
    request: async (o) => {
      const q = qname();
      const admin = await addKey(t.deps, o.tenant, ['queue:admin']);
      await group(admin, q);
      return {
        method: 'POST',
        url: `/v1/queues/${q}/groups/g/_receive`,
        headers: o.auth,
        payload: { consumer: 'c' },
      };
    },
  });
});

// Every other queue route: a queue with a group and one received message, set up by another key.
async function prepared(o: TestTenant) {
  const q = qname();
  const helper = await addKey(t.deps, o.tenant, ALL);
  await group(helper, q);
  await publish(helper, q, { data: 1 });
  const { messages } = await receive(helper, q, { consumer: 'w' });
  return { q, id: messages[0]?.id ?? '0-0' };
}

for (const [label, scope, wrongScope, make] of [
  [
    'POST /v1/queues/{name}/messages/_batch',
    'queue:publish',
    'queue:consume',
    (q: string) => ({
      method: 'POST',
      url: `/v1/queues/${q}/messages/_batch`,
      payload: { messages: [{ data: 1 }] },
    }),
  ],
  [
    'GET /v1/queues/{name}',
    'queue:consume',
    'queue:publish',
    (q: string) => ({ method: 'GET', url: `/v1/queues/${q}` }),
  ],
  [
    'PUT /v1/queues/{name}/groups/{group}',
    'queue:admin',
    'queue:consume',
    (q: string) => ({ method: 'PUT', url: `/v1/queues/${q}/groups/other`, payload: {} }),
  ],
  [
    'DELETE /v1/queues/{name}/groups/{group}',
    'queue:admin',
    'queue:consume',
    (q: string) => ({ method: 'DELETE', url: `/v1/queues/${q}/groups/g` }),
  ],
  [
    'POST .../_ack',
    'queue:consume',
    'queue:publish',
    (q: string, id: string) => ({
      method: 'POST',
      url: `/v1/queues/${q}/groups/g/_ack`,
      payload: { ids: [id] },
    }),
  ],
  [
    'POST .../_nack',
    'queue:consume',
    'queue:publish',
    (q: string, id: string) => ({
      method: 'POST',
      url: `/v1/queues/${q}/groups/g/_nack`,
      payload: { consumer: 'w', ids: [id] },
    }),
  ],
  [
    'POST .../_extend',
    'queue:consume',
    'queue:publish',
    (q: string, id: string) => ({
      method: 'POST',
      url: `/v1/queues/${q}/groups/g/_extend`,
      payload: { consumer: 'w', ids: [id], visibilityTimeoutMs: 1000 },
    }),
  ],
  [
    'GET .../pending',
    'queue:consume',
    'queue:admin',
    (q: string) => ({ method: 'GET', url: `/v1/queues/${q}/groups/g/pending` }),
  ],
  [
    'DELETE /v1/queues/{name}',
    'queue:admin',
    'queue:consume',
    (q: string) => ({ method: 'DELETE', url: `/v1/queues/${q}` }),
  ],
  [
    'POST /v1/queues/{name}/_purge',
    'queue:admin',
    'queue:consume',
    (q: string) => ({ method: 'POST', url: `/v1/queues/${q}/_purge` }),
  ],
  [
    'GET /v1/queues',
    'queue:admin',
    'queue:consume',
    (q: string) => ({ method: 'GET', url: `/v1/queues?prefix=${q}` }),
  ],
  [
    'GET /v1/queues/{name}/dlq',
    'queue:admin',
    'queue:consume',
    (q: string) => ({ method: 'GET', url: `/v1/queues/${q}/dlq` }),
  ],
  [
    'POST /v1/queues/{name}/dlq/_redrive',
    'queue:admin',
    'queue:consume',
    (q: string) => ({ method: 'POST', url: `/v1/queues/${q}/dlq/_redrive`, payload: {} }),
  ],
] as const) {
  describe(label, () => {
    runCommonRouteTests({
      app: () => t,
      scope,
      wrongScope,
      request: async (o) => {
        const { q, id } = await prepared(o);
        return { ...make(q, id), headers: o.auth };
      },
    });
  });
}
