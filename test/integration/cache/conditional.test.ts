/** ETags and conditional requests, TTL changes (PATCH) and persistence. */
import { describe, expect, it } from 'vitest';
import { body, expectProblem, newTenant, useTestApp } from '../../harness/app.js';
import { runCommonRouteTests } from '../../harness/common-route-tests.js';

const t = useTestApp();
const persist = useTestApp({ env: { CACHE_ALLOW_PERSIST: 'true' } });
const RW = ['cache:read', 'cache:write'];
const url = (key: string) => `/v1/cache/${encodeURIComponent(key)}`;

async function put(
  app: typeof t,
  auth: Record<string, string>,
  key: string,
  payload: unknown,
  headers: Record<string, string> = {},
) {
  return app.app.inject({
    method: 'PUT',
    url: url(key),
    headers: { ...auth, ...headers },
    payload: payload as Record<string, unknown>,
  });
}

describe('GET with If-None-Match', () => {
  describe('304', () => {
    it('answers 304 without a body when a listed ETag matches (weak tags and * too)', async () => {
      const a = await newTenant(t.deps, RW);
      const etag = String(body(await put(t, a.auth, 'k', { value: { v: 1 } })).etag);
      for (const header of [`"${etag}"`, `W/"${etag}"`, `"other", "${etag}"`, '*']) {
        const res = await t.app.inject({
          method: 'GET',
          url: url('k'),
          headers: { ...a.auth, 'if-none-match': header },
        });
        expect(res.statusCode, header).toBe(304);
        expect(res.body).toBe('');
        expect(res.headers.etag).toBe(`"${etag}"`);
      }
    });
  });

  describe('200', () => {
    it('answers 200 when no ETag matches', async () => {
      const a = await newTenant(t.deps, RW);
      await put(t, a.auth, 'k', { value: 1 });
      const res = await t.app.inject({
        method: 'GET',
        url: url('k'),
        headers: { ...a.auth, 'if-none-match': '"nope"' },
      });
      expect(res.statusCode).toBe(200);
    });
  });
});

describe('PUT with If-Match / If-None-Match', () => {
  describe('200 / 201', () => {
    it('If-Match with the current ETag replaces; If-None-Match: * creates', async () => {
      const a = await newTenant(t.deps, RW);
      const created = await put(t, a.auth, 'c', { value: 1 }, { 'if-none-match': '*' });
      expect(created.statusCode).toBe(201);
      const etag = String(body(created).etag);
      const swapped = await put(t, a.auth, 'c', { value: 2 }, { 'if-match': `"${etag}"` });
      expect(swapped.statusCode).toBe(200);
      expect(
        body(await t.app.inject({ method: 'GET', url: url('c'), headers: a.auth })).value,
      ).toBe(2);
    });
  });

  describe('412', () => {
    it('a stale If-Match, an If-Match on a missing key, and If-None-Match: * on a present key change nothing', async () => {
      const a = await newTenant(t.deps, RW);
      await put(t, a.auth, 'x', { value: 'original' });
      expectProblem(
        await put(t, a.auth, 'x', { value: 'lost' }, { 'if-match': '"not-the-etag"' }),
        412,
        'PRECONDITION_FAILED',
      );
      expectProblem(
        await put(t, a.auth, 'x', { value: 'lost' }, { 'if-none-match': '*' }),
        412,
        'PRECONDITION_FAILED',
      );
      expectProblem(
        await put(t, a.auth, 'x', { value: 'lost' }, { 'if-match': 'W/"weak"' }),
        412,
        'PRECONDITION_FAILED',
      );
      expectProblem(
        await put(t, a.auth, 'absent', { value: 'lost' }, { 'if-match': '"any"' }),
        412,
        'PRECONDITION_FAILED',
      );
      expect(
        body(await t.app.inject({ method: 'GET', url: url('x'), headers: a.auth })).value,
      ).toBe('original');
      expectProblem(
        await t.app.inject({ method: 'GET', url: url('absent'), headers: a.auth }),
        404,
        'CACHE_MISS',
      );
    });

    it('50 concurrent compare-and-set writers on one ETag: exactly one wins', async () => {
      const a = await newTenant(t.deps, RW);
      const etag = String(body(await put(t, a.auth, 'cas', { value: 0 })).etag);
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          put(t, a.auth, 'cas', { value: i + 1 }, { 'if-match': `"${etag}"` }),
        ),
      );
      const winners = results.filter((r) => r.statusCode === 200);
      expect(winners).toHaveLength(1);
      expect(results.filter((r) => r.statusCode === 412)).toHaveLength(49);
      const stored = body(await t.app.inject({ method: 'GET', url: url('cas'), headers: a.auth }));
      expect(stored.etag).toBe(body(winners[0]!).etag);
    });
  });

  describe('400', () => {
    it('If-None-Match on PUT accepts only *', async () => {
      const a = await newTenant(t.deps, RW);
      const p = expectProblem(
        await put(t, a.auth, 'y', { value: 1 }, { 'if-none-match': '"abc"' }),
        400,
        'VALIDATION_FAILED',
      );
      expect(p.errors?.[0]?.field).toBe('headers.if-none-match');
    });
  });
});

describe('DELETE with If-Match', () => {
  it('deletes only with the current ETag (412 otherwise)', async () => {
    const a = await newTenant(t.deps, RW);
    const etag = String(body(await put(t, a.auth, 'd', { value: 1 })).etag);
    expectProblem(
      await t.app.inject({
        method: 'DELETE',
        url: url('d'),
        headers: { ...a.auth, 'if-match': '"old"' },
      }),
      412,
      'PRECONDITION_FAILED',
    );
    expect((await t.app.inject({ method: 'GET', url: url('d'), headers: a.auth })).statusCode).toBe(
      200,
    );
    expect(
      (
        await t.app.inject({
          method: 'DELETE',
          url: url('d'),
          headers: { ...a.auth, 'if-match': `"${etag}"` },
        })
      ).statusCode,
    ).toBe(204);
    expect((await t.app.inject({ method: 'GET', url: url('d'), headers: a.auth })).statusCode).toBe(
      404,
    );
  });
});

describe('PATCH /v1/cache/{key} (TTL)', () => {
  runCommonRouteTests({
    app: () => t,
    scope: 'cache:write',
    wrongScope: 'cache:read',
    async request(owner) {
      await put(t, owner.auth, 'p', { value: 1 });
      return { method: 'PATCH', url: url('p'), headers: owner.auth, payload: { ttl: 100 } };
    },
    async crossTenant(owner, other) {
      await put(t, owner.auth, 'mine', { value: 1, ttl: 50 });
      expectProblem(
        await t.app.inject({
          method: 'PATCH',
          url: url('mine'),
          headers: other.auth,
          payload: { ttl: 5000 },
        }),
        404,
        'CACHE_MISS',
      );
      expect(
        body(await t.app.inject({ method: 'GET', url: url('mine'), headers: owner.auth })).ttl,
      ).toBeLessThanOrEqual(50);
    },
  });

  describe('200', () => {
    it('changes the TTL without changing the value or its ETag', async () => {
      const a = await newTenant(t.deps, RW);
      const first = body(await put(t, a.auth, 'p', { value: { big: 'x'.repeat(3000) }, ttl: 30 }));
      const res = await t.app.inject({
        method: 'PATCH',
        url: url('p'),
        headers: a.auth,
        payload: { ttl: 900, staleTtl: 100 },
      });
      expect(res.statusCode).toBe(200);
      expect(body(res)).toMatchObject({ key: 'p', ttl: 900, staleTtl: 100, etag: first.etag });
      const got = body<{ ttl: number; staleTtl: number; value: { big: string } }>(
        await t.app.inject({ method: 'GET', url: url('p'), headers: a.auth }),
      );
      expect(got.ttl).toBeGreaterThan(895);
      expect(got.staleTtl).toBe(100);
      expect(got.value.big).toHaveLength(3000);
      const pttl = await t.deps.redis.primary.pttl(`${a.tenant}:cache:p`);
      expect(pttl).toBeGreaterThan(995_000);
    });
  });

  describe('400', () => {
    it('refuses ttl null unless CACHE_ALLOW_PERSIST, and a missing ttl', async () => {
      const a = await newTenant(t.deps, RW);
      await put(t, a.auth, 'q', { value: 1 });
      const p = expectProblem(
        await t.app.inject({
          method: 'PATCH',
          url: url('q'),
          headers: a.auth,
          payload: { ttl: null },
        }),
        400,
        'VALIDATION_FAILED',
      );
      expect(p.errors?.[0]).toMatchObject({ field: 'body.ttl', limit: 'CACHE_ALLOW_PERSIST' });
      expectProblem(
        await t.app.inject({ method: 'PATCH', url: url('q'), headers: a.auth, payload: {} }),
        400,
        'VALIDATION_FAILED',
      );
    });
  });

  describe('404', () => {
    it('answers CACHE_MISS for a missing key', async () => {
      const a = await newTenant(t.deps, RW);
      expectProblem(
        await t.app.inject({
          method: 'PATCH',
          url: url('none'),
          headers: a.auth,
          payload: { ttl: 5 },
        }),
        404,
        'CACHE_MISS',
      );
    });
  });
});

describe('ttl: null (CACHE_ALLOW_PERSIST)', () => {
  it('is refused by default, naming the variable', async () => {
    const a = await newTenant(t.deps, RW);
    const p = expectProblem(
      await put(t, a.auth, 'forever', { value: 1, ttl: null }),
      400,
      'VALIDATION_FAILED',
    );
    expect(p.errors?.[0]).toMatchObject({ field: 'body.ttl', limit: 'CACHE_ALLOW_PERSIST' });
  });

  it('when allowed, stores without expiry (ttl null on read) and PATCH can make it expire again', async () => {
    const a = await newTenant(persist.deps, RW);
    expect((await put(persist, a.auth, 'forever', { value: 1, ttl: null })).statusCode).toBe(201);
    expect(
      body(await persist.app.inject({ method: 'GET', url: url('forever'), headers: a.auth })).ttl,
    ).toBeNull();
    expect(await persist.deps.redis.primary.pttl(`${a.tenant}:cache:forever`)).toBe(-1);
    await persist.app.inject({
      method: 'PATCH',
      url: url('forever'),
      headers: a.auth,
      payload: { ttl: 60 },
    });
    expect(await persist.deps.redis.primary.pttl(`${a.tenant}:cache:forever`)).toBeGreaterThan(
      55_000,
    );
  });
});
