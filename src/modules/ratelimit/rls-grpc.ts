/**
 * Envoy's rate limit service over gRPC (`envoy.service.ratelimit.v3.RateLimitService/
 * ShouldRateLimit`), on its own port (RLS_GRPC_PORT): what Envoy's `envoy.filters.http.ratelimit`
 * filter, Istio and other RLS clients call, answered with the same decisions as
 * POST /v1/ratelimit/envoy (envoy-service.ts) from the policies file's `envoy` domains.
 *
 * The API key comes in the call's metadata, `x-gateway-key: <key>` or `authorization: Bearer
 * <key>` (Envoy: `grpc_service.initial_metadata`), and needs `ratelimit:check` without a glob; its
 * tenant owns the counters. With RLS_GRPC_ANONYMOUS_TENANT, a call without a key counts for that
 * tenant (for clients that cannot send metadata). Errors are gRPC statuses, so Envoy's
 * `failure_mode_deny` decides what a failed call means: UNAUTHENTICATED, PERMISSION_DENIED,
 * INVALID_ARGUMENT, NOT_FOUND (no `envoy` list), UNAVAILABLE (Redis could not decide and a policy
 * fails closed, or the gateway is draining), INTERNAL. Plaintext (h2c) inside the cluster or
 * behind the mesh's mTLS; or TLS, and mutual TLS with a client CA, from certificate files read
 * again as they are renewed (rls-tls.ts).
 *
 * Envoy keeps one HTTP/2 connection per worker to the service for as long as it can, so through a
 * Kubernetes Service it stays on the replica it first reached: connections are asked to go away
 * after RLS_GRPC_MAX_CONNECTION_AGE_SECONDS (as envoyproxy/ratelimit's GRPC_MAX_CONNECTION_AGE),
 * and the new ones spread over the replicas there are then, those the autoscaler added included.
 *
 * The same port serves grpc.health.v1.Health, Check and Watch (SERVING once Redis was reached and
 * until the gateway drains), as envoyproxy/ratelimit does, for Envoy's `grpc_health_check`, gRPC
 * probes and gRPC clients' own health checking.
 *
 * The allowed and denied responses carry the gateway's rate-limit headers in
 * `response_headers_to_add`, so Envoy sends `RateLimit-Policy`, `RateLimit` (and the legacy trio,
 * and `Retry-After` on 429) to the client.
 */
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { AppError } from '../../errors.js';
import type { AuthFailure, Principal } from '../../http/auth.js';
import { allowsAll } from '../../http/scopes.js';
import { type EnvoyService, callOf } from './envoy-service.js';
import { rateLimitHeaders } from './headers.js';
import { type RlsTlsOptions, reloadingTlsCredentials } from './rls-tls.js';
import { EnvoyRequest } from './schemas.js';

const proto = (file: string) =>
  protobuf.parse(readFileSync(new URL(`./proto/${file}`, import.meta.url), 'utf8')).root;
const root = proto('rls.proto');
const RequestType = root.lookupType('envoy.service.ratelimit.v3.RateLimitRequest');
const ResponseType = root.lookupType('envoy.service.ratelimit.v3.RateLimitResponse');
const health = proto('health.proto');
const DECODE = { longs: Number, enums: String, defaults: false } as const;

const codec = (type: protobuf.Type) => ({
  serialize: (value: object): Buffer => Buffer.from(type.encode(type.fromObject(value)).finish()),
  deserialize: (bytes: Buffer): Record<string, unknown> =>
    type.toObject(type.decode(bytes), DECODE),
});
const requestCodec = codec(RequestType);
const responseCodec = codec(ResponseType);
const healthRequestCodec = codec(health.lookupType('grpc.health.v1.HealthCheckRequest'));
const healthResponseCodec = codec(health.lookupType('grpc.health.v1.HealthCheckResponse'));

/** The service as grpc-js takes it (also what a client is built from). */
export const RLS_SERVICE = {
  ShouldRateLimit: {
    path: '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit',
    requestStream: false,
    responseStream: false,
    requestSerialize: requestCodec.serialize,
    requestDeserialize: requestCodec.deserialize,
    responseSerialize: responseCodec.serialize,
    responseDeserialize: responseCodec.deserialize,
  },
} satisfies grpc.ServiceDefinition;

const healthMethod = (name: 'Check' | 'Watch') => ({
  path: `/grpc.health.v1.Health/${name}`,
  requestStream: false,
  responseStream: name === 'Watch',
  requestSerialize: healthRequestCodec.serialize,
  requestDeserialize: healthRequestCodec.deserialize,
  responseSerialize: healthResponseCodec.serialize,
  responseDeserialize: healthResponseCodec.deserialize,
});

/**
 * grpc.health.v1.Health: Check (Envoy's `grpc_health_check`, Kubernetes' gRPC probes) and Watch
 * (gRPC clients' own health checking: the status at once, then each change).
 */
export const HEALTH_SERVICE = {
  Check: healthMethod('Check'),
  Watch: healthMethod('Watch'),
} satisfies grpc.ServiceDefinition;

/** How often open Watch streams look for a change of status. */
const WATCH_INTERVAL_MS = 1000;

/** Service names the health check knows: the server as a whole, and the rate limit service. */
const HEALTH_NAMES = new Set(['', 'envoy.service.ratelimit.v3.RateLimitService', 'ratelimit']);

export interface RlsServerOptions {
  envoy: EnvoyService;
  verifyApiKey(presented: string): Principal | AuthFailure | Promise<Principal | AuthFailure>;
  legacyHeaders: boolean;
  /** True once the process is draining: new calls get UNAVAILABLE, health NOT_SERVING. */
  draining(): boolean;
  /** True once Redis has been reached (as /readyz): health SERVING from then on until draining. */
  started(): boolean;
  /** Each call's gRPC status code name and duration. */
  onCall?(code: string, seconds: number): void;
  /** An error that is not the caller's (INTERNAL). */
  onError?(err: unknown): void;
  /**
   * A connection this old (±10 %) is asked to go away (HTTP/2 GOAWAY: calls in flight finish, new
   * ones go to a new connection), so that a client pinned to one replica spreads again over the
   * replicas there are now. Unset or 0: connections live until the client closes them.
   */
  maxConnectionAgeMs?: number;
  /**
   * The tenant whose counters a call without credentials uses, for RLS clients that cannot send
   * metadata (Contour's rate limit service settings, for one, have no such field). Anyone who
   * reaches the port can then spend that tenant's limits, as with envoyproxy/ratelimit, which has
   * no authentication. Undefined: such a call is UNAUTHENTICATED. A key that is sent must be valid.
   */
  anonymousTenant?: string | undefined;
  /** TLS (and with a client CA, mutual TLS); undefined: plaintext HTTP/2 (h2c). */
  tls?: RlsTlsOptions | undefined;
}

/** After GOAWAY, how long calls still in flight on the old connection get before it is closed. */
export const CONNECTION_AGE_GRACE_MS = 30_000;

class RpcError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

function credential(metadata: grpc.Metadata): string | undefined {
  const key = metadata.get('x-gateway-key')[0];
  if (typeof key === 'string' && key.trim() !== '') return key.trim();
  const authz = metadata.get('authorization')[0];
  if (typeof authz === 'string' && authz.slice(0, 7).toLowerCase() === 'bearer ') {
    return authz.slice(7).trim();
  }
  return undefined;
}

/** The decoded protobuf in the JSON request's shape, checked against the same schema. */
function requestOf(message: Record<string, unknown>): EnvoyRequest {
  const descriptors = (message.descriptors as Record<string, unknown>[] | undefined) ?? [];
  const json = {
    domain: message.domain ?? '',
    ...(message.hitsAddend === undefined ? {} : { hitsAddend: message.hitsAddend }),
    descriptors: descriptors.map((d) => {
      const limit = d.limit as { requestsPerUnit?: number; unit?: string } | undefined;
      const hits = d.hitsAddend as { value?: number } | undefined;
      return {
        entries: (d.entries as unknown[] | undefined) ?? [],
        ...(limit === undefined ? {} : { limit: { ...limit, unit: limit.unit ?? 'UNKNOWN' } }),
        ...(hits === undefined ? {} : { hitsAddend: hits.value ?? 0 }),
      };
    }),
  };
  const parsed = EnvoyRequest.safeParse(json);
  if (!parsed.success) {
    throw new RpcError(
      grpc.status.INVALID_ARGUMENT,
      parsed.error.issues.map((i) => `${i.path.join('.') || 'request'}: ${i.message}`).join('; '),
    );
  }
  return parsed.data;
}

function statusOf(err: unknown): { code: grpc.status; message: string } {
  if (err instanceof RpcError) return { code: err.code, message: err.message };
  if (err instanceof AppError) {
    const detail = err.options.errors?.map((e) => `${e.field}: ${e.message}`).join('; ');
    const message = detail ? `${err.message} (${detail})` : err.message;
    if (err.code === 'VALIDATION_FAILED') return { code: grpc.status.INVALID_ARGUMENT, message };
    if (err.code === 'POLICY_NOT_FOUND') return { code: grpc.status.NOT_FOUND, message };
    if (err.code.startsWith('BACKEND_') || err.code === 'OVERLOADED') {
      return { code: grpc.status.UNAVAILABLE, message };
    }
  }
  return { code: grpc.status.INTERNAL, message: 'internal error' };
}

const CODE_NAMES = Object.fromEntries(
  Object.entries(grpc.status)
    .filter(([, v]) => typeof v === 'number')
    .map(([k, v]) => [v, k]),
) as Record<number, string>;

/** Starts the gRPC server on host:port (0: any free port); resolves once it listens. */
export async function startRlsServer(
  opts: RlsServerOptions,
  host: string,
  port: number,
): Promise<{ port: number; close(graceMs: number): Promise<void> }> {
  const headerOptions = { legacy: opts.legacyHeaders };

  /**
   * The tenant the call counts for: its API key's, or the anonymous tenant's when it sent none.
   * Not async: a key verified from memory costs no extra promise.
   */
  function tenantOf(metadata: grpc.Metadata): string | Promise<string> {
    const presented = credential(metadata);
    if (presented === undefined && opts.anonymousTenant !== undefined) return opts.anonymousTenant;
    const verified = presented === undefined ? 'missing' : opts.verifyApiKey(presented);
    return verified instanceof Promise ? verified.then(tenantOfKey) : tenantOfKey(verified);
  }

  function tenantOfKey(verified: Principal | AuthFailure): string {
    if (typeof verified === 'string') {
      throw new RpcError(
        grpc.status.UNAUTHENTICATED,
        'A valid API key is required in the x-gateway-key (or authorization: Bearer) metadata.',
      );
    }
    if (!allowsAll(verified.scopes, 'ratelimit', 'check')) {
      throw new RpcError(
        grpc.status.PERMISSION_DENIED,
        'The API key needs the "ratelimit:check" scope without a resource glob.',
      );
    }
    return verified.tenant;
  }

  async function decide(call: grpc.ServerUnaryCall<Record<string, unknown>, object>) {
    if (opts.draining()) throw new RpcError(grpc.status.UNAVAILABLE, 'draining');
    const out = await opts.envoy.decide(
      await tenantOf(call.metadata),
      callOf(requestOf(call.request)),
    );
    const headers = out.decisions.length > 0 ? rateLimitHeaders(out.decisions, headerOptions) : {};
    return {
      overallCode: out.overLimit ? 'OVER_LIMIT' : 'OK',
      statuses: out.statuses.map((s) =>
        s.limit === undefined
          ? { code: s.code, ...(s.remaining > 0 ? { limitRemaining: s.remaining } : {}) }
          : {
              code: s.code,
              currentLimit: s.limit,
              limitRemaining: s.remaining,
              durationUntilReset: { seconds: s.resetSeconds },
            },
      ),
      responseHeadersToAdd: Object.entries(headers).map(([key, value]) => ({ key, value })),
    };
  }

  const server = new grpc.Server({
    // A RateLimitRequest is small: at most 64 descriptors of 16 entries.
    'grpc.max_receive_message_length': 1 << 20,
    // No channelz introspection service is served: skip its per-call bookkeeping.
    'grpc.enable_channelz': 0,
    ...(opts.maxConnectionAgeMs
      ? {
          'grpc.max_connection_age_ms': opts.maxConnectionAgeMs,
          'grpc.max_connection_age_grace_ms': CONNECTION_AGE_GRACE_MS,
        }
      : {}),
  });
  server.addService(RLS_SERVICE, {
    ShouldRateLimit(
      call: grpc.ServerUnaryCall<Record<string, unknown>, object>,
      callback: grpc.sendUnaryData<object>,
    ) {
      const started = performance.now();
      const done = (code: grpc.status) =>
        opts.onCall?.(CODE_NAMES[code] ?? String(code), (performance.now() - started) / 1000);
      decide(call).then(
        (response) => {
          done(grpc.status.OK);
          callback(null, response);
        },
        (err: unknown) => {
          const { code, message } = statusOf(err);
          if (code === grpc.status.INTERNAL) opts.onError?.(err);
          done(code);
          callback({ code, details: message });
        },
      );
    },
  });
  const serving = () => (opts.started() && !opts.draining() ? 'SERVING' : 'NOT_SERVING');
  const serviceName = (request: Record<string, unknown>) =>
    typeof request.service === 'string' ? request.service : '';
  /** Open Watch streams, each with a poll that writes its status when it changed. */
  const watches = new Map<grpc.ServerWritableStream<Record<string, unknown>, object>, () => void>();
  let watchTimer: NodeJS.Timeout | undefined;
  server.addService(HEALTH_SERVICE, {
    Check(
      call: grpc.ServerUnaryCall<Record<string, unknown>, object>,
      callback: grpc.sendUnaryData<object>,
    ) {
      const name = serviceName(call.request);
      if (!HEALTH_NAMES.has(name)) {
        callback({ code: grpc.status.NOT_FOUND, details: `unknown service "${name}"` });
        return;
      }
      callback(null, { status: serving() });
    },
    Watch(call: grpc.ServerWritableStream<Record<string, unknown>, object>) {
      // An unknown service is SERVICE_UNKNOWN and the stream stays open (the protocol's rule).
      const known = HEALTH_NAMES.has(serviceName(call.request));
      const status = () => (known ? serving() : 'SERVICE_UNKNOWN');
      let last = status();
      call.write({ status: last });
      watches.set(call, () => {
        const now = status();
        if (now !== last) call.write({ status: (last = now) });
      });
      watchTimer ??= setInterval(() => {
        for (const poll of watches.values()) poll();
      }, WATCH_INTERVAL_MS).unref();
      const forget = () => {
        watches.delete(call);
        if (watches.size === 0 && watchTimer !== undefined) {
          clearInterval(watchTimer);
          watchTimer = undefined;
        }
      };
      call.on('cancelled', forget);
      call.on('close', forget);
    },
  });
  const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  const tls = opts.tls === undefined ? undefined : reloadingTlsCredentials(opts.tls);
  const bound = await new Promise<number>((resolve, reject) => {
    server.bindAsync(
      address,
      tls?.credentials ?? grpc.ServerCredentials.createInsecure(),
      (err, p) => (err ? reject(err) : resolve(p)),
    );
  }).catch((err: unknown) => {
    tls?.stop();
    throw err;
  });
  return {
    port: bound,
    /** Stops taking calls and waits up to graceMs for those in flight. */
    close: (graceMs) =>
      new Promise<void>((resolve) => {
        // Watch streams never end on their own: tell each NOT_SERVING, then end it (and poll no
        // more: a write after the end would be an error).
        for (const call of watches.keys()) {
          call.write({ status: 'NOT_SERVING' });
          call.end();
        }
        watches.clear();
        clearInterval(watchTimer);
        tls?.stop();
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}
