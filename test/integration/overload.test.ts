/**
 * Load shedding while the process is overloaded (RELIABILITY scenario 17; the flag is what
 * http/overload.ts sets from the event loop's delay): new requests get 503 OVERLOADED with
 * Retry-After before any work, probes keep answering, and rate-limit decisions follow their
 * policy's failure mode without Redis, so API-gateway hooks still answer within their budget.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  ADMIN_TOKEN,
  body,
  expectProblem,
  newTenant,
  useTestApp,
  writePoliciesFile,
} from '../harness/app.js';

const policiesFile = writePoliciesFile([
  'policies:',
  '  open-p: { algorithm: fixed_window, limit: 5, windowMs: 60000, failureMode: open }',
  '  closed-p: { algorithm: fixed_window, limit: 5, windowMs: 60000, failureMode: closed }',
  'envoy:',
  '  - domain: edge',
  '    descriptors:',
  '      - key: remote_address',
  '        rate_limit: { unit: minute, requests_per_unit: 5 }',
]);
const t = useTestApp({ env: { RATELIMIT_POLICIES_FILE: policiesFile } });

afterEach(() => {
  t.deps.lifecycle.overloaded = false;
});

const metric = async (name: string) => t.deps.metrics.registry.getSingleMetricAsString(name);

describe('overloaded', () => {
  it('sheds requests with 503 OVERLOADED and Retry-After, before authentication and any work', async () => {
    const a = await newTenant(t.deps, ['cache:read', 'cache:write']);
    t.deps.lifecycle.overloaded = true;
    const put = await t.app.inject({
      method: 'PUT',
      url: '/v1/cache/shed-me',
      headers: a.auth,
      payload: { value: 1 },
    });
    expectProblem(put, 503, 'OVERLOADED');
    expect(put.headers['retry-after']).toBe('1');
    expect(body<{ type: string }>(put).type).toMatch(/overloaded$/);
    // No key at all: shed all the same (authentication is work too).
    expectProblem(await t.app.inject({ method: 'GET', url: '/v1/cache/x' }), 503, 'OVERLOADED');
    expectProblem(await t.app.inject({ method: 'GET', url: '/no/such/route' }), 503, 'OVERLOADED');
    expect(await metric('gateway_requests_shed_total')).toMatch(
      /gateway_requests_shed_total\{module="cache"\} 2/,
    );
    // Probes answer: a failing liveness probe would restart the pod in the middle of the load.
    expect((await t.app.inject({ method: 'GET', url: '/livez' })).statusCode).toBe(200);
    expect((await t.app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);

    t.deps.lifecycle.overloaded = false;
    const get = await t.app.inject({ method: 'GET', url: '/v1/cache/shed-me', headers: a.auth });
    expectProblem(get, 404, 'CACHE_MISS'); // the shed PUT wrote nothing
  });

  it('decides rate limits by the failure mode without Redis, and counts nothing', async () => {
    const a = await newTenant(t.deps, ['ratelimit:check']);
    const key = a.auth.authorization.slice('Bearer '.length);
    const check = (policy: string) =>
      t.app.inject({
        method: 'POST',
        url: '/v1/ratelimit/check',
        headers: a.auth,
        payload: { policy, key: 'user-1' },
      });
    const hook = (policy: string) =>
      t.app.inject({
        method: 'GET',
        url: `/v1/ratelimit/hook/${policy}/orders`,
        remoteAddress: '127.0.0.1',
        headers: { 'x-gateway-key': key, 'x-forwarded-for': '192.0.2.7' },
      });
    const envoy = () =>
      t.app.inject({
        method: 'POST',
        url: '/v1/ratelimit/envoy',
        headers: a.auth,
        payload: {
          domain: 'edge',
          descriptors: [{ entries: [{ key: 'remote_address', value: '192.0.2.7' }] }],
        },
      });

    t.deps.lifecycle.overloaded = true;
    const open = await check('open-p');
    expect(open.statusCode).toBe(200);
    expect(body(open)).toMatchObject({ allowed: true, degraded: true });
    expect(open.headers['x-ratelimit-degraded']).toBe('true');
    const closed = await check('closed-p');
    expectProblem(closed, 503, 'OVERLOADED');
    expect(closed.headers['retry-after']).toBe('1');
    const batch = await t.app.inject({
      method: 'POST',
      url: '/v1/ratelimit/_check',
      headers: a.auth,
      payload: { checks: [{ policy: 'open-p', key: 'user-1' }] },
    });
    expect(batch.statusCode).toBe(200);
    expect(body(batch)).toMatchObject({ allowed: true, results: [{ degraded: true }] });
    // The hook never answers a 5xx for an open policy: Envoy would deny, NGINX would fail.
    const allowed = await hook('open-p');
    expect(allowed.statusCode).toBe(200);
    expect(allowed.headers['x-ratelimit-degraded']).toBe('true');
    expectProblem(await hook('closed-p'), 503, 'OVERLOADED');
    const rls = await envoy();
    expect(rls.statusCode).toBe(200);
    expect(rls.headers['x-ratelimit-degraded']).toBe('true');
    const decisions = await metric('gateway_ratelimit_decisions_total');
    expect(decisions).toMatch(/policy="closed-p",outcome="degraded_denied"\} 2/);
    expect(decisions).toMatch(/policy="open-p",outcome="degraded_allowed"\} 3/);
    // Not Redis errors: nothing about Redis went wrong.
    expect(await metric('gateway_redis_errors_total')).not.toMatch(/module="ratelimit"/);

    t.deps.lifecycle.overloaded = false;
    // Nothing was consumed while shedding: the first real decisions see full limits.
    expect(body(await check('open-p'))).toMatchObject({ allowed: true, remaining: 4 });
    expect(body(await check('closed-p'))).toMatchObject({ allowed: true, remaining: 4 });
    expect(
      body<{ statuses: { limitRemaining: number }[] }>(await envoy()).statuses[0],
    ).toMatchObject({ limitRemaining: 4 });
  });

  it('sheds the admin API too, but never the probes', async () => {
    t.deps.lifecycle.overloaded = true;
    const res = await t.app.inject({
      method: 'GET',
      url: '/v1/admin/tenants',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expectProblem(res, 503, 'OVERLOADED');
    expect((await t.app.inject({ method: 'GET', url: '/readyz?verbose' })).statusCode).toBe(200);
  });
});
