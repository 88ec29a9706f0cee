/**
 * The rate-limit HTTP surface: /check and /_check (bodies, headers, scopes, bad input), the
 * admin policies API, the policies file, and the gateway's own request quota.
 */
import { writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  ADMIN_TOKEN,
  addKey,
  body,
  buildTestApp,
  expectProblem,
  newTenant,
  useTestApp,
  writePoliciesFile,
} from '../../harness/app.js';
import { runCommonRouteTests } from '../../harness/common-route-tests.js';

const policiesFile = writePoliciesFile([
  'policies:',
  '  login: { algorithm: fixed_window, limit: 2, windowMs: 60000, failureMode: closed }',
  '  public: { algorithm: token_bucket, capacity: 3, refillPerSecond: 0.05 }',
  'tenants:',
  '  file-tenant:',
  '    login: { algorithm: fixed_window, limit: 4, windowMs: 60000 }',
  'quotas:',
  '  quota-tenant: 3',
]);
const t = useTestApp({ env: { RATELIMIT_POLICIES_FILE: policiesFile } });
const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };

type Decision = {
  allowed: boolean;
  limit: number | null;
  remaining: number | null;
  resetMs: number;
  retryAfterMs: number;
  policy: string;
};

async function caller(scopes = ['ratelimit:check']) {
  return newTenant(t.deps, scopes);
}

function post(auth: Record<string, string>, url: string, payload: unknown) {
  return t.app.inject({ method: 'POST', url, headers: auth, payload: payload as object });
}

/** One check of `policy` for `key`, its decision. */
function check(auth: Record<string, string>, policy: unknown, key: string) {
  return post(auth, '/v1/ratelimit/check', { policy, key }).then((r) => body<Decision>(r));
}

describe('POST /v1/ratelimit/check', () => {
  it('decides, with draft-11 and legacy headers; a denial is a 200 result with Retry-After', async () => {
    const a = await caller();
    const ok = await post(a.auth, '/v1/ratelimit/check', { policy: 'login', key: 'user:1' });
    expect(ok.statusCode).toBe(200);
    expect(body<Decision>(ok)).toEqual({
      allowed: true,
      limit: 2,
      remaining: 1,
      resetMs: expect.any(Number) as number,
      retryAfterMs: 0,
      policy: 'login',
    });
    expect(ok.headers['ratelimit-policy']).toBe('"login";q=2;w=60');
    expect(ok.headers.ratelimit).toMatch(/^"login";r=1;t=(59|60)$/);
    expect(ok.headers['x-ratelimit-limit']).toBe('2');
    expect(ok.headers['x-ratelimit-remaining']).toBe('1');
    expect(ok.headers['retry-after']).toBeUndefined();
    await post(a.auth, '/v1/ratelimit/check', { policy: 'login', key: 'user:1' });
    const denied = await post(a.auth, '/v1/ratelimit/check', { policy: 'login', key: 'user:1' });
    expect(denied.statusCode).toBe(200);
    expect(body<Decision>(denied)).toMatchObject({ allowed: false, remaining: 0 });
    expect(Number(denied.headers['retry-after'])).toBeGreaterThan(0);
    expect(denied.headers.ratelimit).toMatch(/^"login";r=0;t=\d+$/);
  });

  it('uses the built-in defaults, and takes inline definitions and a cost', async () => {
    const a = await caller();
    const bulk = body<Decision>(
      await post(a.auth, '/v1/ratelimit/check', { policy: 'bulk', key: 'k' }),
    );
    expect(bulk).toMatchObject({ allowed: true, limit: 10, remaining: 9 });
    const inline = await post(a.auth, '/v1/ratelimit/check', {
      policy: { algorithm: 'gcra', limit: 100, periodMs: 60000, burst: 10 },
      key: 'k',
      cost: 4,
    });
    expect(body<Decision>(inline)).toMatchObject({
      allowed: true,
      limit: 10,
      remaining: 6,
      policy: 'inline',
    });
    expect(inline.headers['ratelimit-policy']).toBe('"inline";q=10;w=6');
    const internal = await post(a.auth, '/v1/ratelimit/check', { policy: 'internal', key: 'k' });
    expect(body<Decision>(internal)).toMatchObject({ allowed: true, limit: null, remaining: null });
    expect(internal.headers.ratelimit).toBeUndefined();
  });

  it('refuses bad input with a problem naming the field, and consumes nothing', async () => {
    const a = await caller();
    const url = '/v1/ratelimit/check';
    const cases: [unknown, string][] = [
      [{ key: 'k' }, 'body.policy'],
      [{ policy: 'login' }, 'body.key'],
      [{ policy: 'Bad Name!', key: 'k' }, 'body.policy'],
      [{ policy: 'login', key: '' }, 'body.key'],
      [{ policy: 'login', key: 'a\u0000b' }, 'body.key'],
      [{ policy: 'login', key: 'x'.repeat(1025) }, 'body.key'],
      [{ policy: 'login', key: 'k', cost: -1 }, 'body.cost'],
      [{ policy: 'login', key: 'k', cost: 1.5 }, 'body.cost'],
      [{ policy: 'login', key: 'k', extra: 1 }, 'body'],
      [{ policy: { algorithm: 'leaky' }, key: 'k' }, 'body.policy'],
      [
        { policy: { algorithm: 'token_bucket', capacity: 0, refillPerSecond: 1 }, key: 'k' },
        'body.policy',
      ],
      [
        { policy: { algorithm: 'sliding_log', limit: 1001, windowMs: 1000 }, key: 'k' },
        'body.policy',
      ],
      [
        { policy: { algorithm: 'fixed_window', limit: 5, windowMs: 1000, typo: 1 }, key: 'k' },
        'body.policy',
      ],
    ];
    for (const [payload, field] of cases) {
      const p = expectProblem(await post(a.auth, url, payload), 400, 'VALIDATION_FAILED');
      expect(
        p.errors?.some((e) => e.field.startsWith(field)),
        `${JSON.stringify(payload).slice(0, 80)} -> ${JSON.stringify(p.errors)}`,
      ).toBe(true);
    }
    const tooCostly = expectProblem(
      await post(a.auth, url, { policy: 'login', key: 'k', cost: 3 }),
      400,
      'VALIDATION_FAILED',
    );
    expect(tooCostly.errors?.[0]?.field).toBe('body.cost');
    expectProblem(await post(a.auth, url, { policy: 'nope', key: 'k' }), 404, 'POLICY_NOT_FOUND');
    const notJson = await t.app.inject({
      method: 'POST',
      url,
      headers: { ...a.auth, 'content-type': 'text/plain' },
      payload: 'policy=login',
    });
    expectProblem(notJson, 415, 'UNSUPPORTED_MEDIA_TYPE');
    // Nothing above consumed: the key still has its whole quota.
    const d = body<Decision>(await post(a.auth, url, { policy: 'login', key: 'k', cost: 0 }));
    expect(d.remaining).toBe(2);
  });

  it('checks scopes: a glob restricts policy names; inline definitions need the whole scope', async () => {
    const a = await caller(['ratelimit:check:log*']);
    expect(
      (await post(a.auth, '/v1/ratelimit/check', { policy: 'login', key: 'k' })).statusCode,
    ).toBe(200);
    expectProblem(
      await post(a.auth, '/v1/ratelimit/check', { policy: 'bulk', key: 'k' }),
      403,
      'SCOPE_MISSING',
    );
    expectProblem(
      await post(a.auth, '/v1/ratelimit/check', { policy: { algorithm: 'unlimited' }, key: 'k' }),
      403,
      'SCOPE_MISSING',
    );
    const cache = await caller(['cache:read']);
    expectProblem(
      await post(cache.auth, '/v1/ratelimit/check', { policy: 'login', key: 'k' }),
      403,
      'SCOPE_MISSING',
    );
    expectProblem(
      await post({}, '/v1/ratelimit/check', { policy: 'login', key: 'k' }),
      401,
      'UNAUTHORIZED',
    );
  });

  it('counts decisions per policy in the metrics', async () => {
    const a = await caller();
    await post(a.auth, '/v1/ratelimit/check', { policy: 'login', key: 'm' });
    const text = await t.deps.metrics.registry.metrics();
    expect(text).toMatch(
      /gateway_ratelimit_decisions_total\{policy="login",outcome="allowed"\} [1-9]/,
    );
    expect(text).not.toContain(a.tenant);
  });
});

describe('POST /v1/ratelimit/_check', () => {
  it('answers every check; allowed only if all allow; atomic by default', async () => {
    const a = await caller();
    const url = '/v1/ratelimit/_check';
    const checks = [
      { policy: 'public', key: 'u' },
      { policy: 'login', key: 'u', cost: 2 },
    ];
    const first = await post(a.auth, url, { checks });
    expect(body<{ allowed: boolean }>(first).allowed).toBe(true);
    expect(first.headers['ratelimit-policy']).toBe('"public";q=3;w=60, "login";q=2;w=60');
    const second = await post(a.auth, url, { checks });
    const b2 = body<{ allowed: boolean; results: Decision[] }>(second);
    expect(b2.allowed).toBe(false);
    expect(b2.results.map((r) => r.allowed)).toEqual([true, false]);
    expect(second.headers['retry-after']).toBeDefined();
    // public was not consumed by the denied call
    const peek = body<Decision>(
      await post(a.auth, '/v1/ratelimit/check', { policy: 'public', key: 'u', cost: 0 }),
    );
    expect(peek.remaining).toBe(2);
  });

  it('refuses more than 20 checks, none, and bad entries', async () => {
    const a = await caller();
    const url = '/v1/ratelimit/_check';
    const many = Array.from({ length: 21 }, (_, i) => ({ policy: 'public', key: `k${i}` }));
    expectProblem(await post(a.auth, url, { checks: many }), 400, 'VALIDATION_FAILED');
    expectProblem(await post(a.auth, url, { checks: [] }), 400, 'VALIDATION_FAILED');
    const bad = expectProblem(
      await post(a.auth, url, { checks: [{ policy: 'public', key: 'k' }, { policy: 'public' }] }),
      400,
      'VALIDATION_FAILED',
    );
    expect(bad.errors?.[0]?.field).toBe('body.checks[1].key');
    const unknown = expectProblem(
      await post(a.auth, url, {
        checks: [
          { policy: 'public', key: 'k' },
          { policy: 'nope', key: 'k' },
        ],
      }),
      404,
      'POLICY_NOT_FOUND',
    );
    expect(unknown.errors?.[0]?.field).toBe('body.checks[1].policy');
  });
});

describe('policies: file and admin API', () => {
  it('a tenant section of the file overrides the global one for that tenant only', async () => {
    await t.deps.admin.createTenant('file-tenant', undefined).catch(() => undefined);
    const ft = await addKey(t.deps, 'file-tenant', ['ratelimit:check']);
    const d = body<Decision>(
      await post(ft.auth, '/v1/ratelimit/check', { policy: 'login', key: 'x' }),
    );
    expect(d.limit).toBe(4);
    const other = await caller();
    expect(
      body<Decision>(await post(other.auth, '/v1/ratelimit/check', { policy: 'login', key: 'x' }))
        .limit,
    ).toBe(2);
  });

  it('PUT/GET/DELETE /v1/admin/tenants/{tenant}/policies: API policies win, then the file applies again', async () => {
    const a = await caller();
    const url = `/v1/admin/tenants/${a.tenant}/policies`;
    const put = await t.app.inject({
      method: 'PUT',
      url: `${url}/login`,
      headers: admin,
      payload: { algorithm: 'sliding_window', limit: 7, windowMs: 1000 },
    });
    expect(put.statusCode).toBe(201);
    const again = await t.app.inject({
      method: 'PUT',
      url: `${url}/login`,
      headers: admin,
      payload: { algorithm: 'sliding_window', limit: 8, windowMs: 1000 },
    });
    expect(again.statusCode).toBe(200);
    expect(
      body<Decision>(await post(a.auth, '/v1/ratelimit/check', { policy: 'login', key: 'x' }))
        .limit,
    ).toBe(8);
    const list = body<{ policies: { name: string; source: string }[] }>(
      await t.app.inject({ method: 'GET', url, headers: admin }),
    );
    expect(list.policies.find((p) => p.name === 'login')?.source).toBe('api');
    expect(list.policies.find((p) => p.name === 'public')?.source).toBe('file');
    expect(list.policies.find((p) => p.name === 'webhooks')?.source).toBe('builtin');
    expect(
      (await t.app.inject({ method: 'DELETE', url: `${url}/login`, headers: admin })).statusCode,
    ).toBe(204);
    expectProblem(
      await t.app.inject({ method: 'DELETE', url: `${url}/login`, headers: admin }),
      404,
      'POLICY_NOT_FOUND',
    );
    expect(
      body<Decision>(await post(a.auth, '/v1/ratelimit/check', { policy: 'login', key: 'y' }))
        .limit,
    ).toBe(2);
  });

  it('reaches every replica through pub/sub', async () => {
    const a = await caller();
    const other = await buildTestApp({ env: { RATELIMIT_POLICIES_FILE: policiesFile } });
    try {
      const check = async () =>
        body<Decision>(
          await other.app.inject({
            method: 'POST',
            url: '/v1/ratelimit/check',
            headers: a.auth,
            payload: { policy: 'promo', key: 'x', cost: 0 },
          }),
        );
      expect(
        (
          await other.app.inject({
            method: 'POST',
            url: '/v1/ratelimit/check',
            headers: a.auth,
            payload: { policy: 'promo', key: 'x' },
          })
        ).statusCode,
      ).toBe(404);
      await t.app.inject({
        method: 'PUT',
        url: `/v1/admin/tenants/${a.tenant}/policies/promo`,
        headers: admin,
        payload: { algorithm: 'fixed_window', limit: 3, windowMs: 60000 },
      });
      const deadline = Date.now() + 3000;
      let limit: number | null = null;
      while (Date.now() < deadline && limit !== 3) {
        limit = (await check().catch(() => ({ limit: null }))).limit;
        if (limit !== 3) await new Promise((r) => setTimeout(r, 20));
      }
      expect(limit).toBe(3);
    } finally {
      await other.close();
    }
  });

  it('refuses invalid definitions and other tenants; a tenant admin key manages its own', async () => {
    const a = await caller(['ratelimit:check', 'admin']);
    const b = await caller();
    const own = `/v1/admin/tenants/${a.tenant}/policies/mine`;
    expectProblem(
      await t.app.inject({
        method: 'PUT',
        url: own,
        headers: a.auth,
        payload: { algorithm: 'gcra', limit: 0, periodMs: 1 },
      }),
      400,
      'VALIDATION_FAILED',
    );
    expectProblem(
      await t.app.inject({
        method: 'PUT',
        url: `/v1/admin/tenants/${a.tenant}/policies/Bad!`,
        headers: a.auth,
        payload: { algorithm: 'unlimited' },
      }),
      400,
      'VALIDATION_FAILED',
    );
    expect(
      (
        await t.app.inject({
          method: 'PUT',
          url: own,
          headers: a.auth,
          payload: { algorithm: 'unlimited' },
        })
      ).statusCode,
    ).toBe(201);
    expectProblem(
      await t.app.inject({
        method: 'GET',
        url: `/v1/admin/tenants/${b.tenant}/policies`,
        headers: a.auth,
      }),
      404,
      'TENANT_NOT_FOUND',
    );
    expectProblem(
      await t.app.inject({
        method: 'GET',
        url: `/v1/admin/tenants/${b.tenant}/policies`,
        headers: b.auth,
      }),
      403,
      'SCOPE_MISSING',
    );
  });

  it('reloads the file, and keeps the previous policies when the new file is invalid', async () => {
    const path = writePoliciesFile(
      [
        JSON.stringify({
          policies: { reloaded: { algorithm: 'fixed_window', limit: 1, windowMs: 1000 } },
        }),
      ],
      'reload.json',
    );
    const app = await buildTestApp({ env: { RATELIMIT_POLICIES_FILE: path } });
    try {
      const a = await newTenant(app.deps, ['ratelimit:check']);
      const limitOf = async () =>
        body<Decision>(
          await app.app.inject({
            method: 'POST',
            url: '/v1/ratelimit/check',
            headers: a.auth,
            payload: { policy: 'reloaded', key: 'k', cost: 0 },
          }),
        ).limit;
      expect(await limitOf()).toBe(1);
      writeFileSync(
        path,
        JSON.stringify({
          policies: { reloaded: { algorithm: 'fixed_window', limit: 9, windowMs: 1000 } },
        }),
      );
      app.deps.reloadPoliciesFile();
      expect(await limitOf()).toBe(9);
      writeFileSync(path, '{"policies": {"reloaded": {"algorithm": "nope"}}}');
      expect(() => app.deps.reloadPoliciesFile()).toThrow(/reload\.json/);
      expect(await limitOf()).toBe(9);
    } finally {
      await app.close();
    }
  });
});

describe('the gateway request quota', () => {
  it('refuses the key past its tenant quota with a 429 problem and rate-limit headers', async () => {
    await t.deps.admin.createTenant('quota-tenant', undefined).catch(() => undefined);
    const q = await addKey(t.deps, 'quota-tenant', ['ratelimit:check']);
    const call = () => post(q.auth, '/v1/ratelimit/check', { policy: 'internal', key: 'k' });
    for (let i = 0; i < 3; i++) expect((await call()).statusCode).toBe(200);
    const refused = await call();
    const p = expectProblem(refused, 429, 'QUOTA_EXCEEDED');
    expect(p.type).toBe('https://iana.org/assignments/http-problem-types#quota-exceeded');
    expect(p['violated-policies']).toEqual(['quota']);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    expect(refused.headers['ratelimit-policy']).toBe('"quota";q=3;w=60');
    expect(refused.headers.ratelimit).toMatch(/^"quota";r=0;t=\d+$/);
    // Another key of the same tenant has its own count.
    const q2 = await addKey(t.deps, 'quota-tenant', ['ratelimit:check']);
    expect(
      (await post(q2.auth, '/v1/ratelimit/check', { policy: 'internal', key: 'k' })).statusCode,
    ).toBe(200);
    // Probes and the operator are never counted.
    expect((await t.app.inject({ method: 'GET', url: '/livez' })).statusCode).toBe(200);
    expect(
      await t.deps.metrics.registry.getSingleMetricAsString('gateway_quota_exceeded_total'),
    ).toMatch(/ [1-9]/);
  });

  it('is shared by replicas through Redis', async () => {
    await t.deps.admin.createTenant('quota-tenant', undefined).catch(() => undefined);
    const q = await addKey(t.deps, 'quota-tenant', ['ratelimit:check']);
    const other = await buildTestApp({ env: { RATELIMIT_POLICIES_FILE: policiesFile } });
    try {
      const call = (app: typeof t) =>
        app.app.inject({
          method: 'POST',
          url: '/v1/ratelimit/check',
          headers: q.auth,
          payload: { policy: 'internal', key: 'k' },
        });
      expect((await call(t)).statusCode).toBe(200);
      expect((await call(t)).statusCode).toBe(200);
      await t.deps.quota.flush();
      // The other replica learns the shared count at its next flush.
      expect((await call(other)).statusCode).toBe(200);
      await other.deps.quota.flush();
      expectProblem(await call(other), 429, 'QUOTA_EXCEEDED');
    } finally {
      await other.close();
    }
  });
});

describe('POST /v1/ratelimit/reset', () => {
  it('deletes what was counted: the next check starts from a full quota', async () => {
    const a = await caller(['ratelimit:check', 'ratelimit:reset']);
    await check(a.auth, 'login', 'user:r');
    await check(a.auth, 'login', 'user:r');
    expect((await check(a.auth, 'login', 'user:r')).allowed).toBe(false);
    // The denial is remembered in-process: without the reset it would answer from memory.
    expect(t.deps.ratelimit.localSize()).toBeGreaterThan(0);
    const res = await post(a.auth, '/v1/ratelimit/reset', { policy: 'login', key: 'user:r' });
    expect(res.statusCode).toBe(200);
    expect(body(res)).toEqual({ policy: 'login', key: 'user:r', cleared: true });
    expect(await check(a.auth, 'login', 'user:r')).toMatchObject({ allowed: true, remaining: 1 });
    // Nothing stored (never used, or an unlimited policy): cleared false.
    expect(
      body(await post(a.auth, '/v1/ratelimit/reset', { policy: 'login', key: 'user:fresh' })),
    ).toEqual({ policy: 'login', key: 'user:fresh', cleared: false });
    expect(
      body(await post(a.auth, '/v1/ratelimit/reset', { policy: 'internal', key: 'user:r' })),
    ).toEqual({ policy: 'internal', key: 'user:r', cleared: false });
    // An inline definition resets its own state only.
    const inline = { algorithm: 'fixed_window', limit: 1, windowMs: 60000 };
    await check(a.auth, inline, 'user:r');
    expect((await check(a.auth, inline, 'user:r')).allowed).toBe(false);
    expect(
      body(await post(a.auth, '/v1/ratelimit/reset', { policy: inline, key: 'user:r' })),
    ).toMatchObject({ policy: 'inline', cleared: true });
    expect((await check(a.auth, inline, 'user:r')).allowed).toBe(true);
    expect(
      await t.deps.metrics.registry.getSingleMetricAsString('gateway_ratelimit_resets_total'),
    ).toMatch(/policy="login",cleared="true"\} [1-9]/);
  });

  it('needs ratelimit:reset, restricted by its glob like checks', async () => {
    const checker = await caller(['ratelimit:check']);
    expectProblem(
      await post(checker.auth, '/v1/ratelimit/reset', { policy: 'login', key: 'u' }),
      403,
      'SCOPE_MISSING',
    );
    const narrow = await caller(['ratelimit:check', 'ratelimit:reset:log*']);
    expect(
      (await post(narrow.auth, '/v1/ratelimit/reset', { policy: 'login', key: 'u' })).statusCode,
    ).toBe(200);
    expectProblem(
      await post(narrow.auth, '/v1/ratelimit/reset', { policy: 'public', key: 'u' }),
      403,
      'SCOPE_MISSING',
    );
    expectProblem(
      await post(narrow.auth, '/v1/ratelimit/reset', {
        policy: { algorithm: 'fixed_window', limit: 1, windowMs: 1000 },
        key: 'u',
      }),
      403,
      'SCOPE_MISSING',
    );
  });

  it('refuses bad input with a 400 or 404 and resets nothing', async () => {
    const a = await caller(['ratelimit:check', 'ratelimit:reset']);
    await check(a.auth, 'login', 'user:b');
    await check(a.auth, 'login', 'user:b');
    for (const payload of [
      { policy: 'login' },
      { policy: 'login', key: 'user:b', headerValue: 'x' },
      { policy: 'login', key: '' },
      { policy: 'login', key: 'user:b', extra: 1 },
      { policy: 'login', key: 'a\u0000b' },
      { policy: { algorithm: 'token_bucket' }, key: 'user:b' },
    ]) {
      expectProblem(await post(a.auth, '/v1/ratelimit/reset', payload), 400, 'VALIDATION_FAILED');
    }
    expectProblem(
      await post(a.auth, '/v1/ratelimit/reset', { policy: 'nope', key: 'user:b' }),
      404,
      'POLICY_NOT_FOUND',
    );
    expect((await check(a.auth, 'login', 'user:b')).allowed).toBe(false);
  });

  it('every replica forgets its remembered denial at once (pub/sub)', async () => {
    const a = await caller(['ratelimit:check', 'ratelimit:reset']);
    const other = await buildTestApp({ env: { RATELIMIT_POLICIES_FILE: policiesFile } });
    try {
      const onOther = () =>
        other.app
          .inject({
            method: 'POST',
            url: '/v1/ratelimit/check',
            headers: a.auth,
            payload: { policy: 'login', key: 'user:x' },
          })
          .then((r) => body<Decision>(r));
      await onOther();
      await onOther();
      expect((await onOther()).allowed).toBe(false);
      expect(other.deps.ratelimit.localSize()).toBe(1); // remembered until the window ends
      await post(a.auth, '/v1/ratelimit/reset', { policy: 'login', key: 'user:x' });
      const deadline = Date.now() + 3000;
      while (other.deps.ratelimit.localSize() > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 10));
      }
      expect(other.deps.ratelimit.localSize()).toBe(0);
      expect(await onOther()).toMatchObject({ allowed: true, remaining: 1 });
    } finally {
      await other.close();
    }
  });
});

describe('the rate-limit routes, common security', () => {
  let n = 0;
  const fresh = () => `user:${Date.now()}-${++n}`;
  /**
   * Uses up the tenant's "login" limit (2 per minute) for `key` with a checking key of the
   * tenant's, asserts the last check was denied, and returns a function saying whether that
   * limit is still closed.
   */
  async function exhaust(tenant: string, key: string): Promise<() => Promise<boolean>> {
    const k = await addKey(t.deps, tenant, ['ratelimit:check']);
    for (let i = 0; i < 2; i++) await check(k.auth, 'login', key);
    const closed = async () => !(await check(k.auth, 'login', key)).allowed;
    expect(await closed()).toBe(true);
    return closed;
  }

  describe('POST /v1/ratelimit/check', () => {
    runCommonRouteTests({
      app: () => t,
      scope: 'ratelimit:check',
      wrongScope: 'ratelimit:reset',
      request: (o) => ({
        method: 'POST',
        url: '/v1/ratelimit/check',
        headers: o.auth,
        payload: { policy: 'public', key: fresh() },
      }),
      async crossTenant(owner, other) {
        const key = fresh();
        const ownerClosed = await exhaust(owner.tenant, key);
        // The other tenant's "login" for the same identifier is its own.
        expect(await check(other.auth, 'login', key)).toMatchObject({
          allowed: true,
          remaining: 1,
        });
        expect(await ownerClosed()).toBe(true);
      },
    });
  });

  describe('POST /v1/ratelimit/_check', () => {
    runCommonRouteTests({
      app: () => t,
      scope: 'ratelimit:check',
      wrongScope: 'cache:read',
      request: (o) => ({
        method: 'POST',
        url: '/v1/ratelimit/_check',
        headers: o.auth,
        payload: { checks: [{ policy: 'public', key: fresh() }] },
      }),
    });
  });

  describe('POST /v1/ratelimit/reset', () => {
    runCommonRouteTests({
      app: () => t,
      scope: 'ratelimit:reset',
      wrongScope: 'ratelimit:check',
      request: (o) => ({
        method: 'POST',
        url: '/v1/ratelimit/reset',
        headers: o.auth,
        payload: { policy: 'public', key: fresh() },
      }),
      async crossTenant(owner, other) {
        const key = fresh();
        const ownerClosed = await exhaust(owner.tenant, key);
        const res = await post(other.auth, '/v1/ratelimit/reset', { policy: 'login', key });
        expect(body(res)).toEqual({ policy: 'login', key, cleared: false });
        expect(await ownerClosed()).toBe(true); // the owner's limit still holds
      },
    });
  });
});
