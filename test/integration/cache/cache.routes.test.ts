import { describe, expect, it } from 'vitest';
import { addKey, body, useTestApp, expectProblem, newTenant } from '../../harness/app.js';
import { runCommonRouteTests } from '../../harness/common-route-tests.js';

const t = useTestApp();

const RW = ['cache:read', 'cache:write'];
const url = (key: string) => `/v1/cache/${encodeURIComponent(key)}`;

async function put(auth: { authorization: string }, key: string, payload: unknown) {
  return t.app.inject({
    method: 'PUT',
    url: url(key),
    headers: auth,
    payload: payload as Record<string, unknown>,
  });
}

describe('GET /v1/cache/{key}', () => {
  runCommonRouteTests({
    app: () => t,
    scope: 'cache:read',
    wrongScope: 'cache:write',
    async request(owner) {
      const writer = await addKey(t.deps, owner.tenant, ['cache:write']);
      expect((await put(writer.auth, 'k', { value: 1 })).statusCode).toBe(201);
      return { method: 'GET', url: url('k'), headers: owner.auth };
    },
    async crossTenant(owner, other) {
      await put(owner.auth, 'secret', { value: 'owner-only' });
      expectProblem(
        await t.app.inject({ method: 'GET', url: url('secret'), headers: other.auth }),
        404,
        'CACHE_MISS',
      );
    },
  });

  describe('200', () => {
    it('returns the value byte for byte, with ttl and ETag', async () => {
      const a = await newTenant(t.deps, RW);
      const value = { n: 1.5, s: 'é€𝄞', nested: [true, null, { deep: 'x' }] };
      await put(a.auth, 'k1', { value, ttl: 120 });
      const res = await t.app.inject({ method: 'GET', url: url('k1'), headers: a.auth });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
      const b = body<{ key: string; value: unknown; ttl: number; etag: string }>(res);
      expect(b.key).toBe('k1');
      expect(b.value).toEqual(JSON.parse(JSON.stringify(value)));
      expect(b.ttl).toBeGreaterThan(115);
      expect(b.ttl).toBeLessThanOrEqual(120);
      expect(res.headers.etag).toBe(`"${b.etag}"`);
    });

    it('stores scalars, null and strings that look like JSON', async () => {
      const a = await newTenant(t.deps, RW);
      for (const [i, v] of [0, -1.25, 'text', '{"not":"parsed"}', null, false, [], {}].entries()) {
        await put(a.auth, `s${i}`, { value: v });
        const res = await t.app.inject({ method: 'GET', url: url(`s${i}`), headers: a.auth });
        expect(body(res).value).toEqual(v);
      }
    });

    it('uses CACHE_DEFAULT_TTL_SECONDS when no ttl is given', async () => {
      const a = await newTenant(t.deps, RW);
      await put(a.auth, 'd', { value: 1 });
      const res = await t.app.inject({ method: 'GET', url: url('d'), headers: a.auth });
      expect(body(res).ttl).toBeGreaterThan(t.config.cache.defaultTtlSeconds - 5);
    });

    it('honours a key-glob scope: cache:read:ef:* reads ef:… keys', async () => {
      const a = await newTenant(t.deps, RW);
      await put(a.auth, 'ef:1', { value: 1 });
      const narrow = await addKey(t.deps, a.tenant, ['cache:read:ef:*']);
      expect(
        (await t.app.inject({ method: 'GET', url: url('ef:1'), headers: narrow.auth })).statusCode,
      ).toBe(200);
    });

    it('echoes X-Request-Id', async () => {
      const a = await newTenant(t.deps, RW);
      await put(a.auth, 'r', { value: 1 });
      const res = await t.app.inject({
        method: 'GET',
        url: url('r'),
        headers: { ...a.auth, 'x-request-id': 'req-123' },
      });
      expect(res.headers['x-request-id']).toBe('req-123');
    });
  });

  describe('403', () => {
    it('refuses a key whose glob does not cover the key', async () => {
      const a = await newTenant(t.deps, RW);
      await put(a.auth, 'other:1', { value: 1 });
      const narrow = await addKey(t.deps, a.tenant, ['cache:read:ef:*']);
      const p = expectProblem(
        await t.app.inject({ method: 'GET', url: url('other:1'), headers: narrow.auth }),
        403,
        'SCOPE_MISSING',
      );
      expect(p.errors?.[0]?.field).toBe('path.key');
    });
  });

  describe('404', () => {
    it('is a CACHE_MISS problem for an absent key', async () => {
      const a = await newTenant(t.deps, RW);
      expectProblem(
        await t.app.inject({ method: 'GET', url: url('nope'), headers: a.auth }),
        404,
        'CACHE_MISS',
      );
    });

    it('is a CACHE_MISS problem once the TTL passed', async () => {
      const a = await newTenant(t.deps, RW);
      await put(a.auth, 'short', { value: 1, ttl: 1 });
      await new Promise((r) => setTimeout(r, 1100));
      expectProblem(
        await t.app.inject({ method: 'GET', url: url('short'), headers: a.auth }),
        404,
        'CACHE_MISS',
      );
    });
  });
});

describe('PUT /v1/cache/{key}', () => {
  runCommonRouteTests({
    app: () => t,
    scope: 'cache:write',
    wrongScope: 'cache:read',
    request: (owner) => ({
      method: 'PUT',
      url: url('k'),
      headers: owner.auth,
      payload: { value: 1 },
    }),
    async crossTenant(owner, other) {
      await put(owner.auth, 'shared-name', { value: 'owner' });
      await put(other.auth, 'shared-name', { value: 'other' });
      const res = await t.app.inject({
        method: 'GET',
        url: url('shared-name'),
        headers: owner.auth,
      });
      expect(body(res).value).toBe('owner');
    },
  });

  describe('201 / 200', () => {
    it('answers 201 when created and 200 when replaced, with the new ETag', async () => {
      const a = await newTenant(t.deps, RW);
      const first = await put(a.auth, 'x', { value: { v: 1 }, ttl: 60 });
      expect(first.statusCode).toBe(201);
      expect(body(first)).toMatchObject({ key: 'x', ttl: 60 });
      const second = await put(a.auth, 'x', { value: { v: 2 } });
      expect(second.statusCode).toBe(200);
      expect(body(second).etag).not.toBe(body(first).etag);
      expect(second.headers.etag).toBe(`"${String(body(second).etag)}"`);
    });

    it('gives equal values equal ETags', async () => {
      const a = await newTenant(t.deps, RW);
      const e1 = body(await put(a.auth, 'a', { value: { same: true } })).etag;
      const e2 = body(await put(a.auth, 'b', { value: { same: true } })).etag;
      expect(e1).toBe(e2);
    });

    it('accepts a value of exactly CACHE_MAX_VALUE_BYTES', async () => {
      const a = await newTenant(t.deps, RW);
      const max = t.config.cache.maxValueBytes;
      const value = 'x'.repeat(max - 2); // plus the two quotes
      expect((await put(a.auth, 'max', { value })).statusCode).toBe(201);
    });
  });

  describe('400', () => {
    it('names the field: missing value, bad ttl, unknown field, ttl above max', async () => {
      const a = await newTenant(t.deps, RW);
      const cases: [unknown, string, string?][] = [
        [{}, 'body.value'],
        [{ value: 1, ttl: 0 }, 'body.ttl'],
        [{ value: 1, ttl: 1.5 }, 'body.ttl'],
        [{ value: 1, ttl: '10' }, 'body.ttl'],
        [{ value: 1, extra: true }, 'body'],
        [{ value: 1, ttl: t.config.cache.maxTtlSeconds + 1 }, 'body.ttl', 'CACHE_MAX_TTL_SECONDS'],
      ];
      for (const [payload, field, limit] of cases) {
        const p = expectProblem(await put(a.auth, 'v', payload), 400, 'VALIDATION_FAILED');
        expect(p.errors?.[0]?.field, JSON.stringify(payload)).toBe(field);
        if (limit) expect(p.errors?.[0]?.limit).toBe(limit);
      }
      expectProblem(
        await t.app.inject({ method: 'GET', url: url('v'), headers: a.auth }),
        404,
        'CACHE_MISS',
      );
    });

    it('refuses query parameters it would ignore: unknown ones, and ttl/staleTtl/tags beside a JSON body', async () => {
      const a = await newTenant(t.deps, RW);
      expect((await put(a.auth, 'q', { value: 1, ttl: 600 })).statusCode).toBe(201);
      const inject = (method: 'GET' | 'PUT', path: string, payload?: object) =>
        t.app.inject({ method, url: path, headers: a.auth, ...(payload ? { payload } : {}) });
      // A typo of `lease` would otherwise read as a plain GET.
      for (const [path, field] of [
        [`${url('q')}?leas=1000`, 'query'],
        [`${url('q')}?lease=1000&x=1`, 'query'],
        ['/v1/cache?prefx=a', 'query'],
      ] as const) {
        const p = expectProblem(await inject('GET', path), 400, 'VALIDATION_FAILED');
        expect(p.errors?.[0]?.field, path).toBe(field);
      }
      const p = expectProblem(
        await inject('PUT', `${url('q')}?ttl=5&tags=a,b`, { value: 2 }),
        400,
        'VALIDATION_FAILED',
      );
      expect(p.errors?.map((e) => e.field)).toEqual(['query.ttl', 'query.tags']);
      expect(p.detail).toContain('go in the body');
      expectProblem(
        await inject('PUT', `${url('q')}?tll=5`, { value: 2 }),
        400,
        'VALIDATION_FAILED',
      );
      // Nothing was written: the first value, with its own ttl.
      const res = await inject('GET', url('q'));
      expect(body(res)).toMatchObject({ value: 1 });
      expect(body<{ ttl: number }>(res).ttl).toBeGreaterThan(590);
      // With a binary body the query is where they go.
      const bin = await t.app.inject({
        method: 'PUT',
        url: `${url('b')}?ttl=5&tags=a`,
        headers: { ...a.auth, 'content-type': 'application/octet-stream' },
        payload: Buffer.from([1, 2, 3]),
      });
      expect(bin.statusCode, bin.body).toBe(201);
      expect(body(bin)).toMatchObject({ ttl: 5 });
    });

    it('refuses malformed JSON and prototype poisoning, storing nothing', async () => {
      const a = await newTenant(t.deps, RW);
      const headers = { ...a.auth, 'content-type': 'application/json' };
      expectProblem(
        await t.app.inject({ method: 'PUT', url: url('j'), headers, payload: '{"value":' }),
        400,
        'BAD_REQUEST',
      );
      expectProblem(
        await t.app.inject({
          method: 'PUT',
          url: url('j'),
          headers,
          payload: '{"value":1,"__proto__":{"x":1}}',
        }),
        400,
        'BAD_REQUEST',
      );
      expectProblem(
        await t.app.inject({
          method: 'PUT',
          url: url('j'),
          headers,
          payload: '{"value":{"constructor":{"prototype":{"x":1}}}}',
        }),
        400,
        'BAD_REQUEST',
      );
      expectProblem(
        await t.app.inject({ method: 'GET', url: url('j'), headers: a.auth }),
        404,
        'CACHE_MISS',
      );
    });
  });

  describe('413', () => {
    it('refuses a value above CACHE_MAX_VALUE_BYTES and names the limit', async () => {
      const a = await newTenant(t.deps, RW);
      const value = 'x'.repeat(t.config.cache.maxValueBytes);
      const p = expectProblem(await put(a.auth, 'big', { value }), 413, 'VALUE_TOO_LARGE');
      expect(p.errors?.[0]).toMatchObject({ field: 'body.value', limit: 'CACHE_MAX_VALUE_BYTES' });
      expectProblem(
        await t.app.inject({ method: 'GET', url: url('big'), headers: a.auth }),
        404,
        'CACHE_MISS',
      );
    });

    it('refuses a body above BODY_LIMIT_BYTES', async () => {
      const a = await newTenant(t.deps, RW);
      const payload = JSON.stringify({ value: 'y'.repeat(t.config.http.bodyLimitBytes) });
      const p = expectProblem(
        await t.app.inject({
          method: 'PUT',
          url: url('huge'),
          headers: { ...a.auth, 'content-type': 'application/json' },
          payload,
        }),
        413,
        'PAYLOAD_TOO_LARGE',
      );
      expect(p.errors?.[0]?.limit).toBe('BODY_LIMIT_BYTES');
    });
  });

  describe('415', () => {
    it('refuses a body that is not JSON', async () => {
      const a = await newTenant(t.deps, RW);
      const res = await t.app.inject({
        method: 'PUT',
        url: url('t'),
        headers: { ...a.auth, 'content-type': 'text/plain' },
        payload: 'hello',
      });
      expectProblem(res, 415, 'UNSUPPORTED_MEDIA_TYPE');
    });
  });
});

describe('DELETE /v1/cache/{key}', () => {
  runCommonRouteTests({
    app: () => t,
    scope: 'cache:write',
    wrongScope: 'cache:read',
    request: (owner) => ({ method: 'DELETE', url: url('k'), headers: owner.auth }),
    async crossTenant(owner, other) {
      await put(owner.auth, 'keep', { value: 1 });
      expect(
        (await t.app.inject({ method: 'DELETE', url: url('keep'), headers: other.auth }))
          .statusCode,
      ).toBe(204);
      expect(
        (await t.app.inject({ method: 'GET', url: url('keep'), headers: owner.auth })).statusCode,
      ).toBe(200);
    },
  });

  describe('204', () => {
    it('deletes, and answers 204 for an absent key too', async () => {
      const a = await newTenant(t.deps, RW);
      await put(a.auth, 'del', { value: 1 });
      const res = await t.app.inject({ method: 'DELETE', url: url('del'), headers: a.auth });
      expect(res.statusCode).toBe(204);
      expect(res.body).toBe('');
      expectProblem(
        await t.app.inject({ method: 'GET', url: url('del'), headers: a.auth }),
        404,
        'CACHE_MISS',
      );
      expect(
        (await t.app.inject({ method: 'DELETE', url: url('del'), headers: a.auth })).statusCode,
      ).toBe(204);
    });
  });
});

describe('POST /v1/cache/_mget', () => {
  runCommonRouteTests({
    app: () => t,
    scope: 'cache:read',
    wrongScope: 'cache:write',
    request: (owner) => ({
      method: 'POST',
      url: '/v1/cache/_mget',
      headers: owner.auth,
      payload: { keys: ['a'] },
    }),
    async crossTenant(owner, other) {
      await put(owner.auth, 'm1', { value: 1 });
      const res = await t.app.inject({
        method: 'POST',
        url: '/v1/cache/_mget',
        headers: other.auth,
        payload: { keys: ['m1'] },
      });
      expect(body(res)).toEqual({ items: [{ key: 'm1', found: false }] });
    },
  });

  describe('200', () => {
    it('returns items in request order, hits and misses, duplicates kept', async () => {
      const a = await newTenant(t.deps, RW);
      await put(a.auth, 'a', { value: { a: 1 }, ttl: 50 });
      await put(a.auth, 'c', { value: 'c' });
      const res = await t.app.inject({
        method: 'POST',
        url: '/v1/cache/_mget',
        headers: a.auth,
        payload: { keys: ['c', 'b', 'a', 'c'] },
      });
      expect(res.statusCode).toBe(200);
      const items = body<{ items: Record<string, unknown>[] }>(res).items;
      expect(items.map((i) => [i.key, i.found, i.value])).toEqual([
        ['c', true, 'c'],
        ['b', false, undefined],
        ['a', true, { a: 1 }],
        ['c', true, 'c'],
      ]);
      expect(items[2]?.ttl).toBeLessThanOrEqual(50);
      expect(typeof items[2]?.etag).toBe('string');
    });

    it('reads 1000 keys in one call', async () => {
      const a = await newTenant(t.deps, RW);
      const items = Array.from({ length: 1000 }, (_, i) => ({ key: `k${i}`, value: i }));
      expect(
        (
          await t.app.inject({
            method: 'POST',
            url: '/v1/cache/_mset',
            headers: a.auth,
            payload: { items },
          })
        ).statusCode,
      ).toBe(200);
      const res = await t.app.inject({
        method: 'POST',
        url: '/v1/cache/_mget',
        headers: a.auth,
        payload: { keys: items.map((i) => i.key) },
      });
      const got = body<{ items: { value: number }[] }>(res).items;
      expect(got.map((g) => g.value)).toEqual(items.map((i) => i.value));
    });
  });

  describe('400', () => {
    it('refuses an empty list, more than 1000 keys and a bad key, naming the field', async () => {
      const a = await newTenant(t.deps, RW);
      const post = (payload: unknown) =>
        t.app.inject({
          method: 'POST',
          url: '/v1/cache/_mget',
          headers: a.auth,
          payload: payload as Record<string, unknown>,
        });
      expect(
        expectProblem(await post({ keys: [] }), 400, 'VALIDATION_FAILED').errors?.[0]?.field,
      ).toBe('body.keys');
      expect(
        expectProblem(
          await post({ keys: Array.from({ length: 1001 }, (_, i) => `k${i}`) }),
          400,
          'VALIDATION_FAILED',
        ).errors?.[0]?.field,
      ).toBe('body.keys');
      expect(
        expectProblem(await post({ keys: ['ok', ''] }), 400, 'VALIDATION_FAILED').errors?.[0]
          ?.field,
      ).toBe('body.keys[1]');
      expect(expectProblem(await post({}), 400, 'VALIDATION_FAILED').errors?.[0]?.field).toBe(
        'body.keys',
      );
    });
  });

  describe('403', () => {
    it('refuses when one key is outside the scope glob, naming it', async () => {
      const a = await newTenant(t.deps, RW);
      const narrow = await addKey(t.deps, a.tenant, ['cache:read:ef:*']);
      const res = await t.app.inject({
        method: 'POST',
        url: '/v1/cache/_mget',
        headers: narrow.auth,
        payload: { keys: ['ef:1', 'x:2'] },
      });
      expect(expectProblem(res, 403, 'SCOPE_MISSING').errors?.[0]?.field).toBe('body.keys[1]');
    });
  });
});

describe('POST /v1/cache/_mdelete', () => {
  const mdelete = (auth: Record<string, string>, keys: unknown) =>
    t.app.inject({ method: 'POST', url: '/v1/cache/_mdelete', headers: auth, payload: { keys } });

  runCommonRouteTests({
    app: () => t,
    scope: 'cache:write',
    wrongScope: 'cache:read',
    request: (owner) => ({
      method: 'POST',
      url: '/v1/cache/_mdelete',
      headers: owner.auth,
      payload: { keys: ['a'] },
    }),
    async crossTenant(owner, other) {
      await put(owner.auth, 'mine', { value: 'owner' });
      expect(body(await mdelete(other.auth, ['mine']))).toEqual({
        deleted: 0,
        items: [{ key: 'mine', deleted: false }],
      });
      expect(
        body(await t.app.inject({ method: 'GET', url: url('mine'), headers: owner.auth })).value,
      ).toBe('owner');
    },
  });

  it('deletes the keys given, in order, leaving their tag sets and every other key', async () => {
    const a = await newTenant(t.deps, RW);
    for (const key of ['k1', 'k2:*', 'kept']) {
      await put(a.auth, key, { value: key, tags: ['t'] });
    }
    const res = await mdelete(a.auth, ['k2:*', 'missing', 'k1']);
    expect(res.statusCode, res.body).toBe(200);
    expect(body(res)).toEqual({
      deleted: 2,
      items: [
        { key: 'k2:*', deleted: true },
        { key: 'missing', deleted: false },
        { key: 'k1', deleted: true },
      ],
    });
    for (const key of ['k1', 'k2:*']) {
      expectProblem(
        await t.app.inject({ method: 'GET', url: url(key), headers: a.auth }),
        404,
        'CACHE_MISS',
      );
    }
    expect(await t.deps.redis.primary.smembers(`${a.tenant}:tag:t`)).toEqual([
      `${a.tenant}:cache:kept`,
    ]);
  });

  it('refuses bad lists and keys outside the scope glob, deleting nothing', async () => {
    const a = await newTenant(t.deps, RW);
    await put(a.auth, 'ef:1', { value: 1 });
    for (const [keys, field] of [
      [[], 'body.keys'],
      [Array.from({ length: 1001 }, (_, i) => `k${i}`), 'body.keys'],
      [['ef:1', ''], 'body.keys[1]'],
      ['ef:1', 'body.keys'],
    ] as const) {
      const p = expectProblem(await mdelete(a.auth, keys), 400, 'VALIDATION_FAILED');
      expect(p.errors?.[0]?.field).toBe(field);
    }
    const narrow = await addKey(t.deps, a.tenant, ['cache:write:ef:*']);
    const p = expectProblem(await mdelete(narrow.auth, ['ef:1', 'x:2']), 403, 'SCOPE_MISSING');
    expect(p.errors?.[0]?.field).toBe('body.keys[1]');
    expect(
      body(await t.app.inject({ method: 'GET', url: url('ef:1'), headers: a.auth })).value,
    ).toBe(1);
  });
});

describe('POST /v1/cache/_mset', () => {
  runCommonRouteTests({
    app: () => t,
    scope: 'cache:write',
    wrongScope: 'cache:read',
    request: (owner) => ({
      method: 'POST',
      url: '/v1/cache/_mset',
      headers: owner.auth,
      payload: { items: [{ key: 'a', value: 1 }] },
    }),
    async crossTenant(owner, other) {
      await put(owner.auth, 'mine', { value: 'owner' });
      await t.app.inject({
        method: 'POST',
        url: '/v1/cache/_mset',
        headers: other.auth,
        payload: { items: [{ key: 'mine', value: 'other' }] },
      });
      expect(
        body(await t.app.inject({ method: 'GET', url: url('mine'), headers: owner.auth })).value,
      ).toBe('owner');
    },
  });

  describe('200', () => {
    it('stores every item with its own ttl', async () => {
      const a = await newTenant(t.deps, RW);
      const res = await t.app.inject({
        method: 'POST',
        url: '/v1/cache/_mset',
        headers: a.auth,
        payload: {
          items: [
            { key: 'p', value: [1], ttl: 30 },
            { key: 'q', value: 'q' },
          ],
        },
      });
      expect(res.statusCode).toBe(200);
      const items = body<{ items: { key: string; ttl: number; etag: string }[] }>(res).items;
      expect(items.map((i) => [i.key, i.ttl])).toEqual([
        ['p', 30],
        ['q', t.config.cache.defaultTtlSeconds],
      ]);
      const got = body(await t.app.inject({ method: 'GET', url: url('p'), headers: a.auth }));
      expect(got).toMatchObject({ value: [1], etag: items[0]?.etag });
    });
  });

  describe('400 / 413', () => {
    it('stores nothing when one item is invalid or too large', async () => {
      const a = await newTenant(t.deps, RW);
      const post = (items: unknown[]) =>
        t.app.inject({
          method: 'POST',
          url: '/v1/cache/_mset',
          headers: a.auth,
          payload: { items },
        });
      const p = expectProblem(
        await post([
          { key: 'ok1', value: 1 },
          { key: 'bad', value: 1, ttl: -1 },
        ]),
        400,
        'VALIDATION_FAILED',
      );
      expect(p.errors?.[0]?.field).toBe('body.items[1].ttl');
      const big = 'z'.repeat(t.config.cache.maxValueBytes);
      const q = expectProblem(
        await post([
          { key: 'ok2', value: 1 },
          { key: 'big', value: big },
        ]),
        413,
        'VALUE_TOO_LARGE',
      );
      expect(q.errors?.[0]).toMatchObject({
        field: 'body.items[1].value',
        limit: 'CACHE_MAX_VALUE_BYTES',
      });
      const res = await t.app.inject({
        method: 'POST',
        url: '/v1/cache/_mget',
        headers: a.auth,
        payload: { keys: ['ok1', 'ok2', 'big'] },
      });
      expect(body<{ items: { found: boolean }[] }>(res).items.every((i) => !i.found)).toBe(true);
    });
  });
});
