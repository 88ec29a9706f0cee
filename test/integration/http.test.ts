import { createConnection } from 'node:net';
import { describe, expect, it } from 'vitest';
import { createMetricsServer } from '../../src/observability/metrics-server.js';
import { body, useTestApp, buildTestApp, expectProblem, newTenant } from '../harness/app.js';
import { exposedSeries, usedMetricFamilies } from '../harness/deploy-assets.js';

const t = useTestApp();

describe('problem+json everywhere', () => {
  it('unknown routes are a 404 problem, with or without a key', async () => {
    const a = await newTenant(t.deps, ['cache:read']);
    expectProblem(await t.app.inject({ method: 'GET', url: '/nope' }), 404, 'ROUTE_NOT_FOUND');
    expectProblem(
      await t.app.inject({ method: 'POST', url: '/v1/cache/a/b', headers: a.auth }),
      404,
      'ROUTE_NOT_FOUND',
    );
    expectProblem(
      await t.app.inject({ method: 'POST', url: '/v1/cache/a', headers: a.auth, payload: {} }),
      404,
      'ROUTE_NOT_FOUND',
    );
  });

  it('malformed HTTP gets a 400 problem on the raw socket', async () => {
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const port = (t.app.server.address() as { port: number }).port;
    const reply = await new Promise<string>((resolve, reject) => {
      const sock = createConnection({ port, host: '127.0.0.1' });
      let buf = '';
      sock.on('connect', () => sock.write('NOT AN HTTP REQUEST\r\n\r\n'));
      sock.on('data', (d) => (buf += d.toString()));
      sock.on('end', () => resolve(buf));
      sock.on('error', reject);
    });
    expect(reply).toMatch(/^HTTP\/1\.1 400/);
    expect(reply).toContain('application/problem+json');
    expect(JSON.parse(reply.slice(reply.indexOf('\r\n\r\n') + 4))).toMatchObject({
      status: 400,
      code: 'BAD_REQUEST',
    });
  });
});

describe('cache metrics by tenant (CACHE_METRICS_TENANT_LABEL)', () => {
  const labelled = useTestApp({
    env: { CACHE_METRICS_TENANT_LABEL: 'true', CACHE_METRICS_MAX_TENANTS: '1' },
  });
  it('labels lookups with the tenant, at most CACHE_METRICS_MAX_TENANTS of them; the rest are "other"', async () => {
    const a = await newTenant(labelled.deps, ['cache:read']);
    const b = await newTenant(labelled.deps, ['cache:read']);
    await labelled.app.inject({ method: 'GET', url: '/v1/cache/x', headers: a.auth });
    await labelled.app.inject({ method: 'GET', url: '/v1/cache/x', headers: b.auth });
    const text = await labelled.deps.metrics.registry.metrics();
    expect(text).toContain(
      `gateway_cache_lookups_total{op="get",result="miss",tenant="${a.tenant}"} 1`,
    );
    expect(text).toContain('gateway_cache_lookups_total{op="get",result="miss",tenant="other"} 1');
    expect(text).not.toContain(b.tenant);
  });
});

describe('HTTP hardening', () => {
  it('bounds request, header and keep-alive time on the server', () => {
    const server = t.app.server;
    expect(server.requestTimeout).toBeGreaterThan(0);
    expect(server.headersTimeout).toBeGreaterThan(0);
    expect(server.headersTimeout).toBeLessThanOrEqual(server.requestTimeout);
    expect(server.keepAliveTimeout).toBe(t.config.http.keepAliveTimeoutMs);
  });
});

describe('request ids', () => {
  it('generates one, honours a plain one, replaces a hostile one', async () => {
    const gen = await t.app.inject({ method: 'GET', url: '/livez' });
    expect(gen.headers['x-request-id']).toMatch(/^[0-9a-f]{12}-[0-9a-z]+$/);
    const next = await t.app.inject({ method: 'GET', url: '/livez' });
    expect(next.headers['x-request-id']).not.toBe(gen.headers['x-request-id']);
    const kept = await t.app.inject({
      method: 'GET',
      url: '/livez',
      headers: { 'x-request-id': 'abc.DEF:123-x' },
    });
    expect(kept.headers['x-request-id']).toBe('abc.DEF:123-x');
    for (const hostile of ['x'.repeat(200), 'a b', '<script>', 'a\u00e9']) {
      const res = await t.app.inject({
        method: 'GET',
        url: '/livez',
        headers: { 'x-request-id': hostile },
      });
      expect(res.headers['x-request-id']).not.toBe(hostile);
    }
  });
});

describe('probes', () => {
  it('/livez and /readyz answer 200 without credentials', async () => {
    expect(body(await t.app.inject({ method: 'GET', url: '/livez' }))).toEqual({ status: 'ok' });
    expect(body(await t.app.inject({ method: 'GET', url: '/readyz' }))).toEqual({ status: 'ok' });
    const verbose = body<{ checks: Record<string, string> }>(
      await t.app.inject({ method: 'GET', url: '/readyz?verbose' }),
    );
    expect(verbose.checks).toMatchObject({
      started: 'ok',
      draining: 'ok',
      'redis.primary': 'ready',
    });
  });

  it('while draining: /readyz is 503, requests get 503 + Connection: close, /livez stays 200', async () => {
    const d = await buildTestApp();
    try {
      const a = await newTenant(d.deps, ['cache:read']);
      d.deps.lifecycle.draining = true;
      expectProblem(await d.app.inject({ method: 'GET', url: '/readyz' }), 503, 'SHUTTING_DOWN');
      const res = await d.app.inject({ method: 'GET', url: '/v1/cache/x', headers: a.auth });
      expectProblem(res, 503, 'SHUTTING_DOWN');
      expect(res.headers.connection).toBe('close');
      expect(res.headers['retry-after']).toBe('1');
    } finally {
      await d.close();
    }
  });
});

describe('docs', () => {
  it('serves /openapi.json and the /docs UI without credentials', async () => {
    const doc = body<{ openapi: string; paths: Record<string, unknown> }>(
      await t.app.inject({ method: 'GET', url: '/openapi.json' }),
    );
    expect(doc.openapi).toBe('3.0.3');
    expect(Object.keys(doc.paths)).toContain('/v1/cache/{key}');
    const ui = await t.app.inject({ method: 'GET', url: '/docs' });
    expect(ui.statusCode).toBe(200);
    expect(ui.headers['content-type']).toContain('text/html');
  });
});

describe('metrics', () => {
  it('exports request durations by route template, cache lookups and Redis state, without tenant labels', async () => {
    const a = await newTenant(t.deps, ['cache:read', 'cache:write']);
    await t.app.inject({
      method: 'PUT',
      url: '/v1/cache/m',
      headers: a.auth,
      payload: { value: 1 },
    });
    await t.app.inject({ method: 'GET', url: '/v1/cache/m', headers: a.auth });
    await t.app.inject({ method: 'GET', url: '/v1/cache/missing', headers: a.auth });
    const server = createMetricsServer(t.deps.metrics.registry);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (server.address() as { port: number }).port;
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(text).toMatch(
        /gateway_http_request_duration_seconds_count\{method="GET",route="\/v1\/cache\/:key",status_code="200"\} \d+/,
      );
      expect(text).toMatch(/gateway_cache_lookups_total\{op="get",result="hit"\} [1-9]/);
      expect(text).toMatch(/gateway_cache_lookups_total\{op="get",result="miss"\} [1-9]/);
      expect(text).toMatch(/gateway_redis_client_ready\{role="primary"\} 1/);
      expect(text).toMatch(
        /gateway_cache_hit_ratio\{op="get"\} 0\.\d+|gateway_cache_hit_ratio\{op="get"\} 1/,
      );
      expect(text).toContain('gateway_cache_stored_bytes_total');
      expect(text).toContain('gateway_redis_failovers_total');
      expect(text).toContain('nodejs_eventloop_lag_seconds');
      expect(text).not.toContain(a.tenant);
      expect((await fetch(`http://127.0.0.1:${port}/other`)).status).toBe(404);
    } finally {
      server.close();
    }
  });

  it('exports every metric the Grafana dashboard and the alert rules use', async () => {
    const server = createMetricsServer(t.deps.metrics.registry);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (server.address() as { port: number }).port;
      const exposed = exposedSeries(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
      const used = usedMetricFamilies();
      expect(used.length).toBeGreaterThan(10);
      expect(used.filter((name) => !exposed.has(name))).toEqual([]);
    } finally {
      server.close();
    }
  });
});
