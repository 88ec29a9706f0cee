import { describe, expect, it } from 'vitest';
import { addKey, body, useTestApp, expectProblem, newTenant, rawHttp } from '../harness/app.js';

const t = useTestApp();

const RW = ['cache:read', 'cache:write'];

describe('hostile cache keys', () => {
  it('keys with :, *, ?, [, {, .., spaces, slashes and any UTF-8 stay inside the tenant', async () => {
    const a = await newTenant(t.deps, RW);
    const b = await newTenant(t.deps, RW);
    const hostile = [
      'a:b:c',
      '*',
      '?',
      '[a-z]',
      '{x}',
      '../../etc/passwd',
      ' spaced key ',
      'a/b/c',
      'é€𝄞',
      '\\',
      '%2F',
      'other-tenant:cache:x',
      '_gw:apikey:x',
    ];
    for (const key of hostile) {
      const url = `/v1/cache/${encodeURIComponent(key)}`;
      const put = await t.app.inject({
        method: 'PUT',
        url,
        headers: a.auth,
        payload: { value: key },
      });
      expect(put.statusCode, key).toBe(201);
      expect(await t.deps.redis.primary.exists(`${a.tenant}:cache:${key}`), key).toBe(1);
      expect(body(await t.app.inject({ method: 'GET', url, headers: a.auth })).value, key).toBe(
        key,
      );
      expectProblem(await t.app.inject({ method: 'GET', url, headers: b.auth }), 404, 'CACHE_MISS');
    }
    // Nothing was written outside a's namespace.
    const stray = await t.deps.redis.primary.exists(
      '_gw:apikey:x',
      'other-tenant:cache:x',
      `${b.tenant}:cache:*`,
    );
    expect(stray).toBe(0);
  });

  it('the keys "." and ".." are plain keys when sent percent-encoded over real HTTP', async () => {
    // WHATWG URL parsers (fetch, inject) fold %2E%2E segments; plain HTTP clients like curl do not.
    const a = await newTenant(t.deps, RW);
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const port = (t.app.server.address() as { port: number }).port;
    for (const [encoded, key] of [
      ['%2E', '.'],
      ['%2E%2E', '..'],
    ] as const) {
      const put = await rawHttp(
        port,
        'PUT',
        `/v1/cache/${encoded}`,
        { ...a.auth, 'content-type': 'application/json' },
        JSON.stringify({ value: key }),
      );
      expect(put.status, key).toBe(201);
      expect(await t.deps.redis.primary.exists(`${a.tenant}:cache:${key}`)).toBe(1);
      const got = await rawHttp(port, 'GET', `/v1/cache/${encoded}`, a.auth);
      expect(JSON.parse(got.body).value).toBe(key);
    }
  });

  it('a key of exactly 1024 bytes (multi-byte, 3072 characters encoded) is accepted; 1025 is a 400 naming the limit', async () => {
    const a = await newTenant(t.deps, RW);
    const ok = '€'.repeat(341) + 'x'; // 1024 bytes
    expect(
      (
        await t.app.inject({
          method: 'PUT',
          url: `/v1/cache/${encodeURIComponent(ok)}`,
          headers: a.auth,
          payload: { value: 1 },
        })
      ).statusCode,
    ).toBe(201);
    const tooLong = 'x'.repeat(1025);
    const p = expectProblem(
      await t.app.inject({
        method: 'PUT',
        url: `/v1/cache/${tooLong}`,
        headers: a.auth,
        payload: { value: 1 },
      }),
      400,
      'VALIDATION_FAILED',
    );
    expect(p.errors?.[0]?.field).toBe('path.key');
    const multi = '€'.repeat(342); // 1026 bytes, 342 characters
    expect(
      expectProblem(
        await t.app.inject({
          method: 'GET',
          url: `/v1/cache/${encodeURIComponent(multi)}`,
          headers: a.auth,
        }),
        400,
        'VALIDATION_FAILED',
      ).errors?.[0]?.field,
    ).toBe('path.key');
  });

  it('NUL, control characters and invalid UTF-8 are refused with a 400, storing nothing', async () => {
    const a = await newTenant(t.deps, RW);
    for (const raw of ['%00', 'a%0Ab', '%7F', '%C2%85', '%ED%A0%80', '%FF']) {
      const res = await t.app.inject({
        method: 'PUT',
        url: `/v1/cache/${raw}`,
        headers: a.auth,
        payload: { value: 1 },
      });
      expect(res.statusCode, raw).toBe(400);
      expect(String(res.headers['content-type'])).toContain('application/problem+json');
    }
    const mget = await t.app.inject({
      method: 'POST',
      url: '/v1/cache/_mget',
      headers: a.auth,
      payload: { keys: ['ok', 'bad\u0000'] },
    });
    expect(expectProblem(mget, 400, 'VALIDATION_FAILED').errors?.[0]?.field).toBe('body.keys[1]');
    const [, found] = await t.deps.redis.primary.scan(
      '0',
      'MATCH',
      `${a.tenant}:*`,
      'COUNT',
      10_000,
    );
    expect(found).toEqual([]);
  });

  it('a key-glob scope cannot be escaped with glob characters in the key', async () => {
    const a = await newTenant(t.deps, RW);
    const { auth } = await addKey(t.deps, a.tenant, ['cache:write:ef:*']);
    for (const key of ['ef', 'efx', '*', 'ef*', 'ex:1']) {
      expectProblem(
        await t.app.inject({
          method: 'PUT',
          url: `/v1/cache/${encodeURIComponent(key)}`,
          headers: auth,
          payload: { value: 1 },
        }),
        403,
        'SCOPE_MISSING',
      );
    }
    expect(
      (
        await t.app.inject({
          method: 'PUT',
          url: `/v1/cache/${encodeURIComponent('ef:*')}`,
          headers: auth,
          payload: { value: 1 },
        })
      ).statusCode,
    ).toBe(201);
  });
});

describe('hostile user ids and idempotency keys', () => {
  it('stay inside the tenant (and, for idempotency keys, inside the API key)', async () => {
    const scopes = ['session:read', 'session:write', 'idempotency:use'];
    const a = await newTenant(t.deps, scopes);
    const b = await newTenant(t.deps, scopes);
    for (const id of ['a:b', '*', '../x', `${b.tenant}:usess:u`, '_gw:tenant:x', 'é𝄞 {x}']) {
      const made = await t.app.inject({
        method: 'POST',
        url: '/v1/sessions',
        headers: a.auth,
        payload: { userId: id },
      });
      expect(made.statusCode, id).toBe(201);
      expect(await t.deps.redis.primary.exists(`${a.tenant}:usess:${id}`), id).toBe(1);
      const url = `/v1/users/${encodeURIComponent(id)}/sessions`;
      expect(body(await t.app.inject({ method: 'GET', url, headers: a.auth })).total, id).toBe(1);
      expect(body(await t.app.inject({ method: 'GET', url, headers: b.auth })).total, id).toBe(0);

      const begin = (o: { auth: Record<string, string> }) =>
        t.app.inject({
          method: 'POST',
          url: `/v1/idempotency/${encodeURIComponent(id)}/_begin`,
          headers: o.auth,
          payload: {},
        });
      expect((await begin(a)).statusCode, id).toBe(201);
      expect((await begin(b)).statusCode, id).toBe(201);
      expectProblem(await begin(a), 409, 'IDEMPOTENCY_IN_PROGRESS');
    }
  });
});
