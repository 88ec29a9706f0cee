/**
 * Idempotency keys against real Redis: begin / complete / replay / release by status, 50
 * concurrent begins, fingerprint reuse, lock expiry and take-over, record expiry, limits and bad
 * input, per-API-key and per-tenant scoping, durable writes.
 */
import { describe, expect, it } from 'vitest';
import { keys } from '../../../src/redis/keys.js';
import {
  type TestTenant,
  addKey,
  adminRedis,
  body,
  buildTestApp,
  expectProblem,
  newTenant,
  useTestApp,
} from '../../harness/app.js';
import { runCommonRouteTests } from '../../harness/common-route-tests.js';

const t = useTestApp({ env: { IDEMPOTENCY_MAX_RESPONSE_BYTES: '1000' } });
const USE = ['idempotency:use'];

type Begin = { state: string; token?: string; lockExpiresAt?: string; response?: unknown };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let n = 0;
const freshKey = () => `order-${Date.now()}-${++n}`;

function begin(owner: TestTenant, key: string, payload: Record<string, unknown> = {}, app = t) {
  return app.app.inject({
    method: 'POST',
    url: `/v1/idempotency/${encodeURIComponent(key)}/_begin`,
    headers: owner.auth,
    payload,
  });
}

function complete(owner: TestTenant, key: string, payload: Record<string, unknown>, app = t) {
  return app.app.inject({
    method: 'PUT',
    url: `/v1/idempotency/${encodeURIComponent(key)}`,
    headers: owner.auth,
    payload,
  });
}

function release(owner: TestTenant, key: string, token: string) {
  return t.app.inject({
    method: 'DELETE',
    url: `/v1/idempotency/${encodeURIComponent(key)}?token=${encodeURIComponent(token)}`,
    headers: owner.auth,
  });
}

const RESPONSE = {
  status: 201,
  headers: { location: '/payments/pay_1' },
  body: { id: 'pay_1', amount: 1250, tags: ['a', null] },
};

describe('begin, complete, replay', () => {
  it('the first caller starts; after completion every caller gets the stored response', async () => {
    const a = await newTenant(t.deps, USE);
    const key = freshKey();
    const first = await begin(a, key, { fingerprint: 'fp1' });
    expect(first.statusCode, first.body).toBe(201);
    const started = body<Begin>(first);
    expect(started.state).toBe('started');
    expect(started.token).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(Date.parse(started.lockExpiresAt ?? '')).toBeGreaterThan(Date.now() + 50_000);

    const done = await complete(a, key, { token: started.token, response: RESPONSE });
    expect(done.statusCode, done.body).toBe(200);
    expect(body(done)).toEqual({ state: 'completed' });

    const replay = await begin(a, key, { fingerprint: 'fp1' });
    expect(replay.statusCode).toBe(200);
    expect(body(replay)).toEqual({ state: 'completed', response: RESPONSE });
  });

  it('50 concurrent begins: exactly one 201, the rest 409; after PUT all 200 with the same response', async () => {
    const a = await newTenant(t.deps, USE);
    const key = freshKey();
    const results = await Promise.all(Array.from({ length: 50 }, () => begin(a, key)));
    const started = results.filter((r) => r.statusCode === 201);
    expect(started).toHaveLength(1);
    for (const r of results.filter((x) => x.statusCode !== 201)) {
      expectProblem(r, 409, 'IDEMPOTENCY_IN_PROGRESS');
      expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    }
    const token = body<Begin>(started[0] as (typeof results)[number]).token;
    expect((await complete(a, key, { token, response: RESPONSE })).statusCode).toBe(200);
    const replays = await Promise.all(Array.from({ length: 50 }, () => begin(a, key)));
    for (const r of replays) {
      expect(r.statusCode).toBe(200);
      expect(body(r)).toEqual({ state: 'completed', response: RESPONSE });
    }
  });

  it('422 when the key is reused with another fingerprint (while held and after completion)', async () => {
    const a = await newTenant(t.deps, USE);
    const key = freshKey();
    const token = body<Begin>(await begin(a, key, { fingerprint: 'fp1' })).token;
    expectProblem(await begin(a, key, { fingerprint: 'fp2' }), 422, 'IDEMPOTENCY_KEY_REUSED');
    expectProblem(await begin(a, key), 422, 'IDEMPOTENCY_KEY_REUSED');
    await complete(a, key, { token, response: RESPONSE });
    expectProblem(await begin(a, key, { fingerprint: 'fp2' }), 422, 'IDEMPOTENCY_KEY_REUSED');
    expect((await begin(a, key, { fingerprint: 'fp1' })).statusCode).toBe(200);
  });

  it('completion is write-once: the holder may repeat its PUT, any other token gets 409', async () => {
    const a = await newTenant(t.deps, USE);
    const key = freshKey();
    const token = body<Begin>(await begin(a, key)).token as string;
    expectProblem(
      await complete(a, key, { token: 'not-the-token', response: RESPONSE }),
      409,
      'IDEMPOTENCY_TOKEN_MISMATCH',
    );
    expect((await complete(a, key, { token, response: RESPONSE })).statusCode).toBe(200);
    // A retried PUT (its first answer was lost) is accepted and changes nothing.
    const again = await complete(a, key, { token, response: { status: 500 } });
    expect(again.statusCode).toBe(200);
    expect(body(await begin(a, key))).toEqual({ state: 'completed', response: RESPONSE });
    expectProblem(
      await complete(a, key, { token: 'other', response: RESPONSE }),
      409,
      'IDEMPOTENCY_TOKEN_MISMATCH',
    );
    expectProblem(
      await complete(a, freshKey(), { token, response: RESPONSE }),
      404,
      'IDEMPOTENCY_KEY_NOT_FOUND',
    );
  });
});

describe('the stored record', () => {
  it('is one string; a fingerprint and a response holding the separator round-trip', async () => {
    const a = await newTenant(t.deps, USE);
    const key = freshKey();
    const record = keys.idempotency(a.tenant, a.keyId, key);
    // Separators, a newline and a two-byte character: the stored length counts bytes.
    const fingerprint = 'sha256:a|b|7|\n|é';
    const response = { status: 200, body: { note: '|i1|s|x|1|2|', lines: 'a\nb' } };
    const started = body<Begin>(await begin(a, key, { fingerprint, lockTtl: 30, ttl: 600 }));
    const redis = await adminRedis(t);
    try {
      expect(await redis.type(record)).toBe('string');
      const pttl = await redis.pttl(record);
      expect(pttl).toBeGreaterThan(590_000);
      expect(pttl).toBeLessThanOrEqual(600_000);
      const stored = String(await redis.get(record));
      expect(stored).toMatch(
        new RegExp(`^i1\\|s\\|${started.token}\\|\\d{13}\\|\\d{13}\\|600000\\|\\|17\\|`),
      );
      expect(stored.endsWith(fingerprint)).toBe(true);

      expectProblem(
        await begin(a, key, { fingerprint: 'sha256:a|b' }),
        422,
        'IDEMPOTENCY_KEY_REUSED',
      );
      expectProblem(await begin(a, key, { fingerprint }), 409, 'IDEMPOTENCY_IN_PROGRESS');
      const done = await complete(a, key, { token: started.token, response });
      expect(done.statusCode, done.body).toBe(200);
      expect(await redis.type(record)).toBe('string');
      const replay = await begin(a, key, { fingerprint });
      expect(replay.statusCode).toBe(200);
      expect(body(replay)).toEqual({ state: 'completed', response });
    } finally {
      redis.disconnect();
    }
  });

  it('a record an earlier version stored as a hash is honoured, then rewritten as a string', async () => {
    const a = await newTenant(t.deps, USE);
    const redis = await adminRedis(t);
    const legacy = async (key: string, fields: Record<string, string>) => {
      const record = keys.idempotency(a.tenant, a.keyId, key);
      await redis.hset(record, fields);
      await redis.pexpire(record, 600_000);
      return record;
    };
    const now = Date.now();
    const held = { st: 'started', f: 'fp', c: String(now), ttl: '600000' };
    try {
      // Held by a live lock: another caller waits; the holder completes it.
      const k1 = freshKey();
      const r1 = await legacy(k1, { ...held, t: 'legacy-token-1', l: String(now + 60_000) });
      expectProblem(await begin(a, k1, { fingerprint: 'fp' }), 409, 'IDEMPOTENCY_IN_PROGRESS');
      expectProblem(await begin(a, k1, { fingerprint: 'other' }), 422, 'IDEMPOTENCY_KEY_REUSED');
      const done = await complete(a, k1, { token: 'legacy-token-1', response: RESPONSE });
      expect(done.statusCode, done.body).toBe(200);
      expect(await redis.type(r1)).toBe('string');
      expect(body(await begin(a, k1, { fingerprint: 'fp' }))).toEqual({
        state: 'completed',
        response: RESPONSE,
      });

      // Completed: replayed, never released.
      const k2 = freshKey();
      await legacy(k2, {
        ...held,
        st: 'completed',
        t: 'legacy-token-2',
        r: JSON.stringify(RESPONSE),
        ca: String(now),
      });
      expect(body(await begin(a, k2, { fingerprint: 'fp' }))).toEqual({
        state: 'completed',
        response: RESPONSE,
      });
      expectProblem(await release(a, k2, 'legacy-token-2'), 409, 'CONFLICT');

      // A dead holder's lock: taken over (the record's ttl kept), the old token is void.
      const k3 = freshKey();
      const r3 = await legacy(k3, { ...held, t: 'legacy-token-3', l: String(now - 1) });
      const taken = await begin(a, k3, { fingerprint: 'fp' });
      expect(taken.statusCode, taken.body).toBe(201);
      expect(await redis.type(r3)).toBe('string');
      expect(await redis.pttl(r3)).toBeGreaterThan(590_000);
      expectProblem(
        await complete(a, k3, { token: 'legacy-token-3', response: RESPONSE }),
        409,
        'IDEMPOTENCY_TOKEN_MISMATCH',
      );

      // Released by its holder.
      const k4 = freshKey();
      const r4 = await legacy(k4, { ...held, t: 'legacy-token-4', l: String(now + 60_000) });
      expect((await release(a, k4, 'legacy-token-4')).statusCode).toBe(204);
      expect(await redis.exists(r4)).toBe(0);
    } finally {
      redis.disconnect();
    }
  });
});

describe('release and expiry', () => {
  it('release lets a retry begin again; wrong token 409; a completed key cannot be released', async () => {
    const a = await newTenant(t.deps, USE);
    const key = freshKey();
    const token = body<Begin>(await begin(a, key)).token as string;
    expectProblem(await release(a, key, 'wrong'), 409, 'IDEMPOTENCY_TOKEN_MISMATCH');
    expectProblem(await begin(a, key), 409, 'IDEMPOTENCY_IN_PROGRESS');
    expect((await release(a, key, token)).statusCode).toBe(204);
    expectProblem(await release(a, key, token), 404, 'IDEMPOTENCY_KEY_NOT_FOUND');
    const again = await begin(a, key);
    expect(again.statusCode).toBe(201);
    const token2 = body<Begin>(again).token as string;
    await complete(a, key, { token: token2, response: RESPONSE });
    expectProblem(await release(a, key, token2), 409, 'CONFLICT');
    expectProblem(
      await t.app.inject({
        method: 'DELETE',
        url: `/v1/idempotency/${key}`,
        headers: a.auth,
      }),
      400,
      'VALIDATION_FAILED',
    );
  });

  it("a dead holder's lock expires after lockTtl; the next caller takes over and the old token is void", async () => {
    const a = await newTenant(t.deps, USE);
    const key = freshKey();
    const old = body<Begin>(await begin(a, key, { lockTtl: 1 })).token;
    expectProblem(await begin(a, key), 409, 'IDEMPOTENCY_IN_PROGRESS');
    await sleep(1100);
    const taken = await begin(a, key);
    expect(taken.statusCode, taken.body).toBe(201);
    const token = body<Begin>(taken).token;
    expect(token).not.toBe(old);
    expectProblem(
      await complete(a, key, { token: old, response: RESPONSE }),
      409,
      'IDEMPOTENCY_TOKEN_MISMATCH',
    );
    expect((await complete(a, key, { token, response: RESPONSE })).statusCode).toBe(200);
    const m = await t.deps.metrics.registry.getSingleMetricAsString(
      'gateway_idempotency_outcomes_total',
    );
    expect(m).toMatch(/outcome="taken_over"} [1-9]/);
  });

  it('a completed record expires after its ttl; the key can then be begun afresh', async () => {
    const a = await newTenant(t.deps, USE);
    const key = freshKey();
    const token = body<Begin>(await begin(a, key, { ttl: 1, lockTtl: 5 })).token;
    await complete(a, key, { token, response: RESPONSE });
    expect((await begin(a, key)).statusCode).toBe(200);
    await sleep(1100);
    expect((await begin(a, key)).statusCode).toBe(201);
  });
});

describe('limits and bad input', () => {
  it('refuses bad bodies and keys with a 400 naming the field, and stores nothing', async () => {
    const a = await newTenant(t.deps, USE);
    const key = freshKey();
    for (const [payload, field] of [
      [{ lockTtl: 0 }, 'body.lockTtl'],
      [{ lockTtl: 3601 }, 'body.lockTtl'],
      [{ ttl: 0 }, 'body.ttl'],
      [{ ttl: 8 * 24 * 3600 }, 'body.ttl'],
      [{ fingerprint: 'x'.repeat(513) }, 'body.fingerprint'],
      [{ other: 1 }, 'body'],
    ] as const) {
      const p = expectProblem(await begin(a, key, payload), 400, 'VALIDATION_FAILED');
      expect(
        p.errors?.some((e) => e.field.startsWith(field)),
        JSON.stringify(p),
      ).toBe(true);
    }
    expectProblem(await begin(a, 'bad\u0001key'), 400, 'VALIDATION_FAILED');
    expectProblem(await begin(a, 'k'.repeat(1025)), 400, 'VALIDATION_FAILED');
    const token = body<Begin>(await begin(a, key)).token;
    for (const payload of [
      { token, response: { status: 99 } },
      { token, response: { status: 200, headers: { a: 1 } } },
      { token, response: { body: 1 } },
      { token: '', response: RESPONSE },
      { response: RESPONSE },
    ]) {
      expectProblem(await complete(a, key, payload), 400, 'VALIDATION_FAILED');
    }
    const big = await complete(a, key, {
      token,
      response: { status: 200, body: 'x'.repeat(2000) },
    });
    expect(expectProblem(big, 413, 'VALUE_TOO_LARGE').errors?.[0]?.limit).toBe(
      'IDEMPOTENCY_MAX_RESPONSE_BYTES',
    );
    // Nothing was stored: the key is still held, and completes normally.
    expectProblem(await begin(a, key), 409, 'IDEMPOTENCY_IN_PROGRESS');
    expect((await complete(a, key, { token, response: RESPONSE })).statusCode).toBe(200);
  });
});

describe('scoping', () => {
  it("two API keys of one tenant never see each other's records; tenants are isolated", async () => {
    const a = await newTenant(t.deps, USE);
    const a2 = await addKey(t.deps, a.tenant, USE);
    const b = await newTenant(t.deps, USE);
    const key = freshKey();
    const token = body<Begin>(await begin(a, key)).token;
    await complete(a, key, { token, response: RESPONSE });
    expect((await begin(a2, key)).statusCode).toBe(201);
    expect((await begin(b, key)).statusCode).toBe(201);
    expectProblem(
      await complete(b, key, { token, response: RESPONSE }),
      409,
      'IDEMPOTENCY_TOKEN_MISMATCH',
    );
  });

  it('IDEMPOTENCY_KEY_SCOPE=tenant shares records between the keys of a tenant', async () => {
    const shared = await buildTestApp({ env: { IDEMPOTENCY_KEY_SCOPE: 'tenant' } });
    try {
      const a = await newTenant(shared.deps, USE);
      const a2 = await addKey(shared.deps, a.tenant, USE);
      const key = freshKey();
      const token = body<Begin>(await begin(a, key, {}, shared)).token;
      expectProblem(await begin(a2, key, {}, shared), 409, 'IDEMPOTENCY_IN_PROGRESS');
      await complete(a, key, { token, response: RESPONSE }, shared);
      expect(body(await begin(a2, key, {}, shared))).toEqual({
        state: 'completed',
        response: RESPONSE,
      });
      const b = await newTenant(shared.deps, USE);
      expect((await begin(b, key, {}, shared)).statusCode).toBe(201);
    } finally {
      await shared.close();
    }
  });

  it('a key-glob scope confines a key to matching idempotency keys', async () => {
    const a = await newTenant(t.deps, ['idempotency:use:pay-*']);
    expect((await begin(a, `pay-${freshKey()}`)).statusCode).toBe(201);
    expectProblem(await begin(a, `ship-${freshKey()}`), 403, 'SCOPE_MISSING');
  });

  it('durable begin and complete answer once a replica confirms', async () => {
    const a = await newTenant(t.deps, USE);
    const key = freshKey();
    const res = await begin(a, key, { durable: true });
    expect(res.statusCode, res.body).toBe(201);
    const token = body<Begin>(res).token;
    const done = await complete(a, key, { token, response: RESPONSE, durable: true });
    expect(done.statusCode, done.body).toBe(200);
    const m = await t.deps.metrics.registry.getSingleMetricAsString('gateway_durable_writes_total');
    expect(m).toMatch(/module="idempotency",result="confirmed"} [2-9]/);
  });
});

describe('POST /v1/idempotency/{key}/_begin', () => {
  runCommonRouteTests({
    app: () => t,
    scope: 'idempotency:use',
    wrongScope: 'session:write',
    request: (o) => ({
      method: 'POST',
      url: `/v1/idempotency/${freshKey()}/_begin`,
      headers: o.auth,
      payload: {},
    }),
  });
});

describe('PUT /v1/idempotency/{key}', () => {
  runCommonRouteTests({
    app: () => t,
    scope: 'idempotency:use',
    wrongScope: 'cache:write',
    request: async (o) => {
      const key = freshKey();
      const token = body<Begin>(await begin(o, key)).token;
      return {
        method: 'PUT',
        url: `/v1/idempotency/${key}`,
        headers: o.auth,
        payload: { token, response: RESPONSE },
      };
    },
  });
});

describe('DELETE /v1/idempotency/{key}', () => {
  runCommonRouteTests({
    app: () => t,
    scope: 'idempotency:use',
    wrongScope: 'session:read',
    request: async (o) => {
      const key = freshKey();
      const token = body<Begin>(await begin(o, key)).token as string;
      return {
        method: 'DELETE',
        url: `/v1/idempotency/${key}?token=${token}`,
        headers: o.auth,
      };
    },
  });
});
