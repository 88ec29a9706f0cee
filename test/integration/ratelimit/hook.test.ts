/**
 * The hook as each API gateway calls it, over real sockets: Envoy ext_authz (HTTP service: the
 * original method and path under the prefix, no body), Traefik forwardAuth (GET with
 * X-Forwarded-*), NGINX auth_request (GET subrequest, `?compat=nginx` for 403 denials).
 */
import { describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, newTenant, rawHttp, useTestApp } from '../../harness/app.js';

const t = useTestApp();

async function port(): Promise<number> {
  if (t.app.server.listening) return (t.app.server.address() as { port: number }).port;
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  return (t.app.server.address() as { port: number }).port;
}

/** A tenant with a hook key and a tight policy of its own. */
async function setup(
  definition: Record<string, unknown> = { algorithm: 'fixed_window', limit: 2, windowMs: 60000 },
  scopes = ['ratelimit:check'],
) {
  const a = await newTenant(t.deps, scopes);
  const res = await t.app.inject({
    method: 'PUT',
    url: `/v1/admin/tenants/${a.tenant}/policies/edge`,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    payload: definition,
  });
  expect(res.statusCode).toBe(201);
  return { ...a, gw: { 'x-gateway-key': a.key } };
}

describe('Envoy ext_authz (HTTP service)', () => {
  it('any method and path under the prefix; 200 then 429 problem with Retry-After', async () => {
    const a = await setup();
    const p = await port();
    const headers = { ...a.gw, 'x-forwarded-for': '203.0.113.7', 'content-length': '0' };
    const first = await rawHttp(p, 'POST', '/v1/ratelimit/hook/edge/api/orders/7?x=1', headers);
    expect(first.status).toBe(200);
    expect(first.headers['ratelimit-policy']).toBe('"edge";q=2;w=60');
    expect(first.headers['x-tenant-id']).toBe(a.tenant);
    expect(first.headers['x-ratelimit-identity']).toBe('ip:203.0.113.7');
    const second = await rawHttp(p, 'DELETE', '/v1/ratelimit/hook/edge/other', headers);
    expect(second.status).toBe(200);
    const denied = await rawHttp(p, 'PATCH', '/v1/ratelimit/hook/edge/api/orders/7', headers);
    expect(denied.status).toBe(429);
    expect(denied.headers['content-type']).toContain('application/problem+json');
    expect(Number(denied.headers['retry-after'])).toBeGreaterThan(0);
    const problem = JSON.parse(denied.body) as Record<string, unknown>;
    expect(problem.type).toBe('https://iana.org/assignments/http-problem-types#quota-exceeded');
    expect(problem['violated-policies']).toEqual(['edge']);
    // Another client address has its own limit.
    const other = await rawHttp(p, 'GET', '/v1/ratelimit/hook/edge', {
      ...a.gw,
      'x-forwarded-for': '198.51.100.1',
    });
    expect(other.status).toBe(200);
  });

  it('ignores a body of any type, and HEAD and OPTIONS work too', async () => {
    const a = await setup({ algorithm: 'unlimited' });
    const p = await port();
    const withBody = await rawHttp(
      p,
      'PUT',
      '/v1/ratelimit/hook/edge/upload',
      { ...a.gw, 'content-type': 'application/x-www-form-urlencoded' },
      'a=1&b=2',
    );
    expect(withBody.status).toBe(200);
    expect((await rawHttp(p, 'HEAD', '/v1/ratelimit/hook/edge/x', a.gw)).status).toBe(200);
    expect((await rawHttp(p, 'OPTIONS', '/v1/ratelimit/hook/edge/x', a.gw)).status).toBe(200);
  });

  it('authenticates with X-Gateway-Key only: the end user Authorization header is left alone', async () => {
    const a = await setup();
    const p = await port();
    const asBearer = await rawHttp(p, 'GET', '/v1/ratelimit/hook/edge/x', {
      authorization: `Bearer ${a.key}`,
    });
    expect(asBearer.status).toBe(401);
    const both = await rawHttp(p, 'GET', '/v1/ratelimit/hook/edge/x', {
      ...a.gw,
      authorization: 'Bearer end-user-token',
    });
    expect(both.status).toBe(200);
    expect(
      (await rawHttp(p, 'GET', '/v1/ratelimit/hook/edge/x', { 'x-gateway-key': 'cgw_wrong' }))
        .status,
    ).toBe(401);
    const nope = await rawHttp(p, 'GET', '/v1/ratelimit/hook/nope/x', a.gw);
    expect(nope.status).toBe(404);
    expect(JSON.parse(nope.body).code).toBe('POLICY_NOT_FOUND');
  });
});

describe('Traefik forwardAuth', () => {
  it('GET with X-Forwarded-* from a trusted proxy limits the forwarded client', async () => {
    const a = await setup();
    const p = await port();
    const forwarded = (ip: string) => ({
      ...a.gw,
      'x-forwarded-method': 'POST',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'api.example.com',
      'x-forwarded-uri': '/orders',
      'x-forwarded-for': ip,
    });
    expect(
      (await rawHttp(p, 'GET', '/v1/ratelimit/hook/edge', forwarded('192.0.2.10'))).status,
    ).toBe(200);
    expect(
      (await rawHttp(p, 'GET', '/v1/ratelimit/hook/edge', forwarded('192.0.2.10'))).status,
    ).toBe(200);
    expect(
      (await rawHttp(p, 'GET', '/v1/ratelimit/hook/edge', forwarded('192.0.2.10'))).status,
    ).toBe(429);
    expect(
      (await rawHttp(p, 'GET', '/v1/ratelimit/hook/edge', forwarded('192.0.2.11'))).status,
    ).toBe(200);
  });

  it('a client cannot spoof its address by prepending to X-Forwarded-For', async () => {
    const a = await setup({ algorithm: 'fixed_window', limit: 1, windowMs: 60000 });
    const p = await port();
    // The proxy appends the real client (192.0.2.20) to whatever the client sent.
    const hit = (spoofed: string) =>
      rawHttp(p, 'GET', '/v1/ratelimit/hook/edge', {
        ...a.gw,
        'x-forwarded-for': `${spoofed}, 192.0.2.20`,
      });
    expect((await hit('10.1.1.1')).status).toBe(200);
    expect((await hit('10.2.2.2')).status).toBe(429);
  });
});

describe('NGINX auth_request', () => {
  it('?compat=nginx denies with 403 (a 429 would become 500) and keeps Retry-After', async () => {
    const a = await setup({ algorithm: 'fixed_window', limit: 1, windowMs: 60000 });
    const p = await port();
    const headers = { ...a.gw, 'x-original-uri': '/api/x', 'x-forwarded-for': '192.0.2.30' };
    expect((await rawHttp(p, 'GET', '/v1/ratelimit/hook/edge?compat=nginx', headers)).status).toBe(
      200,
    );
    const denied = await rawHttp(p, 'GET', '/v1/ratelimit/hook/edge?compat=nginx', headers);
    expect(denied.status).toBe(403);
    expect(JSON.parse(denied.body).code).toBe('QUOTA_EXCEEDED_COMPAT');
    expect(Number(denied.headers['retry-after'])).toBeGreaterThan(0);
    const bad = await rawHttp(p, 'GET', '/v1/ratelimit/hook/edge?compat=haproxy', headers);
    expect(bad.status).toBe(400);
  });
});

describe('identity and modes', () => {
  it('identifyBy a header: limited per header value (hashed), by address without it', async () => {
    const a = await setup({
      algorithm: 'fixed_window',
      limit: 1,
      windowMs: 60000,
      identifyBy: 'header:X-Api-Key',
    });
    const p = await port();
    const withKey = (k: string) =>
      rawHttp(p, 'GET', '/v1/ratelimit/hook/edge/x', { ...a.gw, 'x-api-key': k });
    const first = await withKey('user-key-1');
    expect(first.status).toBe(200);
    expect(first.headers['x-ratelimit-identity']).toBe('header:x-api-key');
    expect((await withKey('user-key-1')).status).toBe(429);
    expect((await withKey('user-key-2')).status).toBe(200);
    const anonymous = await rawHttp(p, 'GET', '/v1/ratelimit/hook/edge/x', {
      ...a.gw,
      'x-forwarded-for': '192.0.2.99',
    });
    expect(anonymous.headers['x-ratelimit-identity']).toBe('ip:192.0.2.99');
    // The raw header value never reaches a Redis key.
    const keys = await t.deps.redis.primary.scan('0', 'MATCH', `${a.tenant}:rl:*`, 'COUNT', 1000);
    expect(keys[1].join(' ')).not.toContain('user-key-1');
  });

  it('a hook identity can be reset: an address by its key, a header identity by the value', async () => {
    const a = await setup(
      { algorithm: 'fixed_window', limit: 1, windowMs: 60000, identifyBy: 'header:X-Api-Key' },
      ['ratelimit:check', 'ratelimit:reset'],
    );
    const p = await port();
    const call = (h: Record<string, string>) =>
      rawHttp(p, 'GET', '/v1/ratelimit/hook/edge/x', { ...a.gw, ...h });
    const reset = (payload: Record<string, string>) =>
      t.app.inject({
        method: 'POST',
        url: '/v1/ratelimit/reset',
        headers: a.auth,
        payload: { policy: 'edge', ...payload },
      });
    expect((await call({ 'x-api-key': 'customer-secret' })).status).toBe(200);
    expect((await call({ 'x-api-key': 'customer-secret' })).status).toBe(429);
    const byValue = await reset({ headerValue: 'customer-secret' });
    expect(byValue.statusCode).toBe(200);
    const result = JSON.parse(byValue.body) as { key: string; cleared: boolean };
    expect(result.cleared).toBe(true);
    expect(result.key).toMatch(/^h:/); // the derived identity, never the value
    expect((await call({ 'x-api-key': 'customer-secret' })).status).toBe(200);

    const first = await call({ 'x-forwarded-for': '192.0.2.77' });
    expect((await call({ 'x-forwarded-for': '192.0.2.77' })).status).toBe(429);
    const identity = first.headers['x-ratelimit-identity'] as string;
    expect(identity).toBe('ip:192.0.2.77');
    expect(JSON.parse((await reset({ key: identity })).body)).toMatchObject({ cleared: true });
    expect((await call({ 'x-forwarded-for': '192.0.2.77' })).status).toBe(200);
  });

  it('shadow mode allows, reports the would-be denial and counts it', async () => {
    const a = await setup({ algorithm: 'fixed_window', limit: 1, windowMs: 60000, shadow: true });
    const p = await port();
    await rawHttp(p, 'GET', '/v1/ratelimit/hook/edge', a.gw);
    const second = await rawHttp(p, 'GET', '/v1/ratelimit/hook/edge', a.gw);
    expect(second.status).toBe(200);
    expect(JSON.parse(second.body)).toMatchObject({ allowed: true, shadowDenied: true });
    expect(
      await t.deps.metrics.registry.getSingleMetricAsString('gateway_ratelimit_decisions_total'),
    ).toMatch(/policy="tenant",outcome="shadow_denied"\} [1-9]/);
  });

  it('answers repeated denials from the in-process cache', async () => {
    const a = await setup({ algorithm: 'fixed_window', limit: 1, windowMs: 60000 });
    const p = await port();
    for (let i = 0; i < 5; i++)
      await rawHttp(p, 'GET', '/v1/ratelimit/hook/edge', {
        ...a.gw,
        'x-forwarded-for': '192.0.2.50',
      });
    const text = await t.deps.metrics.registry.getSingleMetricAsString(
      'gateway_ratelimit_local_denials_total',
    );
    expect(Number(/ (\d+)$/m.exec(text)?.[1])).toBeGreaterThanOrEqual(3);
  });
});

describe('TRUSTED_PROXIES', () => {
  // The test client connects from 127.0.0.1, which this app does not trust.
  const strict = useTestApp({ env: { TRUSTED_PROXIES: '10.9.0.0/16' } });

  it('ignores X-Forwarded-For from a peer it does not trust, and limits the peer', async () => {
    const a = await newTenant(strict.deps, ['ratelimit:check']);
    const res = await strict.app.inject({
      method: 'PUT',
      url: `/v1/admin/tenants/${a.tenant}/policies/edge`,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      payload: { algorithm: 'fixed_window', limit: 1, windowMs: 60000 },
    });
    expect(res.statusCode).toBe(201);
    const hit = (forwardedFor: string) =>
      strict.app.inject({
        method: 'GET',
        url: '/v1/ratelimit/hook/edge',
        remoteAddress: '127.0.0.1',
        headers: { 'x-gateway-key': a.key, 'x-forwarded-for': forwardedFor },
      });
    const first = await hit('192.0.2.30');
    expect(first.statusCode).toBe(200);
    expect(first.headers['x-ratelimit-identity']).toBe('ip:127.0.0.1');
    // Another forwarded address is the same peer, already limited; asked again, same answer.
    expect((await hit('192.0.2.31')).statusCode).toBe(429);
    expect((await hit('192.0.2.32')).statusCode).toBe(429);
  });
});
