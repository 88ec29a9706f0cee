import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../src/config.js';

describe('parseConfig', () => {
  it('has the documented defaults', () => {
    const c = parseConfig({});
    expect(c.host).toBe('0.0.0.0');
    expect(c.port).toBe(8080);
    expect(c.metricsPort).toBe(9464);
    expect(c.redis.topology).toEqual({ mode: 'standalone', url: 'redis://127.0.0.1:6379' });
    expect(c.redis.readFromReplicas).toBe(false);
    expect(c.http.requestTimeoutMs).toBe(2000);
    expect(c.http.bodyLimitBytes).toBe(1_048_576);
    expect(c.cache.maxBatch).toBe(1000);
    expect(Object.isFrozen(c.redis)).toBe(true);
  });

  it('uses Sentinel mode when REDIS_SENTINELS is set', () => {
    const c = parseConfig({
      REDIS_SENTINELS: '10.0.0.1:26379, redis-sentinel.svc:26380,[::1]:26381',
      REDIS_MASTER_NAME: 'main',
    });
    expect(c.redis.topology).toEqual({
      mode: 'sentinel',
      masterName: 'main',
      sentinels: [
        { host: '10.0.0.1', port: 26379 },
        { host: 'redis-sentinel.svc', port: 26380 },
        { host: '::1', port: 26381 },
      ],
    });
  });

  it('parses booleans and numbers', () => {
    const c = parseConfig({
      READ_FROM_REPLICAS: 'yes',
      REDIS_TLS: '1',
      PORT: '3000',
      TRUSTED_PROXIES: '10.0.0.0/8, 127.0.0.1',
    });
    expect(c.redis.readFromReplicas).toBe(true);
    expect(c.redis.tls).toBe(true);
    expect(c.port).toBe(3000);
    expect(c.http.trustProxy).toEqual(['10.0.0.0/8', '127.0.0.1']);
  });

  it('names every bad variable at once', () => {
    let err: unknown;
    try {
      parseConfig({
        PORT: 'eighty',
        LOG_LEVEL: 'loud',
        REDIS_SENTINELS: 'nohost',
        READ_FROM_REPLICAS: 'maybe',
        CACHE_MAX_BATCH: '5000',
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const names = (err as ConfigError).problems.map((p) => p.split(':')[0]);
    expect(names.sort()).toEqual([
      'CACHE_MAX_BATCH',
      'LOG_LEVEL',
      'PORT',
      'READ_FROM_REPLICAS',
      'REDIS_SENTINELS',
    ]);
    expect((err as ConfigError).message).toContain('got "eighty"');
  });

  it('checks relations between variables', () => {
    expect(() =>
      parseConfig({ CACHE_DEFAULT_TTL_SECONDS: '100', CACHE_MAX_TTL_SECONDS: '10' }),
    ).toThrow(/CACHE_DEFAULT_TTL_SECONDS/);
    expect(() =>
      parseConfig({ REDIS_COMMAND_TIMEOUT_MS: '3000', REQUEST_TIMEOUT_MS: '2000' }),
    ).toThrow(/REDIS_COMMAND_TIMEOUT_MS/);
    expect(() => parseConfig({ PORT: '9000', METRICS_PORT: '9000' })).toThrow(/METRICS_PORT/);
    expect(() => parseConfig({ DURABLE_WAIT_TIMEOUT_MS: '2000' })).toThrow(
      /DURABLE_WAIT_TIMEOUT_MS: must be below REQUEST_TIMEOUT_MS/,
    );
    expect(() =>
      parseConfig({ SESSION_IDLE_TTL_SECONDS: '100', SESSION_MAX_LIFETIME_SECONDS: '10' }),
    ).toThrow(/SESSION_IDLE_TTL_SECONDS/);
    expect(() => parseConfig({ IDEMPOTENCY_TTL_SECONDS: '800000' })).toThrow(
      /IDEMPOTENCY_TTL_SECONDS/,
    );
    expect(() => parseConfig({ IDEMPOTENCY_KEY_SCOPE: 'global' })).toThrow(/IDEMPOTENCY_KEY_SCOPE/);
  });

  it('defaults sessions and idempotency as the issue asks (24 h idle, 7 days, 24 h records)', () => {
    const c = parseConfig({});
    expect(c.sessions).toEqual({
      idleTtlSeconds: 86_400,
      maxLifetimeSeconds: 604_800,
      maxDataBytes: 65_536,
      maxPerUser: 100,
      touchAfterSeconds: 0,
    });
    expect(c.idempotency.ttlSeconds).toBe(86_400);
    expect(c.idempotency.keyScope).toBe('api-key');
    expect(c.durable).toEqual({ replicas: 1, waitTimeoutMs: 1000 });
  });

  it('batches rate-limit checks by 64 unless told, and refuses 0', () => {
    expect(parseConfig({}).ratelimit.batchMax).toBe(64);
    expect(parseConfig({ RATELIMIT_BATCH_MAX: '1' }).ratelimit.batchMax).toBe(1);
    for (const bad of ['0', '1001', 'many']) {
      expect(() => parseConfig({ RATELIMIT_BATCH_MAX: bad })).toThrow(/RATELIMIT_BATCH_MAX/);
    }
  });

  it('recycles RLS connections after 5 minutes and wants a key unless an anonymous tenant is set', () => {
    const { ratelimit } = parseConfig({});
    expect(ratelimit.rlsGrpcMaxConnectionAgeSeconds).toBe(300);
    expect(ratelimit.rlsGrpcAnonymousTenant).toBeUndefined();
    expect(parseConfig({ RLS_GRPC_ANONYMOUS_TENANT: '' }).ratelimit.rlsGrpcAnonymousTenant).toBe(
      undefined,
    );
    expect(
      parseConfig({ RLS_GRPC_ANONYMOUS_TENANT: 'edge-1' }).ratelimit.rlsGrpcAnonymousTenant,
    ).toBe('edge-1');
    for (const bad of ['Edge', '_edge', 'a:b', 'x'.repeat(64)]) {
      expect(() => parseConfig({ RLS_GRPC_ANONYMOUS_TENANT: bad })).toThrow(
        /RLS_GRPC_ANONYMOUS_TENANT/,
      );
    }
  });

  it('turns TLS on for the gRPC port with a certificate and key, mutual TLS with a client CA', () => {
    expect(parseConfig({ RLS_GRPC_PORT: '8081' }).ratelimit.rlsGrpcTls).toBeUndefined();
    const tls = { RLS_GRPC_TLS_CERT_FILE: '/tls/tls.crt', RLS_GRPC_TLS_KEY_FILE: '/tls/tls.key' };
    expect(parseConfig({ RLS_GRPC_PORT: '8081', ...tls }).ratelimit.rlsGrpcTls).toEqual({
      certFile: '/tls/tls.crt',
      keyFile: '/tls/tls.key',
      clientCaFile: undefined,
    });
    expect(
      parseConfig({ RLS_GRPC_PORT: '8081', ...tls, RLS_GRPC_TLS_CLIENT_CA_FILE: '/ca/ca.crt' })
        .ratelimit.rlsGrpcTls?.clientCaFile,
    ).toBe('/ca/ca.crt');
    expect(() =>
      parseConfig({ RLS_GRPC_PORT: '8081', RLS_GRPC_TLS_CERT_FILE: '/tls/tls.crt' }),
    ).toThrow(
      /RLS_GRPC_TLS_KEY_FILE: RLS_GRPC_TLS_CERT_FILE and RLS_GRPC_TLS_KEY_FILE go together/,
    );
    expect(() =>
      parseConfig({ RLS_GRPC_PORT: '8081', RLS_GRPC_TLS_KEY_FILE: '/tls/tls.key' }),
    ).toThrow(/RLS_GRPC_TLS_CERT_FILE: .*go together/);
    expect(() =>
      parseConfig({ RLS_GRPC_PORT: '8081', RLS_GRPC_TLS_CLIENT_CA_FILE: '/ca/ca.crt' }),
    ).toThrow(/RLS_GRPC_TLS_CLIENT_CA_FILE: needs RLS_GRPC_TLS_CERT_FILE/);
    expect(() => parseConfig(tls)).toThrow(
      /RLS_GRPC_TLS_CERT_FILE: has no effect without RLS_GRPC_PORT/,
    );
  });

  it('writes every session touch unless SESSION_TOUCH_AFTER_SECONDS says otherwise', () => {
    expect(parseConfig({}).sessions.touchAfterSeconds).toBe(0);
    expect(parseConfig({ SESSION_TOUCH_AFTER_SECONDS: '60' }).sessions.touchAfterSeconds).toBe(60);
    for (const bad of ['-1', '86401', '1.5', 'often']) {
      expect(() => parseConfig({ SESSION_TOUCH_AFTER_SECONDS: bad })).toThrow(
        /SESSION_TOUCH_AFTER_SECONDS/,
      );
    }
  });

  it('never echoes a secret', () => {
    try {
      parseConfig({ ADMIN_TOKEN: 'short-secret' });
      expect.unreachable();
    } catch (e) {
      expect((e as Error).message).toContain('ADMIN_TOKEN');
      expect((e as Error).message).not.toContain('short-secret');
    }
  });

  it('refuses a malformed REDIS_URL', () => {
    expect(() => parseConfig({ REDIS_URL: 'http://x' })).toThrow(/REDIS_URL/);
    expect(parseConfig({ REDIS_URL: 'rediss://cache.example:6380/2' }).redis.tls).toBe(true);
  });
});
