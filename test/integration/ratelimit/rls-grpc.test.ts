/**
 * The gRPC rate limit service (Envoy's RLS, envoy.service.ratelimit.v3) against real Redis: what
 * Envoy's ratelimit filter sends and reads, byte for byte by the official field numbers over a
 * bare HTTP/2 client, the decisions (shared with POST /v1/ratelimit/envoy), metadata
 * authentication or the anonymous tenant, bad requests as gRPC statuses, draining and shedding,
 * connection age, the health service, and the metric.
 */
import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manualClock } from '../../../src/clock.js';
import {
  HEALTH_SERVICE,
  type RlsServerOptions,
  startRlsServer,
} from '../../../src/modules/ratelimit/rls-grpc.js';
import { newTenant, useTestApp, writePoliciesFile } from '../../harness/app.js';
import { rlsClient, startTestRlsServer } from '../../harness/rls.js';

const policiesFile = writePoliciesFile([
  'envoy:',
  '  - domain: edge',
  '    descriptors:',
  '      - key: remote_address',
  '        rate_limit: { unit: minute, requests_per_unit: 3 }',
  '      - key: generic_key',
  '        value: bulk',
  '        rate_limit: { unit: hour, requests_per_unit: 10 }',
  '      - key: generic_key',
  '        value: internal',
  '        rate_limit: { unlimited: true }',
  '  - domain: strict',
  '    descriptors:',
  '      - key: remote_address',
  '        rate_limit: { unit: minute, requests_per_unit: 3 }',
  'envoyOptions:',
  '  strict: { failureMode: closed }',
]);

// 20 s into a minute: 40 s left in minute windows.
const T0 = 1_800_000_000_000 - (1_800_000_000_000 % 3_600_000) + 20_000;
const clock = manualClock(T0);
const t = useTestApp({ clock, env: { RATELIMIT_POLICIES_FILE: policiesFile } });

let server: Awaited<ReturnType<typeof startRlsServer>>;
let draining = false;
let client: ReturnType<typeof rlsClient>;

/** A gRPC server on the test app's deps, on a free port: these options over plain defaults. */
const startServer = (options: Partial<RlsServerOptions> = {}) =>
  startTestRlsServer(t.deps, options);

/** The status POST /v1/ratelimit/envoy answers with (the same counters as the gRPC service). */
const httpStatus = async (auth: Record<string, string>, request: object) =>
  (
    await t.app.inject({
      method: 'POST',
      url: '/v1/ratelimit/envoy',
      headers: auth,
      payload: request,
    })
  ).statusCode;

beforeAll(async () => {
  server = await startServer({
    legacyHeaders: true,
    draining: () => draining,
    started: () => t.deps.redis.everReady(),
    onCall: (code, s) => t.deps.metrics.ratelimit.rlsCall(code, s),
  });
  client = rlsClient(server.port);
});

afterAll(async () => {
  client?.close();
  await server?.close(1000);
});

/** One ShouldRateLimit call: the response, or the gRPC error. */
const call = (request: object, headers: Record<string, string>) => client.call(request, headers);

let seq = 0;
const addr = () => `198.51.100.${++seq}-${Date.now()}`;
const req = (ip: string, extra: object = {}) => ({
  domain: 'edge',
  descriptors: [{ entries: [{ key: 'remote_address', value: ip }] }],
  ...extra,
});

async function caller(scopes = ['ratelimit:check']) {
  const c = await newTenant(t.deps, scopes);
  const key = c.auth.authorization.slice('Bearer '.length);
  return { ...c, meta: { 'x-gateway-key': key } };
}

describe('gRPC rate limit service (envoy.service.ratelimit.v3)', () => {
  it('decides like envoyproxy/ratelimit, and sends the rate-limit headers for Envoy to add', async () => {
    clock.set(T0);
    const a = await caller();
    const ip = addr();
    const first = await call(req(ip), a.meta);
    expect(first.response).toMatchObject({
      overallCode: 'OK',
      statuses: [
        {
          code: 'OK',
          currentLimit: { requestsPerUnit: 3, unit: 'MINUTE' },
          limitRemaining: 2,
          durationUntilReset: { seconds: 40 },
        },
      ],
    });
    expect(first.response?.responseHeadersToAdd).toEqual(
      expect.arrayContaining([
        { key: 'ratelimit-policy', value: '"edge.remote_address";q=3;w=60' },
        { key: 'ratelimit', value: '"edge.remote_address";r=2;t=40' },
      ]),
    );
    await call(req(ip), a.meta);
    await call(req(ip), a.meta);
    const over = await call(req(ip), a.meta);
    expect(over.response?.overallCode).toBe('OVER_LIMIT');
    expect(over.response?.statuses?.[0]?.code).toBe('OVER_LIMIT');
    expect(over.response?.responseHeadersToAdd).toEqual(
      expect.arrayContaining([{ key: 'retry-after', value: '40' }]),
    );
    // The same counters as the HTTP endpoint: over there too.
    expect(await httpStatus(a.auth, req(ip))).toBe(429);
    // unlimited: OK, with the most a uint32 holds left (as envoyproxy/ratelimit); no limit: OK.
    const mixed = await call(
      {
        domain: 'edge',
        descriptors: [
          { entries: [{ key: 'generic_key', value: 'internal' }] },
          { entries: [{ key: 'generic_key', value: 'other' }] },
        ],
      },
      a.meta,
    );
    expect(mixed.response?.statuses).toEqual([
      { code: 'OK', limitRemaining: 4_294_967_295 },
      { code: 'OK' },
    ]);
    expect(await t.deps.metrics.registry.metrics()).toMatch(
      /gateway_rls_request_duration_seconds_count\{code="OK"\} [1-9]/,
    );
  });

  it("answers a bare HTTP/2 client by the official field numbers, as Envoy's own gRPC client calls", async () => {
    clock.set(T0);
    const a = await caller();
    // RateLimitRequest{domain=1, descriptors=2{entries=1{key=1, value=2}, hits_addend=3{value=1}},
    // hits_addend=3}, written by hand, not from the gateway's .proto.
    const w = protobuf.Writer.create();
    w.uint32((1 << 3) | 2).string('edge');
    const d = protobuf.Writer.create();
    const e = protobuf.Writer.create();
    e.uint32((1 << 3) | 2).string('generic_key');
    e.uint32((2 << 3) | 2).string('bulk');
    d.uint32((1 << 3) | 2).bytes(e.finish());
    const hits = protobuf.Writer.create()
      .uint32((1 << 3) | 0)
      .uint64(4)
      .finish();
    d.uint32((3 << 3) | 2).bytes(hits);
    w.uint32((2 << 3) | 2).bytes(d.finish());
    w.uint32((3 << 3) | 0).uint32(1);
    // Neither grpc-js nor our .proto on the client side: node:http2, the message framed by hand.
    const path = '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit';
    const answer = await h2Call(server.port, path, a.meta, w.finish());
    expect(answer.headers[':status']).toBe(200);
    expect(answer.headers['content-type']).toMatch(/^application\/grpc/);
    expect(answer.trailers['grpc-status']).toBe('0');
    expect(answer.body[0]).toBe(0); // not compressed
    const bytes = answer.body.subarray(5, 5 + answer.body.readUInt32BE(1));
    // RateLimitResponse{overall_code=1, statuses=2{code=1, current_limit=2{requests_per_unit=1,
    // unit=2}, limit_remaining=3, duration_until_reset=4{seconds=1}}, response_headers_to_add=3}
    const top = fields(bytes);
    expect(top.get(1)).toEqual([1]); // OK
    const status = fields(top.get(2)?.[0] as Uint8Array);
    expect(status.get(1)).toEqual([1]);
    const limit = fields(status.get(2)?.[0] as Uint8Array);
    expect(limit.get(1)).toEqual([10]);
    expect(limit.get(2)).toEqual([3]); // HOUR
    // The descriptor's own hits_addend (4) won over the request's (1).
    expect(status.get(3)).toEqual([6]);
    expect(fields(status.get(4)?.[0] as Uint8Array).get(1)).toEqual([3600 - 20]);
    expect((top.get(3) ?? []).length).toBeGreaterThan(0);
    // An error is trailers-only: grpc-status in the response headers, no message.
    const refused = await h2Call(server.port, path, {}, w.finish());
    expect(refused.headers[':status']).toBe(200);
    expect(refused.headers['grpc-status']).toBe(String(grpc.status.UNAUTHENTICATED));
    expect(refused.body.length).toBe(0);
  });

  it('authenticates by metadata: x-gateway-key or authorization, with ratelimit:check unglobbed', async () => {
    const a = await caller();
    const viaAuthz = await call(req(addr()), { authorization: a.auth.authorization });
    expect(viaAuthz.response?.overallCode).toBe('OK');
    expect((await call(req(addr()), {})).error?.code).toBe(grpc.status.UNAUTHENTICATED);
    expect((await call(req(addr()), { 'x-gateway-key': 'cgk_nope_nope' })).error?.code).toBe(
      grpc.status.UNAUTHENTICATED,
    );
    const wrong = await caller(['cache:read']);
    expect((await call(req(addr()), wrong.meta)).error?.code).toBe(grpc.status.PERMISSION_DENIED);
    const globbed = await caller(['ratelimit:check:login*']);
    expect((await call(req(addr()), globbed.meta)).error).toMatchObject({
      code: grpc.status.PERMISSION_DENIED,
      details: expect.stringMatching(/without a resource glob/) as string,
    });
  });

  it('with RLS_GRPC_ANONYMOUS_TENANT, counts calls without credentials for that tenant', async () => {
    clock.set(T0);
    const anonymous = await newTenant(t.deps, ['ratelimit:check']);
    const own = await startServer({ anonymousTenant: anonymous.tenant });
    const c = rlsClient(own.port);
    try {
      const ip = addr();
      const remaining = async (headers: Record<string, string>) =>
        (await c.call(req(ip), headers)).response?.statuses?.[0]?.limitRemaining;
      // What Contour or Emissary send: no metadata at all.
      expect(await remaining({})).toBe(2);
      expect(await remaining({})).toBe(1);
      // A caller with a key counts for its own tenant, apart from the anonymous one...
      const a = await caller();
      expect(await remaining(a.meta)).toBe(2);
      // ...and a key that is sent must be valid: no falling back to the anonymous tenant.
      expect((await c.call(req(ip), { 'x-gateway-key': 'cgk_nope_nope' })).error?.code).toBe(
        grpc.status.UNAUTHENTICATED,
      );
      const wrong = await caller(['cache:read']);
      expect((await c.call(req(ip), wrong.meta)).error?.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(await remaining({})).toBe(0);
      expect((await c.call(req(ip), {})).response?.overallCode).toBe('OVER_LIMIT');
      // The same counters as that tenant's keys see over HTTP.
      expect(await httpStatus(anonymous.auth, req(ip))).toBe(429);
    } finally {
      c.close();
      await own.close(1000);
    }
  });

  it('while the gateway sheds load, decides by the failure mode without Redis (never an error)', async () => {
    clock.set(T0);
    const a = await caller();
    const ip = addr();
    t.deps.lifecycle.overloaded = true;
    try {
      const shed = await call(req(ip), a.meta);
      expect(shed.error).toBeUndefined();
      expect(shed.response?.overallCode).toBe('OK');
      expect(shed.response?.responseHeadersToAdd).toEqual(
        expect.arrayContaining([{ key: 'x-ratelimit-degraded', value: 'true' }]),
      );
    } finally {
      t.deps.lifecycle.overloaded = false;
    }
    // Nothing was counted while shedding.
    expect((await call(req(ip), a.meta)).response?.statuses?.[0]?.limitRemaining).toBe(2);
  });

  it('answers bad requests with INVALID_ARGUMENT and counts nothing', async () => {
    clock.set(T0);
    const a = await caller();
    const ip = addr();
    const bad: [object, RegExp][] = [
      [{ domain: '', descriptors: req(ip).descriptors }, /domain/],
      [{ domain: 'edge', descriptors: [] }, /descriptors/],
      [{ domain: 'edge', descriptors: [{ entries: [] }] }, /descriptors\.0\.entries/],
      [
        {
          domain: 'edge',
          descriptors: [
            { entries: [{ key: 'remote_address', value: ip }], limit: { requestsPerUnit: 1 } },
          ],
        },
        /unit/,
      ],
      [
        {
          domain: 'edge',
          descriptors: [{ entries: [{ key: 'remote_address', value: 'x'.repeat(8193) }] }],
        },
        /value/,
      ],
    ];
    for (const [request, message] of bad) {
      const { error } = await call(request, a.meta);
      expect(error?.code, JSON.stringify(request).slice(0, 80)).toBe(grpc.status.INVALID_ARGUMENT);
      expect(error?.details).toMatch(message);
    }
    const after = await call(req(ip), a.meta);
    expect(after.response?.statuses?.[0]?.limitRemaining).toBe(2);
  });

  it('a domain whose envoyOptions fail closed answers UNAVAILABLE when Redis is not asked; the others OK', async () => {
    const a = await caller();
    // While the replica sheds load no decision goes to Redis: each domain's failure mode decides.
    t.deps.lifecycle.overloaded = true;
    try {
      const closed = await call(req(addr(), { domain: 'strict' }), a.meta);
      expect(closed.error?.code).toBe(grpc.status.UNAVAILABLE);
      expect((await call(req(addr()), a.meta)).response?.overallCode).toBe('OK');
    } finally {
      t.deps.lifecycle.overloaded = false;
    }
    expect((await call(req(addr(), { domain: 'strict' }), a.meta)).response?.overallCode).toBe(
      'OK',
    );
  });

  it('a draining gateway answers UNAVAILABLE (Envoy then applies failure_mode_deny) and reports NOT_SERVING', async () => {
    const a = await caller();
    const health = healthClient(server.port);
    const check = (service: string) =>
      new Promise<{ status?: string; code?: number }>((resolve) =>
        health.Check({ service }, (e, r) => resolve(e ? { code: e.code } : { status: r?.status })),
      );
    try {
      // No credentials needed: probes and Envoy's grpc_health_check send none.
      expect(await check('')).toEqual({ status: 'SERVING' });
      expect(await check('envoy.service.ratelimit.v3.RateLimitService')).toEqual({
        status: 'SERVING',
      });
      expect(await check('ratelimit')).toEqual({ status: 'SERVING' });
      expect(await check('cache')).toEqual({ code: grpc.status.NOT_FOUND });
      // Watch: the status at once, then each change; an unknown service stays open as such.
      const watch = health.Watch({ service: '' });
      const unknown = health.Watch({ service: 'cache' });
      const seen: string[] = [];
      const next = statusesOf(watch, seen);
      expect(await next(1)).toEqual(['SERVING']);
      expect(await statusesOf(unknown, [])(1)).toEqual(['SERVICE_UNKNOWN']);
      draining = true;
      try {
        expect((await call(req(addr()), a.meta)).error?.code).toBe(grpc.status.UNAVAILABLE);
        expect(await check('')).toEqual({ status: 'NOT_SERVING' });
        expect(await next(2)).toEqual(['SERVING', 'NOT_SERVING']);
      } finally {
        draining = false;
      }
      expect(await next(3)).toEqual(['SERVING', 'NOT_SERVING', 'SERVING']);
      watch.cancel();
      unknown.cancel();
    } finally {
      health.close();
    }
  });

  it('ends open health Watch streams on shutdown instead of waiting for them', async () => {
    const own = await startServer();
    const health = healthClient(own.port);
    try {
      const watch = health.Watch({ service: 'ratelimit' });
      const seen: string[] = [];
      const next = statusesOf(watch, seen);
      expect(await next(1)).toEqual(['SERVING']);
      const ended = new Promise<number>((resolve) => watch.on('status', (s) => resolve(s.code)));
      const started = performance.now();
      await own.close(10_000);
      expect(performance.now() - started).toBeLessThan(5000);
      expect(await ended).toBe(grpc.status.OK);
      expect(seen).toEqual(['SERVING', 'NOT_SERVING']);
    } finally {
      health.close();
    }
  });

  it('asks a connection to go away after RLS_GRPC_MAX_CONNECTION_AGE_SECONDS, and the client carries on', async () => {
    const a = await caller();
    const aged = await startServer({ maxConnectionAgeMs: 600 });
    // What Envoy's HTTP/2 connection sees: a GOAWAY at the age (±10 %), on an idle connection too.
    const session = http2.connect(`http://127.0.0.1:${aged.port}`);
    const c = rlsClient(aged.port);
    try {
      const opened = performance.now();
      const goaway = new Promise<{ ms: number; code: number }>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no GOAWAY within 5 s')), 5000);
        session.once('goaway', (code) => {
          clearTimeout(timer);
          resolve({ ms: performance.now() - opened, code });
        });
      });
      session.on('error', () => {});
      expect((await c.call(req(addr()), a.meta)).response?.overallCode).toBe('OK');
      const seen = await goaway;
      expect(seen.code).toBe(http2.constants.NGHTTP2_NO_ERROR);
      expect(seen.ms).toBeGreaterThan(500);
      expect(seen.ms).toBeLessThan(5000);
      // The gRPC client's first connection was told to go away as well: its next call reconnects.
      await new Promise((r) => setTimeout(r, 500));
      const after = await c.call(req(addr()), a.meta);
      expect(after.error).toBeUndefined();
      expect(after.response?.overallCode).toBe('OK');
    } finally {
      session.destroy();
      c.close();
      await aged.close(1000);
    }
  });
});

type HealthClient = {
  Check(r: object, cb: (e: grpc.ServiceError | null, r?: { status?: string }) => void): void;
  Watch(r: object): grpc.ClientReadableStream<{ status?: string }>;
  close(): void;
};

function healthClient(port: number): HealthClient {
  const Health = grpc.makeGenericClientConstructor(HEALTH_SERVICE, 'Health');
  return new Health(
    `127.0.0.1:${port}`,
    grpc.credentials.createInsecure(),
  ) as unknown as HealthClient;
}

/** Collects a Watch stream's statuses into `seen`; next(n) waits (up to 5 s) until n arrived. */
function statusesOf(stream: grpc.ClientReadableStream<{ status?: string }>, seen: string[]) {
  const waiters: (() => void)[] = [];
  stream.on('data', (m: { status?: string }) => {
    seen.push(m.status ?? 'UNKNOWN');
    for (const w of waiters.splice(0)) w();
  });
  stream.on('error', () => {}); // cancelled by the test
  return async (n: number): Promise<string[]> => {
    const deadline = performance.now() + 5000;
    while (seen.length < n && performance.now() < deadline) {
      await new Promise<void>((resolve) => {
        waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
    return [...seen];
  };
}

/**
 * One gRPC call over a bare node:http2 session, framed by hand, with the headers Envoy's own gRPC
 * client sends: the response headers, the trailers and the raw body (length-prefixed messages).
 */
async function h2Call(
  port: number,
  path: string,
  headers: Record<string, string>,
  message: Uint8Array,
) {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  try {
    const frame = Buffer.alloc(5 + message.length);
    frame.writeUInt32BE(message.length, 1);
    frame.set(message, 5);
    const stream = session.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-timeout': '100m',
      'user-agent': 'envoy/1.32.0',
      ...headers,
    });
    stream.end(frame);
    return await new Promise<{
      headers: http2.IncomingHttpHeaders;
      trailers: http2.IncomingHttpHeaders;
      body: Buffer;
    }>((resolve, reject) => {
      let head: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];
      stream.on('response', (h: http2.IncomingHttpHeaders) => {
        head = h;
      });
      stream.on('trailers', (h: http2.IncomingHttpHeaders) => {
        trailers = h;
      });
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => resolve({ headers: head, trailers, body: Buffer.concat(chunks) }));
      stream.on('error', reject);
    });
  } finally {
    session.close();
  }
}

/** Decodes one protobuf message into field number -> values (varints as numbers, others as bytes). */
function fields(bytes: Uint8Array): Map<number, (number | Uint8Array)[]> {
  const r = protobuf.Reader.create(bytes);
  const out = new Map<number, (number | Uint8Array)[]>();
  while (r.pos < r.len) {
    const tag = r.uint32();
    const field = tag >>> 3;
    const value = (tag & 7) === 0 ? Number(r.uint64()) : r.bytes();
    out.set(field, [...(out.get(field) ?? []), value]);
  }
  return out;
}
