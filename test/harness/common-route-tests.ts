/**
 * The security tests every authenticated route gets: no key 401, malformed/unknown/revoked key 401,
 * wrong scope 403, and the key of another tenant never reaching this tenant's data.
 */
import type { InjectOptions } from 'fastify';
import { describe, expect, it } from 'vitest';
import { type TestApp, type TestTenant, addKey, expectProblem, newTenant } from './app.js';

export interface CommonRouteTestOptions {
  /** Returns the app under test (built in the caller's beforeAll). */
  app(): TestApp;
  /** The scope the route needs, e.g. 'cache:read'. */
  scope: string;
  /** A scope that does not grant the route. */
  wrongScope: string;
  /**
   * Builds a valid request for a tenant. Called with `owner` (who set up data, if any) and the
   * tenant whose key signs the request.
   */
  request(owner: TestTenant): InjectOptions | Promise<InjectOptions>;
  /**
   * Optional: with `owner`'s data in place, proves a key of `other` cannot see or change it
   * (answers 404 or acts on its own empty namespace). Runs after `request` set-up.
   */
  crossTenant?(owner: TestTenant, other: TestTenant): Promise<void>;
}

function withHeaders(
  req: InjectOptions,
  headers: Record<string, string | undefined>,
): InjectOptions {
  const merged: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...(req.headers as Record<string, string>), ...headers })) {
    if (v !== undefined) merged[k] = v;
  }
  return { ...req, headers: merged };
}

export function runCommonRouteTests(opts: CommonRouteTestOptions): void {
  describe('common security', () => {
    it('401 without a key, with WWW-Authenticate', async () => {
      const t = opts.app();
      const owner = await newTenant(t.deps, [opts.scope]);
      const req = await opts.request(owner);
      const res = await t.app.inject(
        withHeaders(req, { authorization: undefined, 'x-api-key': undefined }),
      );
      expectProblem(res, 401, 'UNAUTHORIZED');
      expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
    });

    it('401 with a malformed, an unknown and a wrong-secret key', async () => {
      const t = opts.app();
      const owner = await newTenant(t.deps, [opts.scope]);
      const req = await opts.request(owner);
      const forged = owner.key.slice(0, -4) + (owner.key.endsWith('AAAA') ? 'BBBB' : 'AAAA');
      for (const bad of [
        'Bearer nonsense',
        'Basic dXNlcjpwYXNz',
        'Bearer cgk_unknownid00000000_' + 'x'.repeat(43),
        `Bearer ${forged}`,
      ]) {
        const res = await t.app.inject(withHeaders(req, { authorization: bad }));
        expectProblem(res, 401, 'UNAUTHORIZED');
      }
    });

    it('accepts the key in X-API-Key too', async () => {
      const t = opts.app();
      const owner = await newTenant(t.deps, [opts.scope]);
      const req = await opts.request(owner);
      const res = await t.app.inject(
        withHeaders(req, { authorization: undefined, 'x-api-key': owner.key }),
      );
      expect(res.statusCode).toBeLessThan(400);
    });

    it('401 once the key is revoked', async () => {
      const t = opts.app();
      const owner = await newTenant(t.deps, [opts.scope]);
      const req = await opts.request(owner);
      expect((await t.app.inject(req)).statusCode).toBeLessThan(400);
      await t.deps.admin.revokeKey(owner.tenant, owner.keyId);
      expectProblem(await t.app.inject(req), 401, 'UNAUTHORIZED');
    });

    it('403 with a key lacking the scope', async () => {
      const t = opts.app();
      const owner = await newTenant(t.deps, [opts.scope]);
      const req = await opts.request(owner);
      const weak = await addKey(t.deps, owner.tenant, [opts.wrongScope]);
      expectProblem(await t.app.inject(withHeaders(req, weak.auth)), 403, 'SCOPE_MISSING');
    });

    if (opts.crossTenant) {
      it("another tenant's key never reaches this tenant's data", async () => {
        const t = opts.app();
        const owner = await newTenant(t.deps, [opts.scope, 'cache:read', 'cache:write']);
        await opts.request(owner);
        const other = await newTenant(t.deps, [opts.scope, 'cache:read', 'cache:write']);
        await opts.crossTenant?.(owner, other);
      });
    }
  });
}
