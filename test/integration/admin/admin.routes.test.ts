import { describe, expect, it } from 'vitest';
import { keys } from '../../../src/redis/keys.js';
import {
  ADMIN_TOKEN,
  type TestTenant,
  addKey,
  adminRedis,
  body,
  useTestApp,
  expectProblem,
  newTenant,
  randomTenantId,
  scanAll,
} from '../../harness/app.js';

const t = useTestApp();

const operator = { authorization: `Bearer ${ADMIN_TOKEN}` };

/** PATCH of an API key, as the operator unless other headers are given. */
const patch = (
  tenant: string,
  keyId: string,
  payload: object,
  headers: Record<string, string> = operator,
) =>
  t.app.inject({
    method: 'PATCH',
    url: `/v1/admin/tenants/${tenant}/keys/${keyId}`,
    headers,
    payload,
  });

describe('POST /v1/admin/tenants', () => {
  describe('201', () => {
    it('creates a tenant the operator can read back and list', async () => {
      const id = randomTenantId();
      const res = await t.app.inject({
        method: 'POST',
        url: '/v1/admin/tenants',
        headers: operator,
        payload: { id, name: 'Acme' },
      });
      expect(res.statusCode).toBe(201);
      expect(body(res)).toMatchObject({ id, name: 'Acme', source: 'api' });
      const got = await t.app.inject({
        method: 'GET',
        url: `/v1/admin/tenants/${id}`,
        headers: operator,
      });
      expect(body(got)).toMatchObject({ id, name: 'Acme' });
      const list = body<{ tenants: { id: string }[] }>(
        await t.app.inject({ method: 'GET', url: '/v1/admin/tenants', headers: operator }),
      );
      expect(list.tenants.map((x) => x.id)).toContain(id);
    });
  });

  describe('400', () => {
    it('refuses hostile tenant ids, naming the field', async () => {
      for (const id of ['_gw', 'Upper', 'a:b', 'a*', 'a{b}', '', 'x'.repeat(64), '../x', 'a b']) {
        const res = await t.app.inject({
          method: 'POST',
          url: '/v1/admin/tenants',
          headers: operator,
          payload: { id },
        });
        expect(expectProblem(res, 400, 'VALIDATION_FAILED').errors?.[0]?.field, id).toBe('body.id');
      }
    });
  });

  describe('401 / 403', () => {
    it('needs the ADMIN_TOKEN: no token, a wrong token, or a tenant key are refused', async () => {
      const payload = { id: randomTenantId() };
      expectProblem(
        await t.app.inject({ method: 'POST', url: '/v1/admin/tenants', payload }),
        401,
        'UNAUTHORIZED',
      );
      expectProblem(
        await t.app.inject({
          method: 'POST',
          url: '/v1/admin/tenants',
          headers: { authorization: 'Bearer wrong-token-0123456789' },
          payload,
        }),
        401,
        'UNAUTHORIZED',
      );
      const tenantAdmin = await newTenant(t.deps, ['admin']);
      expectProblem(
        await t.app.inject({
          method: 'POST',
          url: '/v1/admin/tenants',
          headers: tenantAdmin.auth,
          payload,
        }),
        403,
        'SCOPE_MISSING',
      );
      const plain = await newTenant(t.deps, ['cache:read']);
      expectProblem(
        await t.app.inject({ method: 'GET', url: '/v1/admin/tenants', headers: plain.auth }),
        403,
        'SCOPE_MISSING',
      );
    });

    it('the tenant deletion and the key change need a credential too; a refused call changes nothing', async () => {
      const a = await newTenant(t.deps, ['cache:read']);
      for (const headers of [{}, { authorization: 'Bearer wrong-token-0123456789' }] as Record<
        string,
        string
      >[]) {
        expectProblem(
          await t.app.inject({ method: 'DELETE', url: `/v1/admin/tenants/${a.tenant}`, headers }),
          401,
          'UNAUTHORIZED',
        );
        expectProblem(
          await patch(a.tenant, a.keyId, { scopes: ['admin'] }, headers),
          401,
          'UNAUTHORIZED',
        );
      }
      expectProblem(
        await patch(a.tenant, a.keyId, { scopes: ['admin'] }, a.auth),
        403,
        'SCOPE_MISSING',
      );
      expect(
        (await t.app.inject({ method: 'GET', url: '/v1/cache/x', headers: a.auth })).statusCode,
      ).toBe(404);
      expect(
        body(
          await t.app.inject({
            method: 'GET',
            url: `/v1/admin/tenants/${a.tenant}`,
            headers: operator,
          }),
        ).deletingAt,
      ).toBeUndefined();
    });
  });

  describe('409', () => {
    it('refuses to create a tenant twice', async () => {
      const id = randomTenantId();
      await t.app.inject({
        method: 'POST',
        url: '/v1/admin/tenants',
        headers: operator,
        payload: { id },
      });
      expectProblem(
        await t.app.inject({
          method: 'POST',
          url: '/v1/admin/tenants',
          headers: operator,
          payload: { id },
        }),
        409,
        'TENANT_EXISTS',
      );
    });
  });
});

describe('POST /v1/admin/tenants/{tenant}/keys', () => {
  describe('201', () => {
    it('issues a working key once, stores only its digest, and lists it without secrets', async () => {
      const id = randomTenantId();
      await t.deps.admin.createTenant(id, undefined);
      const res = await t.app.inject({
        method: 'POST',
        url: `/v1/admin/tenants/${id}/keys`,
        headers: operator,
        payload: { name: 'svc', scopes: ['cache:read', 'cache:write'] },
      });
      expect(res.statusCode).toBe(201);
      expect(res.headers['cache-control']).toBe('no-store');
      const created = body<{ key: string; apiKey: { id: string; scopes: string[] } }>(res);
      expect(created.key).toMatch(/^cgk_/);
      // The key works.
      const put = await t.app.inject({
        method: 'PUT',
        url: '/v1/cache/k',
        headers: { authorization: `Bearer ${created.key}` },
        payload: { value: 1 },
      });
      expect(put.statusCode).toBe(201);
      // Redis holds the digest, never the key.
      const stored = await t.deps.redis.primary.hgetall(`_gw:apikey:${created.apiKey.id}`);
      // The secret is base64url and may itself hold '_' (even start with one), so it is what
      // follows `cgk_<id>_`, not a split on '_' (which gave '' about once in 64 runs).
      const secret = created.key.slice(`cgk_${created.apiKey.id}_`.length);
      expect(secret).toHaveLength(43);
      expect(JSON.stringify(stored)).not.toContain(secret);
      expect(stored.sha256).toMatch(/^[0-9a-f]{64}$/);
      const list = await t.app.inject({
        method: 'GET',
        url: `/v1/admin/tenants/${id}/keys`,
        headers: operator,
      });
      expect(list.body).not.toContain(created.key);
      expect(list.body).not.toContain(stored.sha256);
      expect(body<{ keys: { id: string; name: string }[] }>(list).keys).toEqual([
        expect.objectContaining({
          id: created.apiKey.id,
          name: 'svc',
          scopes: ['cache:read', 'cache:write'],
          revokedAt: null,
        }),
      ]);
    });

    it('lets a tenant admin issue keys for its own tenant', async () => {
      const a = await newTenant(t.deps, ['admin']);
      const res = await t.app.inject({
        method: 'POST',
        url: `/v1/admin/tenants/${a.tenant}/keys`,
        headers: a.auth,
        payload: { scopes: ['cache:read'] },
      });
      expect(res.statusCode).toBe(201);
    });
  });

  describe('400', () => {
    it('refuses unknown scopes, empty scopes and past expiry, naming the field', async () => {
      const a = await newTenant(t.deps, ['admin']);
      const post = (payload: unknown) =>
        t.app.inject({
          method: 'POST',
          url: `/v1/admin/tenants/${a.tenant}/keys`,
          headers: operator,
          payload: payload as Record<string, unknown>,
        });
      expect(
        expectProblem(await post({ scopes: ['cache:delete'] }), 400, 'VALIDATION_FAILED')
          .errors?.[0]?.field,
      ).toBe('body.scopes[0]');
      expect(
        expectProblem(await post({ scopes: [] }), 400, 'VALIDATION_FAILED').errors?.[0]?.field,
      ).toBe('body.scopes');
      expect(
        expectProblem(
          await post({ scopes: ['cache:read'], expiresAt: 'tomorrow' }),
          400,
          'VALIDATION_FAILED',
        ).errors?.[0]?.field,
      ).toBe('body.expiresAt');
      expect(
        expectProblem(
          await post({ scopes: ['cache:read'], expiresAt: '2001-01-01T00:00:00Z' }),
          400,
          'VALIDATION_FAILED',
        ).errors?.[0]?.field,
      ).toBe('body.expiresAt');
    });
  });

  describe('404', () => {
    it('answers 404 for a missing tenant, and for another tenant to a tenant admin', async () => {
      expectProblem(
        await t.app.inject({
          method: 'POST',
          url: `/v1/admin/tenants/${randomTenantId()}/keys`,
          headers: operator,
          payload: { scopes: ['cache:read'] },
        }),
        404,
        'TENANT_NOT_FOUND',
      );
      const a = await newTenant(t.deps, ['admin']);
      const b = await newTenant(t.deps, ['admin']);
      expectProblem(
        await t.app.inject({
          method: 'POST',
          url: `/v1/admin/tenants/${b.tenant}/keys`,
          headers: a.auth,
          payload: { scopes: ['cache:read'] },
        }),
        404,
        'TENANT_NOT_FOUND',
      );
      expectProblem(
        await t.app.inject({
          method: 'GET',
          url: `/v1/admin/tenants/${b.tenant}/keys`,
          headers: a.auth,
        }),
        404,
        'TENANT_NOT_FOUND',
      );
      expectProblem(
        await t.app.inject({
          method: 'GET',
          url: `/v1/admin/tenants/${b.tenant}`,
          headers: a.auth,
        }),
        404,
        'TENANT_NOT_FOUND',
      );
    });
  });
});

describe('DELETE /v1/admin/tenants/{tenant}/keys/{keyId}', () => {
  describe('204', () => {
    it('revokes: the key stops working at once, and revoking twice is fine', async () => {
      const a = await newTenant(t.deps, ['cache:write']);
      const put = () =>
        t.app.inject({ method: 'PUT', url: '/v1/cache/x', headers: a.auth, payload: { value: 1 } });
      expect((await put()).statusCode).toBe(201);
      const del = () =>
        t.app.inject({
          method: 'DELETE',
          url: `/v1/admin/tenants/${a.tenant}/keys/${a.keyId}`,
          headers: operator,
        });
      expect((await del()).statusCode).toBe(204);
      expectProblem(await put(), 401, 'UNAUTHORIZED');
      expect((await del()).statusCode).toBe(204);
      const list = body<{ keys: { revokedAt: string | null }[] }>(
        await t.app.inject({
          method: 'GET',
          url: `/v1/admin/tenants/${a.tenant}/keys`,
          headers: operator,
        }),
      );
      expect(list.keys[0]?.revokedAt).toMatch(/^\d{4}-/);
    });
  });

  describe('404', () => {
    it("cannot revoke another tenant's key, even as the operator naming the wrong tenant", async () => {
      const a = await newTenant(t.deps, ['cache:read', 'admin']);
      const b = await newTenant(t.deps, ['cache:read', 'admin']);
      expectProblem(
        await t.app.inject({
          method: 'DELETE',
          url: `/v1/admin/tenants/${a.tenant}/keys/${b.keyId}`,
          headers: operator,
        }),
        404,
        'API_KEY_NOT_FOUND',
      );
      expectProblem(
        await t.app.inject({
          method: 'DELETE',
          url: `/v1/admin/tenants/${b.tenant}/keys/${b.keyId}`,
          headers: a.auth,
        }),
        404,
        'TENANT_NOT_FOUND',
      );
      // b's key still works.
      const key2 = await addKey(t.deps, b.tenant, ['cache:read']);
      expect(
        (await t.app.inject({ method: 'GET', url: '/v1/cache/zz', headers: key2.auth })).statusCode,
      ).toBe(404);
      expect(
        (await t.app.inject({ method: 'GET', url: '/v1/cache/zz', headers: b.auth })).statusCode,
      ).toBe(404);
    });
  });
});

describe('PATCH /v1/admin/tenants/{tenant}/keys/{keyId}', () => {
  it('changes scopes, name and expiry at once; the secret keeps working with the new scopes', async () => {
    const a = await newTenant(t.deps, ['cache:read']);
    const get = () => t.app.inject({ method: 'GET', url: '/v1/cache/x', headers: a.auth });
    const put = () =>
      t.app.inject({ method: 'PUT', url: '/v1/cache/x', headers: a.auth, payload: { value: 1 } });
    expectProblem(await get(), 404, 'CACHE_MISS'); // cached by this replica as cache:read
    expectProblem(await put(), 403, 'SCOPE_MISSING');

    const res = await patch(a.tenant, a.keyId, {
      name: 'renamed',
      scopes: ['cache:write'],
      expiresAt: '2099-01-01T00:00:00Z',
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(body(res)).toMatchObject({
      id: a.keyId,
      tenant: a.tenant,
      name: 'renamed',
      scopes: ['cache:write'],
      expiresAt: '2099-01-01T00:00:00.000Z',
      revokedAt: null,
      source: 'api',
    });
    expect((await put()).statusCode).toBe(201);
    expectProblem(await get(), 403, 'SCOPE_MISSING');

    // Only what is given changes; expiresAt null removes the expiry.
    const cleared = await patch(a.tenant, a.keyId, { expiresAt: null });
    expect(body(cleared)).toMatchObject({
      name: 'renamed',
      scopes: ['cache:write'],
      expiresAt: null,
    });
    const list = body<{ keys: { id: string; name: string; expiresAt: string | null }[] }>(
      await t.app.inject({
        method: 'GET',
        url: `/v1/admin/tenants/${a.tenant}/keys`,
        headers: operator,
      }),
    );
    expect(list.keys.find((k) => k.id === a.keyId)).toMatchObject({
      name: 'renamed',
      expiresAt: null,
    });

    // A tenant admin may change its own tenant's keys.
    const admin = await addKey(t.deps, a.tenant, ['admin']);
    const own = await patch(
      a.tenant,
      a.keyId,
      { scopes: ['cache:read', 'cache:write'] },
      admin.auth,
    );
    expect(own.statusCode, own.body).toBe(200);
    expect((await get()).statusCode).toBe(200);
  });

  it('refuses bad input, other tenants, revoked and file keys, changing nothing', async () => {
    const a = await newTenant(t.deps, ['cache:read', 'admin']);
    const b = await newTenant(t.deps, ['cache:read', 'admin']);
    for (const [payload, field] of [
      [{}, 'body'],
      [{ scopes: [] }, 'body.scopes'],
      [{ scopes: ['nope:read'] }, 'body.scopes'],
      [{ name: '' }, 'body.name'],
      [{ expiresAt: 'tomorrow' }, 'body.expiresAt'],
      [{ expiresAt: '2001-01-01T00:00:00Z' }, 'body.expiresAt'],
      [{ other: 1 }, 'body'],
    ] as const) {
      const p = expectProblem(await patch(a.tenant, a.keyId, payload), 400, 'VALIDATION_FAILED');
      expect(
        p.errors?.some((e) => e.field.startsWith(field)),
        `${JSON.stringify(payload)}: ${JSON.stringify(p.errors)}`,
      ).toBe(true);
    }
    // b's key named under a's tenant, and a's admin key acting on b: both as if absent.
    expectProblem(await patch(a.tenant, b.keyId, { name: 'x' }), 404, 'API_KEY_NOT_FOUND');
    expectProblem(
      await patch(b.tenant, b.keyId, { scopes: ['admin'] }, a.auth),
      404,
      'TENANT_NOT_FOUND',
    );
    // A key without the admin scope cannot change even itself.
    const plain = await addKey(t.deps, a.tenant, ['cache:read']);
    expectProblem(
      await patch(a.tenant, plain.keyId, { scopes: ['admin'] }, plain.auth),
      403,
      'SCOPE_MISSING',
    );
    const revoked = await addKey(t.deps, a.tenant, ['cache:read']);
    await t.deps.admin.revokeKey(a.tenant, revoked.keyId);
    expectProblem(
      await patch(a.tenant, revoked.keyId, { scopes: ['cache:write'] }),
      409,
      'API_KEY_REVOKED',
    );
    expectProblem(
      await t.app.inject({ method: 'GET', url: '/v1/cache/x', headers: revoked.auth }),
      401,
      'UNAUTHORIZED',
    );
    const keysOf = async (tenant: string) =>
      body<{ keys: { id: string; name: string; scopes: string[] }[] }>(
        await t.app.inject({
          method: 'GET',
          url: `/v1/admin/tenants/${tenant}/keys`,
          headers: operator,
        }),
      ).keys;
    expect((await keysOf(a.tenant)).find((k) => k.id === a.keyId)?.scopes).toEqual([
      'cache:read',
      'admin',
    ]);
    expect((await keysOf(b.tenant)).find((k) => k.id === b.keyId)?.scopes).toEqual([
      'cache:read',
      'admin',
    ]);

    await withFileKey(a.tenant, 'filekey02', async () =>
      expectProblem(
        await patch(a.tenant, 'filekey02', { scopes: ['admin'] }),
        409,
        'API_KEY_MANAGED_BY_FILE',
      ),
    );
  });
});

describe('DELETE /v1/admin/tenants/{tenant}', () => {
  const SCOPES = [
    'cache:read',
    'cache:write',
    'session:write',
    'ratelimit:check',
    'idempotency:use',
    'queue:publish',
    'queue:consume',
    'queue:admin',
    'admin',
  ];

  const INLINE = {
    policy: { algorithm: 'fixed_window', limit: 1, windowMs: 600_000 },
    key: 'remembered',
  };

  async function fill(o: TestTenant): Promise<void> {
    const send = async (method: 'PUT' | 'POST', url: string, payload: object) => {
      const res = await t.app.inject({ method, url, headers: o.auth, payload });
      expect(res.statusCode, `${method} ${url}: ${res.body}`).toBeLessThan(300);
    };
    await send('PUT', '/v1/cache/k', { value: 'secret of ' + o.tenant });
    await send('POST', '/v1/sessions', { userId: 'u1', data: { a: 1 } });
    await send('POST', '/v1/ratelimit/check', { policy: 'promo', key: 'x' });
    // A denial the gateway remembers in process (an inline policy, the same for any tenant).
    for (let i = 0; i < 2; i++) await send('POST', '/v1/ratelimit/check', INLINE);
    await send('POST', '/v1/idempotency/i1/_begin', {});
    await send('PUT', '/v1/queues/jobs/groups/g', {});
    await send('POST', '/v1/queues/jobs/messages', { data: 1 });
    await send('POST', '/v1/queues/jobs/messages', { data: 2, delayMs: 60_000 });
  }

  async function policy(tenant: string) {
    const res = await t.app.inject({
      method: 'PUT',
      url: `/v1/admin/tenants/${tenant}/policies/promo`,
      headers: operator,
      payload: { algorithm: 'fixed_window', limit: 3, windowMs: 60000 },
    });
    expect(res.statusCode, res.body).toBeLessThan(300);
  }

  const del = (tenant: string, query = '') =>
    t.app.inject({
      method: 'DELETE',
      url: `/v1/admin/tenants/${tenant}${query}`,
      headers: operator,
    });

  it('stops its keys at once, erases every key of its data, then frees the id; another tenant keeps all', async () => {
    const a = await newTenant(t.deps, SCOPES);
    const a2 = await addKey(t.deps, a.tenant, ['cache:read']);
    // Tenant b's id starts with a's: its keys share the text before the ':'.
    const b = await addKey(
      t.deps,
      (await t.deps.admin.createTenant(`${a.tenant}-b`, undefined)).id,
      SCOPES,
    );
    await policy(a.tenant);
    await policy(b.tenant);
    await fill(a);
    await fill(b);
    const redis = await adminRedis(t);
    try {
      // Enough keys that a call limited to 20 cannot erase them all.
      const pipeline = redis.pipeline();
      for (let i = 0; i < 60; i++) pipeline.set(keys.cache(a.tenant, `bulk-${i}`), 'x');
      await pipeline.exec();
      const before = await scanAll(redis, `${a.tenant}:*`);
      expect(before.length).toBeGreaterThan(66);
      const beforeB = await scanAll(redis, `${b.tenant}:*`);

      const first = await del(a.tenant, '?limit=20');
      expect(first.statusCode, first.body).toBe(202);
      const started = body<{ state: string; apiKeysDeleted: number; cursor: string }>(first);
      expect(started).toMatchObject({ state: 'deleting', apiKeysDeleted: 2 });
      // At once: no key of a works, no key can be issued, the id cannot be created again.
      for (const o of [a, a2]) {
        expectProblem(
          await t.app.inject({ method: 'GET', url: '/v1/cache/k', headers: o.auth }),
          401,
          'UNAUTHORIZED',
        );
      }
      expect(
        body(
          await t.app.inject({
            method: 'GET',
            url: `/v1/admin/tenants/${a.tenant}`,
            headers: operator,
          }),
        ).deletingAt,
      ).toMatch(/^\d{4}-/);
      expectProblem(
        await t.app.inject({
          method: 'POST',
          url: `/v1/admin/tenants/${a.tenant}/keys`,
          headers: operator,
          payload: { scopes: ['cache:read'] },
        }),
        404,
        'TENANT_NOT_FOUND',
      );
      expectProblem(
        await t.app.inject({
          method: 'POST',
          url: '/v1/admin/tenants',
          headers: operator,
          payload: { id: a.tenant },
        }),
        409,
        'TENANT_DELETING',
      );

      let cursor = started.cursor;
      let erased = body<{ erased: number }>(first).erased;
      let calls = 1;
      for (;;) {
        const res = await del(a.tenant, `?limit=20&cursor=${cursor}`);
        calls++;
        const r = body<{ state: string; erased: number; cursor: string | null }>(res);
        erased += r.erased;
        if (r.state === 'deleted') {
          expect(res.statusCode).toBe(200);
          expect(r.cursor).toBeNull();
          break;
        }
        expect(res.statusCode, res.body).toBe(202);
        cursor = r.cursor as string;
        expect(calls).toBeLessThan(1000);
      }
      expect(calls).toBeGreaterThanOrEqual(2);
      expect(erased).toBe(before.length);
      expect(await scanAll(redis, `${a.tenant}:*`)).toEqual([]);
      for (const k of [
        keys.gw.tenant(a.tenant),
        keys.gw.tenantApiKeys(a.tenant),
        keys.gw.ratelimitPolicies(a.tenant),
        keys.gw.apiKey(a.keyId),
        keys.gw.apiKey(a2.keyId),
      ]) {
        expect(await redis.exists(k), k).toBe(0);
      }
      expect(await redis.sismember(keys.gw.tenants(), a.tenant)).toBe(0);
      // b: every key still there, and its key still reads its value.
      expect((await scanAll(redis, `${b.tenant}:*`)).sort()).toEqual(beforeB.sort());
      expect(await redis.exists(keys.gw.ratelimitPolicies(b.tenant))).toBe(1);
    } finally {
      redis.disconnect();
    }
    expect(
      body(await t.app.inject({ method: 'GET', url: '/v1/cache/k', headers: b.auth })).value,
    ).toBe(`secret of ${b.tenant}`);

    // Gone: 404 to read or delete it again; the id can be created afresh, with nothing inside.
    expectProblem(
      await t.app.inject({
        method: 'GET',
        url: `/v1/admin/tenants/${a.tenant}`,
        headers: operator,
      }),
      404,
      'TENANT_NOT_FOUND',
    );
    expectProblem(await del(a.tenant), 404, 'TENANT_NOT_FOUND');
    const list = body<{ tenants: { id: string }[] }>(
      await t.app.inject({ method: 'GET', url: '/v1/admin/tenants', headers: operator }),
    );
    expect(list.tenants.map((x) => x.id)).not.toContain(a.tenant);
    await t.deps.admin.createTenant(a.tenant, undefined);
    const again = await addKey(t.deps, a.tenant, SCOPES);
    expectProblem(
      await t.app.inject({ method: 'GET', url: '/v1/cache/k', headers: again.auth }),
      404,
      'CACHE_MISS',
    );
    expectProblem(
      await t.app.inject({ method: 'GET', url: '/v1/queues/jobs', headers: again.auth }),
      404,
      'QUEUE_NOT_FOUND',
    );
    expectProblem(
      await t.app.inject({
        method: 'POST',
        url: '/v1/ratelimit/check',
        headers: again.auth,
        payload: { policy: 'promo', key: 'x' },
      }),
      404,
      'POLICY_NOT_FOUND',
    );
    const fresh = await t.app.inject({
      method: 'POST',
      url: '/v1/ratelimit/check',
      headers: again.auth,
      payload: INLINE,
    });
    expect(body(fresh)).toMatchObject({ allowed: true, remaining: 0 });
  });

  it('a cursor from another master (a failover) starts the pass over: erasures may have been lost', async () => {
    const a = await newTenant(t.deps, ['cache:write']);
    const filler = randomTenantId('filler');
    const redis = await adminRedis(t);
    try {
      // Three keys of the tenant among 5000 others, so a SCAN cursor past all three is likely
      // not the end of the keyspace.
      const pipeline = redis.pipeline();
      for (let i = 0; i < 3; i++) pipeline.set(keys.cache(a.tenant, `k${i}`), 'x');
      for (let i = 0; i < 5000; i++) pipeline.set(keys.cache(filler, `f${i}`), 'x');
      await pipeline.exec();
      // A SCAN cursor past every key of the tenant: resumed there, a pass would find none.
      let cursor = '0';
      let after = '0';
      do {
        const [next, found] = await redis.scan(cursor, 'MATCH', `${a.tenant}:*`, 'COUNT', 10);
        if (found.length > 0) after = next;
        cursor = next;
      } while (cursor !== '0');
      const res = await del(a.tenant, `?cursor=${after}.0.000000000000`);
      expect(res.statusCode, res.body).toBe(200);
      expect(body(res)).toMatchObject({ state: 'deleted', erased: 3 });
      expect(await scanAll(redis, `${a.tenant}:*`)).toEqual([]);
    } finally {
      const left = await scanAll(redis, `${filler}:*`);
      for (let i = 0; i < left.length; i += 1000) await redis.unlink(...left.slice(i, i + 1000));
      redis.disconnect();
    }
  });

  it('a small tenant is deleted in one call; refused to tenant keys, bad input and file tenants', async () => {
    const a = await newTenant(t.deps, ['cache:write', 'admin', 'ratelimit:check']);
    const check = (o: TestTenant) =>
      t.app.inject({
        method: 'POST',
        url: '/v1/ratelimit/check',
        headers: o.auth,
        payload: INLINE,
      });
    expect(body((await check(a), await check(a))).allowed).toBe(false);
    expectProblem(
      await t.app.inject({
        method: 'DELETE',
        url: `/v1/admin/tenants/${a.tenant}`,
        headers: a.auth,
      }),
      403,
      'SCOPE_MISSING',
    );
    for (const q of [
      '?cursor=abc',
      '?cursor=1.2',
      '?cursor=1.0',
      '?cursor=1.0.xyz',
      '?limit=0',
      '?limit=x',
      '?other=1',
    ]) {
      expectProblem(await del(a.tenant, q), 400, 'VALIDATION_FAILED');
    }
    expectProblem(await del('Bad!'), 400, 'VALIDATION_FAILED');
    expectProblem(await del(randomTenantId()), 404, 'TENANT_NOT_FOUND');
    // Still intact after all the refusals.
    expect(
      (
        await t.app.inject({
          method: 'PUT',
          url: '/v1/cache/k',
          headers: a.auth,
          payload: { value: 1 },
        })
      ).statusCode,
    ).toBe(201);

    const fileTenant = randomTenantId();
    await t.deps.admin.createTenant(fileTenant, undefined);
    await withFileKey(fileTenant, 'filekey01', async () =>
      expectProblem(await del(fileTenant), 409, 'TENANT_MANAGED_BY_FILE'),
    );
    expect(body(await del(fileTenant))).toMatchObject({ state: 'deleted', erased: 0 });

    const res = await del(a.tenant);
    expect(res.statusCode, res.body).toBe(200);
    expect(body(res)).toEqual({
      tenant: a.tenant,
      state: 'deleted',
      apiKeysDeleted: 1,
      erased: 2,
      cursor: null,
    });
    // The denial every replica remembered is gone with it (no policies of its own to announce).
    await t.deps.admin.createTenant(a.tenant, undefined);
    const again = await addKey(t.deps, a.tenant, ['ratelimit:check']);
    // The pub/sub message comes back from Redis within moments; a remembered denial consumes
    // nothing, so the first check the gateway sends to Redis is allowed.
    let allowed = false;
    for (const deadline = Date.now() + 3000; !allowed && Date.now() < deadline;) {
      allowed = body<{ allowed: boolean }>(await check(again)).allowed;
      if (!allowed) await new Promise((r) => setTimeout(r, 20));
    }
    expect(allowed).toBe(true);
  });
});

/** Runs `fn` while API_KEYS_FILE holds one key (id `keyId`) for `tenant`. */
async function withFileKey(tenant: string, keyId: string, fn: () => Promise<unknown>) {
  const key = {
    id: keyId,
    tenant,
    name: 'from the file',
    scopes: ['cache:read'],
    digest: '0'.repeat(64),
    expiresAtMs: undefined,
  };
  t.deps.admin.setFileKeys(new Map([[keyId, key]]));
  try {
    await fn();
  } finally {
    t.deps.admin.setFileKeys(new Map());
  }
}
