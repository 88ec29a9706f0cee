/** Stampede protection (leases, waiting readers), stale-while-revalidate, binary values, compression. */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { body, expectProblem, newTenant, useTestApp } from '../../harness/app.js';

const t = useTestApp();
const RW = ['cache:read', 'cache:write'];
const url = (key: string) => `/v1/cache/${encodeURIComponent(key)}`;

describe('leases (GET ?lease=)', () => {
  it('100 concurrent readers of a missing key: exactly one gets the lease, the others 404 with Retry-After', async () => {
    const a = await newTenant(t.deps, RW);
    const results = await Promise.all(
      Array.from({ length: 100 }, () =>
        t.app.inject({ method: 'GET', url: `${url('hot')}?lease=5000`, headers: a.auth }),
      ),
    );
    expect(results.every((r) => r.statusCode === 404)).toBe(true);
    const holders = results.filter((r) => r.headers['x-cache-lease'] !== undefined);
    expect(holders).toHaveLength(1);
    const p = expectProblem(holders[0]!, 404, 'CACHE_MISS');
    expect(p.lease).toMatchObject({ token: holders[0]!.headers['x-cache-lease'], ttlMs: 5000 });
    for (const r of results.filter((x) => x !== holders[0])) {
      expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(Number(r.headers['retry-after'])).toBeLessThanOrEqual(5);
    }
  });

  it('waiting readers get the value as soon as the lease holder writes it (not at the end of their wait)', async () => {
    const a = await newTenant(t.deps, RW);
    const first = await t.app.inject({
      method: 'GET',
      url: `${url('slow')}?lease=5000`,
      headers: a.auth,
    });
    const token = String(first.headers['x-cache-lease']);
    const started = Date.now();
    const waiting = Array.from({ length: 20 }, () =>
      t.app
        .inject({ method: 'GET', url: `${url('slow')}?lease=5000&wait=5000`, headers: a.auth })
        .then((r) => ({ r, at: Date.now() })),
    );
    await new Promise((r) => setTimeout(r, 300));
    const filledAt = Date.now();
    const put = await t.app.inject({
      method: 'PUT',
      url: url('slow'),
      headers: { ...a.auth, 'x-cache-lease': token },
      payload: { value: 'computed', ttl: 60 },
    });
    expect(body(put)).toMatchObject({ leaseReleased: true });
    const answers = await Promise.all(waiting);
    for (const { r, at } of answers) {
      expect(r.statusCode, r.body).toBe(200);
      expect(body(r).value).toBe('computed');
      expect(r.headers['cache-status']).toContain('collapsed');
      expect(at - filledAt, 'answered promptly after the fill').toBeLessThan(1000);
    }
    expect(Date.now() - started).toBeLessThan(4000);
    expect(await t.deps.redis.primary.exists(`${a.tenant}:lease:slow`)).toBe(0);
  });

  it('a waiter whose lease holder never writes gets 404 + Retry-After when its wait ends; the lease expires on its own', async () => {
    const a = await newTenant(t.deps, RW);
    await t.app.inject({ method: 'GET', url: `${url('abandoned')}?lease=600`, headers: a.auth });
    const t0 = Date.now();
    const waited = await t.app.inject({
      method: 'GET',
      url: `${url('abandoned')}?lease=600&wait=300`,
      headers: a.auth,
    });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(280);
    expectProblem(waited, 404, 'CACHE_MISS');
    expect(waited.headers['retry-after']).toBeDefined();
    await new Promise((r) => setTimeout(r, 400));
    const again = await t.app.inject({
      method: 'GET',
      url: `${url('abandoned')}?lease=600`,
      headers: a.auth,
    });
    expect(again.headers['x-cache-lease']).toBeDefined();
  });

  it("a write with a stale token still stores the value but does not release another holder's lease", async () => {
    const a = await newTenant(t.deps, RW);
    await t.app.inject({ method: 'GET', url: `${url('k')}?lease=5000`, headers: a.auth });
    const put = await t.app.inject({
      method: 'PUT',
      url: url('k'),
      headers: { ...a.auth, 'x-cache-lease': 'not-the-token' },
      payload: { value: 1 },
    });
    expect(put.statusCode).toBe(201);
    expect(body(put).leaseReleased).toBe(false);
    expect(await t.deps.redis.primary.exists(`${a.tenant}:lease:k`)).toBe(1);
  });

  it('leases are per tenant', async () => {
    const a = await newTenant(t.deps, RW);
    const b = await newTenant(t.deps, RW);
    const ra = await t.app.inject({
      method: 'GET',
      url: `${url('shared')}?lease=5000`,
      headers: a.auth,
    });
    const rb = await t.app.inject({
      method: 'GET',
      url: `${url('shared')}?lease=5000`,
      headers: b.auth,
    });
    expect(ra.headers['x-cache-lease']).toBeDefined();
    expect(rb.headers['x-cache-lease']).toBeDefined();
    await t.app.inject({
      method: 'PUT',
      url: url('shared'),
      headers: { ...a.auth, 'x-cache-lease': String(ra.headers['x-cache-lease']) },
      payload: { value: 'a' },
    });
    expectProblem(
      await t.app.inject({ method: 'GET', url: url('shared'), headers: b.auth }),
      404,
      'CACHE_MISS',
    );
  });

  it('refuses a lease above CACHE_MAX_LEASE_MS or a malformed one', async () => {
    const a = await newTenant(t.deps, RW);
    const p = expectProblem(
      await t.app.inject({ method: 'GET', url: `${url('x')}?lease=3600000`, headers: a.auth }),
      400,
      'VALIDATION_FAILED',
    );
    expect(p.errors?.[0]).toMatchObject({ field: 'query.lease', limit: 'CACHE_MAX_LEASE_MS' });
    expectProblem(
      await t.app.inject({ method: 'GET', url: `${url('x')}?lease=-1`, headers: a.auth }),
      400,
      'VALIDATION_FAILED',
    );
    expectProblem(
      await t.app.inject({ method: 'GET', url: `${url('x')}?wait=99999999`, headers: a.auth }),
      400,
      'VALIDATION_FAILED',
    );
  });
});

describe('stale-while-revalidate', () => {
  it('past ttl the value is served stale for staleTtl, and exactly one reader gets the refresh lease', async () => {
    const a = await newTenant(t.deps, RW);
    await t.app.inject({
      method: 'PUT',
      url: url('swr'),
      headers: a.auth,
      payload: { value: 'v1', ttl: 1, staleTtl: 30 },
    });
    const fresh = await t.app.inject({ method: 'GET', url: url('swr'), headers: a.auth });
    expect(fresh.headers['cache-status']).toMatch(/^cache-gateway; hit; ttl=1$/);
    expect(body(fresh)).toMatchObject({ value: 'v1', ttl: 1, staleTtl: 30 });
    expect(body(fresh).stale).toBeUndefined();
    await new Promise((r) => setTimeout(r, 1100));
    const reads = await Promise.all(
      Array.from({ length: 20 }, () =>
        t.app.inject({ method: 'GET', url: url('swr'), headers: a.auth }),
      ),
    );
    for (const r of reads) {
      expect(r.statusCode).toBe(200);
      expect(body(r)).toMatchObject({ value: 'v1', stale: true, ttl: 0 });
      expect(r.headers['cache-status']).toContain('detail=stale');
    }
    const refreshers = reads.filter((r) => r.headers['x-cache-lease'] !== undefined);
    expect(refreshers).toHaveLength(1);
    const put = await t.app.inject({
      method: 'PUT',
      url: url('swr'),
      headers: { ...a.auth, 'x-cache-lease': String(refreshers[0]!.headers['x-cache-lease']) },
      payload: { value: 'v2', ttl: 60, staleTtl: 30 },
    });
    expect(body(put).leaseReleased).toBe(true);
    const after = body(await t.app.inject({ method: 'GET', url: url('swr'), headers: a.auth }));
    expect(after).toMatchObject({ value: 'v2', ttl: 60 });
    expect(after.stale).toBeUndefined();
  });

  it('_mget marks stale items', async () => {
    const a = await newTenant(t.deps, RW);
    await t.app.inject({
      method: 'PUT',
      url: url('m'),
      headers: a.auth,
      payload: { value: 1, ttl: 1, staleTtl: 10 },
    });
    await new Promise((r) => setTimeout(r, 1100));
    const res = body<{ items: Record<string, unknown>[] }>(
      await t.app.inject({
        method: 'POST',
        url: '/v1/cache/_mget',
        headers: a.auth,
        payload: { keys: ['m'] },
      }),
    );
    expect(res.items[0]).toMatchObject({ found: true, stale: true, ttl: 0 });
  });

  it('refuses staleTtl without an expiring ttl', async () => {
    const a = await newTenant(t.deps, RW);
    expectProblem(
      await t.app.inject({
        method: 'PUT',
        url: url('z'),
        headers: a.auth,
        payload: { value: 1, staleTtl: 0 },
      }),
      400,
      'VALIDATION_FAILED',
    );
  });
});

describe('binary values', () => {
  it('stores raw bytes (octet-stream) and returns them raw, or as base64 in JSON', async () => {
    const a = await newTenant(t.deps, RW);
    const bytes = randomBytes(3000);
    const put = await t.app.inject({
      method: 'PUT',
      url: `${url('blob')}?ttl=60&staleTtl=5&tags=files,org:1`,
      headers: { ...a.auth, 'content-type': 'application/octet-stream' },
      payload: bytes,
    });
    expect(put.statusCode, put.body).toBe(201);
    expect(body(put)).toMatchObject({ ttl: 60, staleTtl: 5 });
    const raw = await t.app.inject({
      method: 'GET',
      url: url('blob'),
      headers: { ...a.auth, accept: 'application/octet-stream' },
    });
    expect(raw.headers['content-type']).toBe('application/octet-stream');
    expect(raw.rawPayload.equals(bytes)).toBe(true);
    expect(raw.headers.etag).toBe(put.headers.etag);
    const json = body(await t.app.inject({ method: 'GET', url: url('blob'), headers: a.auth }));
    expect(json).toMatchObject({ encoding: 'base64', ttl: 60 });
    expect(Buffer.from(String(json.value), 'base64').equals(bytes)).toBe(true);
    const mget = body<{ items: Record<string, unknown>[] }>(
      await t.app.inject({
        method: 'POST',
        url: '/v1/cache/_mget',
        headers: a.auth,
        payload: { keys: ['blob'] },
      }),
    );
    expect(mget.items[0]).toMatchObject({ encoding: 'base64', value: bytes.toString('base64') });
    expect(
      body(
        await t.app.inject({
          method: 'POST',
          url: '/v1/cache/_invalidate',
          headers: a.auth,
          payload: { tags: ['files'] },
        }),
      ).deleted,
    ).toBe(1);
  });

  it('a JSON value read with Accept: application/octet-stream returns its JSON text', async () => {
    const a = await newTenant(t.deps, RW);
    await t.app.inject({
      method: 'PUT',
      url: url('j'),
      headers: a.auth,
      payload: { value: { a: 1 } },
    });
    const raw = await t.app.inject({
      method: 'GET',
      url: url('j'),
      headers: { ...a.auth, accept: 'application/octet-stream' },
    });
    expect(raw.body).toBe('{"a":1}');
  });

  it('refuses bad query metadata and oversized bytes, storing nothing', async () => {
    const a = await newTenant(t.deps, RW);
    const headers = { ...a.auth, 'content-type': 'application/octet-stream' };
    for (const q of [
      'ttl=abc',
      'ttl=0',
      'tags=bad tag',
      `tags=${Array.from({ length: 33 }, (_, i) => `t${i}`).join(',')}`,
    ]) {
      expectProblem(
        await t.app.inject({
          method: 'PUT',
          url: `${url('b')}?${q}`,
          headers,
          payload: Buffer.from('x'),
        }),
        400,
        'VALIDATION_FAILED',
      );
    }
    const big = Buffer.alloc(t.config.cache.maxValueBytes + 1);
    expectProblem(
      await t.app.inject({ method: 'PUT', url: url('b'), headers, payload: big }),
      413,
      'VALUE_TOO_LARGE',
    );
    expectProblem(
      await t.app.inject({ method: 'GET', url: url('b'), headers: a.auth }),
      404,
      'CACHE_MISS',
    );
  });
});

describe('compression', () => {
  it('stores large values compressed, reads them back identical, and counts the bytes saved', async () => {
    const a = await newTenant(t.deps, RW);
    const value = {
      rows: Array.from({ length: 300 }, (_, i) => ({ id: i, name: `row ${i}`, tags: ['a', 'b'] })),
    };
    const text = JSON.stringify(value);
    const savedBefore =
      (
        await t.deps.metrics.registry
          .getSingleMetric('gateway_cache_compression_saved_bytes_total')
          ?.get()
      )?.values[0]?.value ?? 0;
    await t.app.inject({ method: 'PUT', url: url('big'), headers: a.auth, payload: { value } });
    const stored = await t.deps.redis.primary.getBuffer(`${a.tenant}:cache:big`);
    expect(stored![2]).toBe(0x64); // 'd': deflate
    expect(stored!.length).toBeLessThan(text.length / 3);
    const got = await t.app.inject({ method: 'GET', url: url('big'), headers: a.auth });
    expect(JSON.stringify(body(got).value)).toBe(text);
    const savedAfter =
      (
        await t.deps.metrics.registry
          .getSingleMetric('gateway_cache_compression_saved_bytes_total')
          ?.get()
      )?.values[0]?.value ?? 0;
    expect(savedAfter - savedBefore).toBeGreaterThan(text.length / 2);
    // Small values are stored as they are.
    await t.app.inject({
      method: 'PUT',
      url: url('small'),
      headers: a.auth,
      payload: { value: 'tiny' },
    });
    expect((await t.deps.redis.primary.getBuffer(`${a.tenant}:cache:small`))![2]).toBe(0x2d);
  });
});
