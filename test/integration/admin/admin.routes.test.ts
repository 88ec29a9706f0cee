import { describe, expect, it } from 'vitest';
import {
  ADMIN_TOKEN,
  addKey,
  body,
  useTestApp,
  expectProblem,
  newTenant,
  randomTenantId,
} from '../../harness/app.js';

const t = useTestApp();

const operator = { authorization: `Bearer ${ADMIN_TOKEN}` };

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
