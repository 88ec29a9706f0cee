/**
 * Sessions against real Redis: the routes by status, the per-user index (listing, pruning,
 * revoke-all, eviction at the per-user cap), expiry (idle, absolute cap) with short TTLs,
 * rotation, merge semantics and limits, isolation between users and tenants, durable create,
 * and session ids kept out of logs.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { buildApp } from '../../../src/app.js';
import { parseConfig } from '../../../src/config.js';
import { createDeps } from '../../../src/deps.js';
import { parseSessionHash } from '../../../src/modules/sessions/service.js';
import { keys } from '../../../src/redis/keys.js';
import {
  type TestTenant,
  addKey,
  adminRedis,
  body,
  expectProblem,
  newTenant,
  testEnv,
  useTestApp,
  waitForRedis,
} from '../../harness/app.js';
import { runCommonRouteTests } from '../../harness/common-route-tests.js';

const t = useTestApp({ env: { SESSION_MAX_PER_USER: '3', SESSION_MAX_DATA_BYTES: '200' } });
const SCOPES = ['session:read', 'session:write'];

type Session = {
  sessionId: string;
  userId: string;
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
  createdAt: string;
  lastActivityAt: string;
  expiresAt: string;
  absoluteExpiresAt: string;
  rotatedAt?: string;
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function create(owner: TestTenant, payload: Record<string, unknown>) {
  const res = await t.app.inject({
    method: 'POST',
    url: '/v1/sessions',
    headers: owner.auth,
    payload,
  });
  if (res.statusCode !== 201) throw new Error(`create: ${res.statusCode} ${res.body}`);
  return body<Session>(res);
}

function get(owner: TestTenant, id: string, query = '') {
  return t.app.inject({ method: 'GET', url: `/v1/sessions/${id}${query}`, headers: owner.auth });
}

async function list(owner: TestTenant, userId: string, query = '') {
  const res = await t.app.inject({
    method: 'GET',
    url: `/v1/users/${encodeURIComponent(userId)}/sessions${query}`,
    headers: owner.auth,
  });
  expect(res.statusCode, res.body).toBe(200);
  return body<{ sessions: { sessionId: string }[]; total: number; cursor: string | null }>(res);
}

describe('POST /v1/sessions and GET /v1/sessions/{id}', () => {
  it('creates with a server-generated 256-bit id and reads it back with data and metadata', async () => {
    const a = await newTenant(t.deps, SCOPES);
    const before = Date.now();
    const created = await create(a, {
      userId: 'user-1',
      data: { cart: ['sku-1'], nested: { a: [1, { b: null }] }, 'odd "name\u2028': 'é' },
      ttl: 600,
      maxLifetime: 3600,
      metadata: { ip: '203.0.113.7', userAgent: 'curl/8' },
    });
    expect(created.sessionId).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Date.parse(created.expiresAt) - Date.parse(created.createdAt)).toBe(600_000);
    expect(Date.parse(created.absoluteExpiresAt) - Date.parse(created.createdAt)).toBe(3_600_000);
    expect(Date.parse(created.createdAt)).toBeGreaterThanOrEqual(before);

    const res = await get(a, created.sessionId);
    expect(res.statusCode).toBe(200);
    const s = body<Session>(res);
    expect(s).toMatchObject({
      sessionId: created.sessionId,
      userId: 'user-1',
      data: { cart: ['sku-1'], nested: { a: [1, { b: null }] } },
      metadata: { ip: '203.0.113.7', userAgent: 'curl/8' },
      createdAt: created.createdAt,
      lastActivityAt: created.createdAt,
      expiresAt: created.expiresAt,
    });
    expect(s.data['odd "name\u2028']).toBe('é');
  });

  it('answers 404 alike for unknown, malformed and deleted ids', async () => {
    const a = await newTenant(t.deps, SCOPES);
    const s = await create(a, { userId: 'u' });
    const unknown = 'A'.repeat(43);
    for (const id of [unknown, 'short', 'x'.repeat(44), encodeURIComponent('a b')]) {
      const p = expectProblem(await get(a, id), 404, 'SESSION_NOT_FOUND');
      expect(p.detail).toBe('No such session: the id is unknown or the session expired.');
    }
    const del = await t.app.inject({
      method: 'DELETE',
      url: `/v1/sessions/${s.sessionId}`,
      headers: a.auth,
    });
    expect(del.statusCode).toBe(204);
    expectProblem(await get(a, s.sessionId), 404, 'SESSION_NOT_FOUND');
    expectProblem(
      await t.app.inject({ method: 'DELETE', url: `/v1/sessions/${s.sessionId}`, headers: a.auth }),
      404,
      'SESSION_NOT_FOUND',
    );
    expect((await list(a, 'u')).total).toBe(0);
  });

  it('refuses bad input with a 400 naming the field, and creates nothing', async () => {
    const a = await newTenant(t.deps, SCOPES);
    const bad: [Record<string, unknown>, string][] = [
      [{}, 'body.userId'],
      [{ userId: '' }, 'body.userId'],
      [{ userId: 'u\u0000x' }, 'body.userId'],
      [{ userId: 'u', data: [1, 2] }, 'body.data'],
      [{ userId: 'u', data: 'x' }, 'body.data'],
      [{ userId: 'u', ttl: 0 }, 'body.ttl'],
      [{ userId: 'u', ttl: 1.5 }, 'body.ttl'],
      [{ userId: 'u', ttl: 100, maxLifetime: 50 }, 'body.ttl'],
      [{ userId: 'u', maxLifetime: 10 * 365 * 24 * 3600 }, 'body.maxLifetime'],
      [{ userId: 'u', metadata: { ua: 'x'.repeat(5000) } }, 'body.metadata'],
      [{ userId: 'u', durable: 'yes' }, 'body.durable'],
      [{ userId: 'u', extra: 1 }, 'body'],
    ];
    for (const [payload, field] of bad) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/v1/sessions',
        headers: a.auth,
        payload,
      });
      const p = expectProblem(res, 400, 'VALIDATION_FAILED');
      expect(
        p.errors?.some((e) => e.field.startsWith(field)),
        `${JSON.stringify(payload)}: ${res.body}`,
      ).toBe(true);
    }
    const big = await t.app.inject({
      method: 'POST',
      url: '/v1/sessions',
      headers: a.auth,
      payload: { userId: 'u', data: { blob: 'x'.repeat(300) } },
    });
    expect(expectProblem(big, 413, 'VALUE_TOO_LARGE').errors?.[0]?.limit).toBe(
      'SESSION_MAX_DATA_BYTES',
    );
    expect((await list(a, 'u')).total).toBe(0);
  });

  it('durable: true answers once a replica has the session', async () => {
    const a = await newTenant(t.deps, SCOPES);
    const s = await create(a, { userId: 'u', data: { k: 1 }, durable: true });
    expect((await get(a, s.sessionId)).statusCode).toBe(200);
    const m = await t.deps.metrics.registry.getSingleMetricAsString('gateway_durable_writes_total');
    expect(m).toMatch(/module="sessions",result="confirmed"} [1-9]/);
  });
});

describe('PATCH /v1/sessions/{id}', () => {
  it('merges top-level fields, null deletes, others are kept', async () => {
    const a = await newTenant(t.deps, SCOPES);
    const s = await create(a, { userId: 'u', data: { a: 1, b: { x: 1 }, c: 'keep' } });
    const res = await t.app.inject({
      method: 'PATCH',
      url: `/v1/sessions/${s.sessionId}`,
      headers: a.auth,
      payload: { data: { a: null, b: { y: 2 }, d: [true] } },
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(body<Session>(res).data).toEqual({ b: { y: 2 }, c: 'keep', d: [true] });
    expect(body<Session>(await get(a, s.sessionId)).data).toEqual({
      b: { y: 2 },
      c: 'keep',
      d: [true],
    });
    // Without touch the expiry stays put.
    expect(body<Session>(res).expiresAt).toBe(s.expiresAt);
  });

  it('checks the size cap on the merged result; an over-size merge changes nothing', async () => {
    const a = await newTenant(t.deps, SCOPES);
    const s = await create(a, { userId: 'u', data: { a: 'x'.repeat(100) } });
    const patch = (data: Record<string, unknown>) =>
      t.app.inject({
        method: 'PATCH',
        url: `/v1/sessions/${s.sessionId}`,
        headers: a.auth,
        payload: { data },
      });
    expectProblem(await patch({ b: 'y'.repeat(100) }), 413, 'VALUE_TOO_LARGE');
    expect(body<Session>(await get(a, s.sessionId)).data).toEqual({ a: 'x'.repeat(100) });
    // Replacing the big field with a smaller one frees room: the cap counts the result.
    const ok = await patch({ a: null, b: 'y'.repeat(150) });
    expect(ok.statusCode, ok.body).toBe(200);
    expect(body<Session>(ok).data).toEqual({ b: 'y'.repeat(150) });
  });

  it('404 on an unknown session, 400 on a body without data', async () => {
    const a = await newTenant(t.deps, SCOPES);
    expectProblem(
      await t.app.inject({
        method: 'PATCH',
        url: `/v1/sessions/${'B'.repeat(43)}`,
        headers: a.auth,
        payload: { data: { a: 1 } },
      }),
      404,
      'SESSION_NOT_FOUND',
    );
    const s = await create(a, { userId: 'u' });
    expectProblem(
      await t.app.inject({
        method: 'PATCH',
        url: `/v1/sessions/${s.sessionId}`,
        headers: a.auth,
        payload: { a: 1 },
      }),
      400,
      'VALIDATION_FAILED',
    );
  });
});

describe('expiry', () => {
  it('an idle session expires after its ttl; a touch slides it; the index is pruned', async () => {
    const a = await newTenant(t.deps, SCOPES);
    const idle = await create(a, { userId: 'u', ttl: 1 });
    const kept = await create(a, { userId: 'u', ttl: 1 });
    await sleep(600);
    const touched = await get(a, kept.sessionId, '?touch=true');
    expect(touched.statusCode).toBe(200);
    const ts = body<Session>(touched);
    expect(Date.parse(ts.expiresAt)).toBeGreaterThan(Date.parse(kept.expiresAt));
    expect(Date.parse(ts.lastActivityAt)).toBeGreaterThan(Date.parse(kept.createdAt));
    await sleep(600);
    expectProblem(await get(a, idle.sessionId), 404, 'SESSION_NOT_FOUND');
    expect((await get(a, kept.sessionId)).statusCode).toBe(200);
    const page = await list(a, 'u');
    expect(page.sessions.map((s) => s.sessionId)).toEqual([kept.sessionId]);
    expect(page.total).toBe(1);
    const redis = await adminRedis(t);
    try {
      expect(await redis.zcard(keys.userSessions(a.tenant, 'u'))).toBe(1);
    } finally {
      redis.disconnect();
    }
  });

  it('a touch moves the index score only once the expiry moved by a tenth of the idle ttl', async () => {
    const a = await newTenant(t.deps, SCOPES);
    const s = await create(a, { userId: 'lag', ttl: 10 });
    const index = keys.userSessions(a.tenant, 'lag');
    const redis = await adminRedis(t);
    try {
      const score0 = Number(await redis.zscore(index, s.sessionId));
      expect(score0).toBe(Date.parse(s.expiresAt));
      await sleep(50);
      const near = body<Session>(await get(a, s.sessionId, '?touch=true'));
      // The session's expiry slid; its index score (and hash field z) did not: 50 ms < 1 s.
      expect(Date.parse(near.expiresAt)).toBeGreaterThan(score0);
      expect(Number(await redis.zscore(index, s.sessionId))).toBe(score0);
      expect(await redis.hget(keys.session(a.tenant, s.sessionId), 'z')).toBe(String(score0));
      // A reader that comes when the trailing score is already past but the session is not
      // (the last tenth of its idle time) keeps it: the list script checks such entries.
      const listed = await t.deps.redis.primary.sessionList(
        index,
        score0 + 20,
        keys.sessionPrefix(a.tenant),
        0,
        10,
      );
      expect(listed[0]).toBe(1);
      expect(listed[1]).toBe(s.sessionId);
      expect(await redis.zcard(index)).toBe(1);
      // An expiry that moved further than the lag allows is written to the index too.
      await redis.hset(keys.session(a.tenant, s.sessionId), 'z', String(score0 - 2000));
      const far = body<Session>(await get(a, s.sessionId, '?touch=true'));
      expect(Number(await redis.zscore(index, s.sessionId))).toBe(Date.parse(far.expiresAt));
      expect(Number(await redis.pttl(index))).toBeGreaterThan(10_000 + 50_000);
    } finally {
      redis.disconnect();
    }
  });

  it('sliding never passes the absolute lifetime', async () => {
    const a = await newTenant(t.deps, SCOPES);
    const s = await create(a, { userId: 'u', ttl: 2, maxLifetime: 2 });
    await sleep(500);
    const res = await t.app.inject({
      method: 'POST',
      url: `/v1/sessions/${s.sessionId}/_touch`,
      headers: a.auth,
    });
    expect(res.statusCode, res.body).toBe(200);
    const touched = body<Session>(res);
    expect(touched.expiresAt).toBe(s.absoluteExpiresAt);
    expect(touched).not.toHaveProperty('data');
    await sleep(1700);
    expectProblem(await get(a, s.sessionId, '?touch=true'), 404, 'SESSION_NOT_FOUND');
    expectProblem(
      await t.app.inject({
        method: 'POST',
        url: `/v1/sessions/${s.sessionId}/_touch`,
        headers: a.auth,
      }),
      404,
      'SESSION_NOT_FOUND',
    );
  });
});

describe('storage of the last activity and expiry', () => {
  // Driven through the touch script with chosen clocks (a gateway's `now`), so no test sleeps.
  it('a slide writes only the key expiry; once capped, only the `a` field; never backwards', async () => {
    const a = await newTenant(t.deps, SCOPES);
    const s = await create(a, { userId: 'u', ttl: 10, maxLifetime: 30 });
    const t0 = Date.parse(s.createdAt);
    const abs = Date.parse(s.absoluteExpiresAt);
    const key = keys.session(a.tenant, s.sessionId);
    const redis = await adminRedis(t);
    const touch = async (now: number) => {
      const flat = await t.deps.redis.primary.sessionTouch(
        key,
        now,
        keys.userSessionsPrefix(a.tenant),
        s.sessionId,
        '0',
        0,
      );
      const rec = parseSessionHash(s.sessionId, flat ?? []);
      return [rec.lastActivityAt, rec.expiresAt];
    };
    try {
      const hash = await redis.hgetall(key);
      // `e` is the expiry at create, kept for older versions during a rolling upgrade.
      expect(hash.e).toBe(String(t0 + 10_000));
      expect(await redis.pexpiretime(key)).toBe(t0 + 10_000);

      // Uncapped: the expiry moves, the hash stays as it was.
      expect(await touch(t0 + 500)).toEqual([t0 + 500, t0 + 10_500]);
      expect(await redis.pexpiretime(key)).toBe(t0 + 10_500);
      expect(await redis.hgetall(key)).toEqual(hash);

      // A gateway whose clock is behind cannot shorten the session.
      expect(await touch(t0 + 200)).toEqual([t0 + 500, t0 + 10_500]);
      expect(await redis.pexpiretime(key)).toBe(t0 + 10_500);

      // Capped at the absolute expiry: the expiry cannot tell the last activity any more.
      expect(await touch(t0 + 25_000)).toEqual([t0 + 25_000, abs]);
      expect(await redis.pexpiretime(key)).toBe(abs);
      expect(await redis.hget(key, 'a')).toBe(String(t0 + 25_000));
      expect(await touch(t0 + 26_000)).toEqual([t0 + 26_000, abs]);
      expect(await redis.hget(key, 'a')).toBe(String(t0 + 26_000));

      // Readers derive both, also past stale `a`/`e` fields an older version left in the hash.
      await redis.hset(key, 'e', '1', 'z', String(t0 + 10_000));
      const read = body<Session>(await get(a, s.sessionId));
      expect([read.lastActivityAt, read.expiresAt]).toEqual([
        new Date(t0 + 26_000).toISOString(),
        s.absoluteExpiresAt,
      ]);
      const [listed] = (await list(a, 'u')).sessions as unknown as Session[];
      expect([listed?.lastActivityAt, listed?.expiresAt]).toEqual([
        read.lastActivityAt,
        read.expiresAt,
      ]);
    } finally {
      redis.disconnect();
    }
  });

  it('an uncapped session stored by an older version (with `a` and `e` fields) reads alike', async () => {
    const a = await newTenant(t.deps, SCOPES);
    const s = await create(a, { userId: 'u', ttl: 60 });
    const key = keys.session(a.tenant, s.sessionId);
    const redis = await adminRedis(t);
    try {
      // What an older version's slide left: a and e written with the expiry.
      const t1 = Date.parse(s.createdAt) + 1000;
      await redis.hset(key, 'a', String(t1), 'e', String(t1 + 60_000));
      await redis.pexpireat(key, t1 + 60_000);
      const read = body<Session>(await get(a, s.sessionId));
      expect([read.lastActivityAt, read.expiresAt]).toEqual([
        new Date(t1).toISOString(),
        new Date(t1 + 60_000).toISOString(),
      ]);
    } finally {
      redis.disconnect();
    }
  });
});

describe('POST /v1/sessions/{id}/_rotate', () => {
  it('moves the session to a new id; the old id is invalid at once', async () => {
    const a = await newTenant(t.deps, SCOPES);
    const s = await create(a, { userId: 'u', data: { role: 'guest' } });
    const res = await t.app.inject({
      method: 'POST',
      url: `/v1/sessions/${s.sessionId}/_rotate`,
      headers: a.auth,
    });
    expect(res.statusCode, res.body).toBe(200);
    const rotated = body<Session>(res);
    expect(rotated.sessionId).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(rotated.sessionId).not.toBe(s.sessionId);
    expect(rotated).toMatchObject({
      data: { role: 'guest' },
      createdAt: s.createdAt,
      expiresAt: s.expiresAt,
    });
    expect(rotated.rotatedAt).toBeDefined();
    expectProblem(await get(a, s.sessionId), 404, 'SESSION_NOT_FOUND');
    expect(body<Session>(await get(a, rotated.sessionId)).data).toEqual({ role: 'guest' });
    expect((await list(a, 'u')).sessions.map((x) => x.sessionId)).toEqual([rotated.sessionId]);
    // A rotation extends the index to outlive the entry's score by the index lag (common.lua).
    const redis = await adminRedis(t);
    try {
      const index = keys.userSessions(a.tenant, 'u');
      await redis.pexpire(index, 5000);
      const again = await t.app.inject({
        method: 'POST',
        url: `/v1/sessions/${rotated.sessionId}/_rotate`,
        headers: a.auth,
      });
      const id2 = body<Session>(again).sessionId;
      expect(Number(await redis.zscore(index, id2))).toBe(Date.parse(s.expiresAt));
      const remaining = Date.parse(s.expiresAt) - Date.now();
      expect(await redis.pttl(index)).toBeGreaterThan(remaining + 50_000);
    } finally {
      redis.disconnect();
    }
    expectProblem(
      await t.app.inject({
        method: 'POST',
        url: `/v1/sessions/${s.sessionId}/_rotate`,
        headers: a.auth,
      }),
      404,
      'SESSION_NOT_FOUND',
    );
  });
});

describe('per-user index', () => {
  it("lists a user's sessions most recently active first, paged, never another user's", async () => {
    const a = await newTenant(t.deps, SCOPES);
    const s1 = await create(a, { userId: 'alice', metadata: { ip: '10.0.0.1' } });
    const s2 = await create(a, { userId: 'alice' });
    const b1 = await create(a, { userId: 'bob' });
    await sleep(5);
    await get(a, s1.sessionId, '?touch=true');
    const all = await list(a, 'alice');
    expect(all.total).toBe(2);
    expect(all.sessions.map((s) => s.sessionId)).toEqual([s1.sessionId, s2.sessionId]);
    expect(all.sessions[0]).toMatchObject({ metadata: { ip: '10.0.0.1' } });
    expect(all.sessions[0]).not.toHaveProperty('data');
    const first = await list(a, 'alice', '?limit=1');
    expect(first.sessions).toHaveLength(1);
    expect(first.cursor).toBe('1');
    const second = await list(a, 'alice', `?limit=1&cursor=${first.cursor}`);
    expect(second.sessions.map((s) => s.sessionId)).toEqual([s2.sessionId]);
    expect(second.cursor).toBeNull();
    expect((await list(a, 'bob')).sessions.map((s) => s.sessionId)).toEqual([b1.sessionId]);
    expect((await list(a, 'nobody')).total).toBe(0);
    expectProblem(
      await t.app.inject({
        method: 'GET',
        url: '/v1/users/alice/sessions?limit=0',
        headers: a.auth,
      }),
      400,
      'VALIDATION_FAILED',
    );
  });

  it('revokes all sessions of a user, or all but one; other users keep theirs', async () => {
    const a = await newTenant(t.deps, SCOPES);
    const s1 = await create(a, { userId: 'carol' });
    const s2 = await create(a, { userId: 'carol' });
    const s3 = await create(a, { userId: 'carol' });
    const other = await create(a, { userId: 'dave' });
    const revoke = (q: string) =>
      t.app.inject({ method: 'DELETE', url: `/v1/users/carol/sessions${q}`, headers: a.auth });
    const res = await revoke(`?except=${s2.sessionId}`);
    expect(res.statusCode, res.body).toBe(200);
    expect(body(res)).toEqual({ revoked: 2 });
    expectProblem(await get(a, s1.sessionId), 404, 'SESSION_NOT_FOUND');
    expectProblem(await get(a, s3.sessionId), 404, 'SESSION_NOT_FOUND');
    expect((await get(a, s2.sessionId)).statusCode).toBe(200);
    expect(body(await revoke(''))).toEqual({ revoked: 1 });
    expect(body(await revoke(''))).toEqual({ revoked: 0 });
    expect((await get(a, other.sessionId)).statusCode).toBe(200);
  });

  it('at SESSION_MAX_PER_USER, a new session evicts the least recently active one', async () => {
    const a = await newTenant(t.deps, SCOPES);
    // A few ms apart: equal last-activity times would be ordered by id.
    const s1 = await create(a, { userId: 'erin' });
    await sleep(3);
    const s2 = await create(a, { userId: 'erin' });
    await sleep(3);
    const s3 = await create(a, { userId: 'erin' });
    await sleep(5);
    await get(a, s1.sessionId, '?touch=true'); // s2 is now the least recently active
    const s4 = await create(a, { userId: 'erin' });
    expectProblem(await get(a, s2.sessionId), 404, 'SESSION_NOT_FOUND');
    for (const s of [s1, s3, s4]) expect((await get(a, s.sessionId)).statusCode).toBe(200);
    expect((await list(a, 'erin')).total).toBe(3);
  });
});

describe('isolation and scopes', () => {
  it("tenant B cannot read, change, rotate, delete or list tenant A's sessions", async () => {
    const a = await newTenant(t.deps, SCOPES);
    const b = await newTenant(t.deps, SCOPES);
    const s = await create(a, { userId: 'u', data: { secret: 1 } });
    expectProblem(await get(b, s.sessionId), 404, 'SESSION_NOT_FOUND');
    for (const [method, suffix, payload] of [
      ['PATCH', '', { data: { x: 1 } }],
      ['POST', '/_touch', undefined],
      ['POST', '/_rotate', undefined],
      ['DELETE', '', undefined],
    ] as const) {
      const res = await t.app.inject({
        method,
        url: `/v1/sessions/${s.sessionId}${suffix}`,
        headers: b.auth,
        ...(payload ? { payload } : {}),
      });
      expectProblem(res, 404, 'SESSION_NOT_FOUND');
    }
    expect((await list(b, 'u')).total).toBe(0);
    expect(
      body(await t.app.inject({ method: 'DELETE', url: '/v1/users/u/sessions', headers: b.auth })),
    ).toEqual({ revoked: 0 });
    expect(body<Session>(await get(a, s.sessionId)).data).toEqual({ secret: 1 });
  });

  it('a read-only key cannot write; a user-glob key is confined to its users', async () => {
    const a = await newTenant(t.deps, SCOPES);
    const s = await create(a, { userId: 'team-a-1' });
    const ro = await addKey(t.deps, a.tenant, ['session:read']);
    expect((await get(ro, s.sessionId)).statusCode).toBe(200);
    expectProblem(await get(ro, s.sessionId, '?touch=true'), 403, 'SCOPE_MISSING');
    expectProblem(
      await t.app.inject({
        method: 'DELETE',
        url: `/v1/sessions/${s.sessionId}`,
        headers: ro.auth,
      }),
      403,
      'SCOPE_MISSING',
    );
    const glob = await addKey(t.deps, a.tenant, [
      'session:read:team-a-*',
      'session:write:team-a-*',
    ]);
    expect((await list(glob, 'team-a-1')).total).toBe(1);
    expectProblem(
      await t.app.inject({ method: 'GET', url: '/v1/users/team-b-1/sessions', headers: glob.auth }),
      403,
      'SCOPE_MISSING',
    );
    expectProblem(
      await t.app.inject({
        method: 'POST',
        url: '/v1/sessions',
        headers: glob.auth,
        payload: { userId: 'team-b-1' },
      }),
      403,
      'SCOPE_MISSING',
    );
    expect(
      (
        await t.app.inject({
          method: 'POST',
          url: '/v1/sessions',
          headers: glob.auth,
          payload: { userId: 'team-a-2' },
        })
      ).statusCode,
    ).toBe(201);
    // By session id: the glob is checked against the session's user, read first.
    const mine = await get(glob, s.sessionId, '?touch=true');
    expect(mine.statusCode).toBe(200);
    expect(mine.json()).toMatchObject({ sessionId: s.sessionId, userId: 'team-a-1' });
  });

  it("a user-glob key gets the unknown-id 404 on every by-id route of another user's session, and changes nothing", async () => {
    const a = await newTenant(t.deps, SCOPES);
    const other = await create(a, { userId: 'team-b-1', data: { cart: ['sku-1'] } });
    const stored = keys.session(a.tenant, other.sessionId);
    // The hash holds the last activity (a) and the expiry (e): any touch or merge shows here.
    const before = await t.deps.redis.onMaster((r) => r.hgetall(stored));
    const glob = await addKey(t.deps, a.tenant, [
      'session:read:team-a-*',
      'session:write:team-a-*',
    ]);
    const unknown = 'A'.repeat(43);
    const byId = (id: string) => [
      { method: 'GET' as const, url: `/v1/sessions/${id}` },
      { method: 'GET' as const, url: `/v1/sessions/${id}?touch=true` },
      { method: 'PATCH' as const, url: `/v1/sessions/${id}`, payload: { data: { cart: null } } },
      { method: 'POST' as const, url: `/v1/sessions/${id}/_touch` },
      { method: 'POST' as const, url: `/v1/sessions/${id}/_rotate` },
      { method: 'DELETE' as const, url: `/v1/sessions/${id}` },
    ];
    for (const id of [other.sessionId, unknown]) {
      for (const req of byId(id)) {
        const res = await t.app.inject({ ...req, headers: glob.auth });
        // The same answer as for an id that does not exist: the key learns nothing.
        expectProblem(res, 404, 'SESSION_NOT_FOUND');
      }
    }
    expect(await t.deps.redis.onMaster((r) => r.hgetall(stored))).toEqual(before);
    // The owner's unrestricted key still has it, untouched.
    const res = await get(a, other.sessionId);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ data: { cart: ['sku-1'] } });

    // A glob on the read scope only: reads are confined, a touch needs session:write at all.
    const reader = await addKey(t.deps, a.tenant, ['session:read:team-b-*']);
    expect((await get(reader, other.sessionId)).statusCode).toBe(200);
    expectProblem(await get(reader, other.sessionId, '?touch=true'), 403, 'SCOPE_MISSING');
  });
});

describe('logs', () => {
  it('never carry a session id, even at debug level and on errors', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const config = parseConfig(testEnv({ LOG_LEVEL: 'debug' }));
    const deps = createDeps(config, pino({ level: 'debug' }, sink));
    const app = await buildApp(deps);
    await app.ready();
    try {
      await waitForRedis(deps);
      const a = await newTenant(deps, SCOPES);
      const res = await app.inject({
        method: 'POST',
        url: '/v1/sessions',
        headers: a.auth,
        payload: { userId: 'u', data: { x: 1 } },
      });
      const id = body<Session>(res).sessionId;
      for (const url of [
        `/v1/sessions/${id}`,
        `/v1/sessions/${id}?touch=true`,
        `/v1/sessions/${id}?touch=maybe`,
      ]) {
        await app.inject({ method: 'GET', url, headers: a.auth });
      }
      await app.inject({ method: 'POST', url: `/v1/sessions/${id}/_rotate`, headers: a.auth });
      await app.inject({ method: 'GET', url: `/v1/sessions/${id}`, headers: a.auth });
      expect(lines.length).toBeGreaterThan(5);
      const leaked = lines.filter((l) => l.includes(id));
      expect(leaked).toEqual([]);
    } finally {
      await app.close();
      await deps.close();
    }
  });
});

for (const [name, scope, wrongScope, build] of [
  [
    'POST /v1/sessions',
    'session:write',
    'session:read',
    (o: TestTenant) => ({
      method: 'POST' as const,
      url: '/v1/sessions',
      headers: o.auth,
      payload: { userId: 'u' },
    }),
  ],
  [
    'GET /v1/sessions/{id}',
    'session:read',
    'cache:read',
    async (o: TestTenant) => {
      const writer = await addKey(t.deps, o.tenant, ['session:write']);
      const s = await create(writer, { userId: 'u' });
      return { method: 'GET' as const, url: `/v1/sessions/${s.sessionId}`, headers: o.auth };
    },
  ],
  [
    'GET /v1/users/{userId}/sessions',
    'session:read',
    'session:write',
    (o: TestTenant) => ({
      method: 'GET' as const,
      url: '/v1/users/u/sessions',
      headers: o.auth,
    }),
  ],
] as const) {
  describe(name, () => {
    runCommonRouteTests({ app: () => t, scope, wrongScope, request: build });
  });
}

// The routes addressed by session id that change it: each on a fresh session of the owner.
for (const [method, suffix, payload] of [
  ['PATCH', '', { data: { a: 1 } }],
  ['POST', '/_touch', undefined],
  ['POST', '/_rotate', undefined],
  ['DELETE', '', undefined],
] as const) {
  describe(`${method} /v1/sessions/{id}${suffix}`, () => {
    runCommonRouteTests({
      app: () => t,
      scope: 'session:write',
      wrongScope: 'session:read',
      request: async (o) => {
        const writer = await addKey(t.deps, o.tenant, ['session:write']);
        const s = await create(writer, { userId: 'u' });
        return {
          method,
          url: `/v1/sessions/${s.sessionId}${suffix}`,
          headers: o.auth,
          ...(payload ? { payload } : {}),
        };
      },
    });
  });
}

describe('DELETE /v1/users/{userId}/sessions', () => {
  runCommonRouteTests({
    app: () => t,
    scope: 'session:write',
    wrongScope: 'session:read',
    request: (o) => ({ method: 'DELETE', url: '/v1/users/u/sessions', headers: o.auth }),
  });
});
