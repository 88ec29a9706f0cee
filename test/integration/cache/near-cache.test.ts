/** The process-local near cache against real Redis client tracking: served locally, and coherent. */
import { describe, expect, it } from 'vitest';
import { type TestApp, adminRedis, body, newTenant, useTestApp } from '../../harness/app.js';

const a = useTestApp();
const b = useTestApp();
const off = useTestApp({ env: { CACHE_LOCAL_MAX_BYTES: '0' } });
const RW = ['cache:read', 'cache:write'];

async function localHits(app: TestApp): Promise<number> {
  const m = await app.deps.metrics.registry
    .getSingleMetric('gateway_cache_local_hits_total')
    ?.get();
  return m?.values[0]?.value ?? 0;
}

async function waitTracking(app: TestApp): Promise<void> {
  const deadline = Date.now() + 5000;
  while (app.deps.redis.tracking?.active() !== true && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 20));
  expect(app.deps.redis.tracking?.active()).toBe(true);
}

/**
 * Polls until the status is `want` (or 200 ms pass). Waits a millisecond between reads: answers
 * from the near cache involve no I/O, so a tight loop would keep the invalidation from being read.
 */
async function pollStatus(
  app: TestApp,
  auth: Record<string, string>,
  key: string,
  want: number,
): Promise<number> {
  const deadline = Date.now() + 200;
  let status = 0;
  do {
    status = (await app.app.inject({ method: 'GET', url: `/v1/cache/${key}`, headers: auth }))
      .statusCode;
    if (status !== want) await new Promise((r) => setTimeout(r, 1));
  } while (status !== want && Date.now() < deadline);
  return status;
}

const get = async (app: TestApp, auth: Record<string, string>, key: string) =>
  body(await app.app.inject({ method: 'GET', url: `/v1/cache/${key}`, headers: auth }));

describe('near cache', () => {
  it('answers repeated reads locally, without Redis', async () => {
    await waitTracking(a);
    const t = await newTenant(a.deps, RW);
    await a.app.inject({
      method: 'PUT',
      url: '/v1/cache/n',
      headers: t.auth,
      payload: { value: 'v' },
    });
    await get(a, t.auth, 'n');
    const before = await localHits(a);
    for (let i = 0; i < 5; i++) expect((await get(a, t.auth, 'n')).value).toBe('v');
    expect((await localHits(a)) - before).toBe(5);
    expect(a.deps.redis.state().tracking).toBe('active');
  });

  it('a write through another gateway replica reaches this one at once (invalidation)', async () => {
    await waitTracking(a);
    await waitTracking(b);
    const t = await newTenant(a.deps, RW);
    await a.app.inject({
      method: 'PUT',
      url: '/v1/cache/shared',
      headers: t.auth,
      payload: { value: 1 },
    });
    await get(b, t.auth, 'shared');
    await get(b, t.auth, 'shared'); // held locally by b now
    for (let v = 2; v <= 20; v++) {
      await a.app.inject({
        method: 'PUT',
        url: '/v1/cache/shared',
        headers: t.auth,
        payload: { value: v },
      });
      const started = Date.now();
      let seen = (await get(b, t.auth, 'shared')).value;
      while (seen !== v && Date.now() - started < 200) {
        await new Promise((r) => setTimeout(r, 1));
        seen = (await get(b, t.auth, 'shared')).value;
      }
      expect(seen, `value ${v} reached the other replica within 200 ms`).toBe(v);
    }
    await a.app.inject({ method: 'DELETE', url: '/v1/cache/shared', headers: t.auth });
    expect(await pollStatus(b, t.auth, 'shared', 404)).toBe(404);
  });

  it('a write straight to Redis, behind the gateway, invalidates too', async () => {
    await waitTracking(a);
    const t = await newTenant(a.deps, RW);
    await a.app.inject({
      method: 'PUT',
      url: '/v1/cache/raw',
      headers: t.auth,
      payload: { value: 'old' },
    });
    await get(a, t.auth, 'raw');
    const other = a.deps.redis.primary.duplicate({ enableOfflineQueue: true });
    await other.del(`${t.tenant}:cache:raw`);
    other.disconnect();
    expect(await pollStatus(a, t.auth, 'raw', 404)).toBe(404);
  });

  it('drops everything when the invalidation connection is lost, and tracks again after it returns', async () => {
    await waitTracking(a);
    const t = await newTenant(a.deps, RW);
    await a.app.inject({
      method: 'PUT',
      url: '/v1/cache/r',
      headers: t.auth,
      payload: { value: 1 },
    });
    await get(a, t.auth, 'r');
    expect(a.deps.cache.nearStats?.().entries).toBeGreaterThan(0);
    // The connection this app's reads are redirected to.
    const info = (await a.deps.redis.primary.call('CLIENT', 'TRACKINGINFO')) as unknown[];
    const trackerId = String(info[info.indexOf('redirect') + 1]);
    const admin = await adminRedis(a);
    await admin.call('CLIENT', 'KILL', 'ID', trackerId);
    admin.disconnect();
    const deadline = Date.now() + 2000;
    while (a.deps.cache.nearStats?.().entries !== 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 5));
    expect(a.deps.cache.nearStats?.().entries).toBe(0);
    await waitTracking(a);
    await a.app.inject({
      method: 'PUT',
      url: '/v1/cache/r',
      headers: t.auth,
      payload: { value: 2 },
    });
    expect((await get(a, t.auth, 'r')).value).toBe(2);
  });

  it('honours expiry of a locally held value', async () => {
    await waitTracking(a);
    const t = await newTenant(a.deps, RW);
    await a.app.inject({
      method: 'PUT',
      url: '/v1/cache/e',
      headers: t.auth,
      payload: { value: 1, ttl: 1 },
    });
    await get(a, t.auth, 'e');
    await new Promise((r) => setTimeout(r, 1050));
    expect(
      (await a.app.inject({ method: 'GET', url: '/v1/cache/e', headers: t.auth })).statusCode,
    ).toBe(404);
  });

  it('is off with CACHE_LOCAL_MAX_BYTES=0 (no tracking connection)', async () => {
    expect(off.deps.redis.tracking).toBeUndefined();
    const t = await newTenant(off.deps, RW);
    await off.app.inject({
      method: 'PUT',
      url: '/v1/cache/o',
      headers: t.auth,
      payload: { value: 1 },
    });
    await get(off, t.auth, 'o');
    await get(off, t.auth, 'o');
    expect(await localHits(off)).toBe(0);
  });
});
