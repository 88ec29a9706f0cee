import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TestApp, body, buildTestApp, newTenant } from '../../harness/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp({ env: { READ_FROM_REPLICAS: 'true' } });
  const deadline = Date.now() + 10_000;
  while (t.deps.redis.state().replica !== 'ready' && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 20));
});
afterAll(async () => {
  await t?.close();
});

describe('READ_FROM_REPLICAS', () => {
  it('serves GET and _mget from a replica connection', async () => {
    expect(t.deps.redis.state().replica).toBe('ready');
    const reader = t.deps.redis.reader();
    expect(reader).not.toBe(t.deps.redis.primary);
    expect(await reader.info('replication')).toContain('role:slave');

    const a = await newTenant(t.deps, ['cache:read', 'cache:write']);
    await t.app.inject({
      method: 'PUT',
      url: '/v1/cache/r',
      headers: a.auth,
      payload: { value: 'replicated' },
    });
    // Replication is asynchronous: the value shows up on the replica within moments.
    let got: Record<string, unknown> = {};
    for (let i = 0; i < 100 && got.value === undefined; i++) {
      const res = await t.app.inject({ method: 'GET', url: '/v1/cache/r', headers: a.auth });
      if (res.statusCode === 200) got = body(res);
      else await new Promise((r) => setTimeout(r, 10));
    }
    expect(got.value).toBe('replicated');
    const m = await t.app.inject({
      method: 'POST',
      url: '/v1/cache/_mget',
      headers: a.auth,
      payload: { keys: ['r'] },
    });
    expect(body<{ items: { found: boolean }[] }>(m).items[0]?.found).toBe(true);
  });

  it('falls back to the master when the replica connection is not ready', async () => {
    const a = await newTenant(t.deps, ['cache:read', 'cache:write']);
    await t.app.inject({
      method: 'PUT',
      url: '/v1/cache/f',
      headers: a.auth,
      payload: { value: 1 },
    });
    const replica = t.deps.redis.reader();
    const ended = new Promise((r) => replica.once('end', r));
    replica.disconnect(); // for good: this test is the file's last
    await ended;
    expect(t.deps.redis.reader()).toBe(t.deps.redis.primary);
    const res = await t.app.inject({ method: 'GET', url: '/v1/cache/f', headers: a.auth });
    expect(res.statusCode).toBe(200);
  });
});
