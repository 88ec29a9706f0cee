/**
 * The gateway's whole configuration: one zod schema over the environment, parsed once at start.
 * `parseConfig(env)` is pure; it throws a ConfigError naming every bad variable at once.
 * Every variable here is documented in README.md ("Configuration") with the same default.
 */
import { z } from 'zod';
import { TENANT_ID_PATTERN } from './redis/keys.js';

const bool = (dflt: boolean) =>
  z
    .enum(['true', 'false', '1', '0', 'yes', 'no', 'on', 'off'], {
      error: 'must be one of true, false, 1, 0, yes, no, on, off',
    })
    .default(dflt ? 'true' : 'false')
    .transform((v) => v === 'true' || v === '1' || v === 'yes' || v === 'on');

const int = (dflt: number, min: number, max: number) =>
  z.coerce
    .number({ error: 'must be an integer' })
    .int({ error: 'must be an integer' })
    .min(min)
    .max(max)
    .default(dflt);

const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v === '' ? undefined : v));

const hostPort = /^\[?[A-Za-z0-9._:-]+\]?:\d{1,5}$/;

const sentinels = z
  .string()
  .default('')
  .transform((v, ctx) => {
    const parts = v
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s.length > 0);
    const out: { host: string; port: number }[] = [];
    for (const part of parts) {
      if (!hostPort.test(part)) {
        ctx.addIssue({ code: 'custom', message: `"${part}" is not host:port` });
        return z.NEVER;
      }
      const idx = part.lastIndexOf(':');
      const port = Number(part.slice(idx + 1));
      if (port < 1 || port > 65535) {
        ctx.addIssue({ code: 'custom', message: `"${part}" has an invalid port` });
        return z.NEVER;
      }
      out.push({ host: part.slice(0, idx).replace(/^\[|\]$/g, ''), port });
    }
    return out;
  });

const envShape = z.object({
  HOST: z.string().min(1).default('0.0.0.0'),
  PORT: int(8080, 0, 65535),
  METRICS_PORT: int(9464, 0, 65535),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),

  REDIS_SENTINELS: sentinels,
  REDIS_MASTER_NAME: z.string().min(1).default('mymaster'),
  REDIS_URL: z
    .string()
    .default('redis://127.0.0.1:6379')
    .refine((v) => /^rediss?:\/\/[^/]+(\/\d+)?$/.test(v), {
      message: 'must look like redis://host:port or rediss://host:port[/db]',
    }),
  REDIS_USERNAME: optionalString,
  REDIS_PASSWORD: optionalString,
  REDIS_SENTINEL_USERNAME: optionalString,
  REDIS_SENTINEL_PASSWORD: optionalString,
  REDIS_TLS: bool(false),
  REDIS_TLS_CA_FILE: optionalString,
  REDIS_CONNECT_TIMEOUT_MS: int(2000, 100, 60_000),
  REDIS_COMMAND_TIMEOUT_MS: int(500, 10, 60_000),
  REDIS_SENTINEL_PROBE_INTERVAL_MS: int(10_000, 0, 3_600_000),
  READ_FROM_REPLICAS: bool(false),
  REDIS_DURABLE_CONNECTIONS: int(2, 1, 64),
  DURABLE_REPLICAS: int(1, 1, 16),
  DURABLE_WAIT_TIMEOUT_MS: int(1000, 10, 60_000),

  API_KEYS_FILE: optionalString,
  ADMIN_TOKEN: optionalString.refine((v) => v === undefined || v.length >= 16, {
    message: 'must be at least 16 characters',
  }),
  AUTH_CACHE_TTL_MS: int(30_000, 0, 3_600_000),
  AUTH_CACHE_MAX_ENTRIES: int(10_000, 1, 10_000_000),

  REQUEST_TIMEOUT_MS: int(2000, 50, 120_000),
  BODY_LIMIT_BYTES: int(1_048_576, 1024, 100 * 1024 * 1024),
  HTTP_KEEP_ALIVE_TIMEOUT_MS: int(72_000, 1000, 600_000),
  TRUSTED_PROXIES: z.string().default('loopback'),
  SHUTDOWN_GRACE_MS: int(10_000, 0, 600_000),
  OVERLOAD_MAX_EVENT_LOOP_DELAY_MS: int(200, 0, 60_000),
  DOCS_ENABLED: bool(true),

  CACHE_DEFAULT_TTL_SECONDS: int(3600, 1, 365 * 24 * 3600),
  CACHE_MAX_TTL_SECONDS: int(30 * 24 * 3600, 1, 10 * 365 * 24 * 3600),
  CACHE_MAX_VALUE_BYTES: int(512 * 1024, 1, 512 * 1024 * 1024),
  CACHE_MAX_BATCH: int(1000, 1, 1000),
  CACHE_ALLOW_PERSIST: bool(false),
  CACHE_COMPRESS_MIN_BYTES: int(1024, 0, 512 * 1024 * 1024),
  CACHE_MAX_LEASE_MS: int(60_000, 100, 3_600_000),
  CACHE_REFRESH_LEASE_MS: int(10_000, 100, 3_600_000),
  CACHE_MAX_WAIT_MS: int(10_000, 0, 30_000),
  CACHE_INVALIDATE_MAX_KEYS: int(10_000, 100, 1_000_000),
  CACHE_METRICS_TENANT_LABEL: bool(false),
  CACHE_METRICS_MAX_TENANTS: int(20, 1, 1000),
  CACHE_LOCAL_MAX_BYTES: int(64 * 1024 * 1024, 0, 64 * 1024 * 1024 * 1024),
  CACHE_LOCAL_MAX_ENTRY_BYTES: int(64 * 1024, 0, 512 * 1024 * 1024),

  RATELIMIT_POLICIES_FILE: optionalString,
  RLS_GRPC_PORT: int(0, 0, 65535),
  RLS_GRPC_MAX_CONNECTION_AGE_SECONDS: int(300, 0, 30 * 24 * 3600),
  RLS_GRPC_ANONYMOUS_TENANT: optionalString.refine(
    (v) => v === undefined || TENANT_ID_PATTERN.test(v),
    'must be a tenant id ([a-z0-9][a-z0-9_-]{0,62})',
  ),
  RLS_GRPC_TLS_CERT_FILE: optionalString,
  RLS_GRPC_TLS_KEY_FILE: optionalString,
  RLS_GRPC_TLS_CLIENT_CA_FILE: optionalString,
  RATELIMIT_LEGACY_HEADERS: bool(true),
  RATELIMIT_LOCAL_DENY_ENTRIES: int(100_000, 0, 10_000_000),
  RATELIMIT_LEASE_ENTRIES: int(100_000, 0, 10_000_000),
  RATELIMIT_BATCH_MAX: int(64, 1, 1000),
  REQUEST_QUOTA_PER_MINUTE: int(600_000, 0, 1_000_000_000),

  SESSION_IDLE_TTL_SECONDS: int(24 * 3600, 1, 365 * 24 * 3600),
  SESSION_MAX_LIFETIME_SECONDS: int(7 * 24 * 3600, 1, 10 * 365 * 24 * 3600),
  SESSION_MAX_DATA_BYTES: int(64 * 1024, 1, 16 * 1024 * 1024),
  SESSION_MAX_PER_USER: int(100, 1, 10_000),
  SESSION_TOUCH_AFTER_SECONDS: int(0, 0, 24 * 3600),

  IDEMPOTENCY_TTL_SECONDS: int(24 * 3600, 1, 30 * 24 * 3600),
  IDEMPOTENCY_MAX_TTL_SECONDS: int(7 * 24 * 3600, 1, 365 * 24 * 3600),
  IDEMPOTENCY_LOCK_TTL_SECONDS: int(60, 1, 3600),
  IDEMPOTENCY_MAX_RESPONSE_BYTES: int(256 * 1024, 1, 16 * 1024 * 1024),
  IDEMPOTENCY_KEY_SCOPE: z.enum(['api-key', 'tenant']).default('api-key'),

  QUEUE_MAX_RECEIVE_COUNT: int(5, 1, 1000),
  QUEUE_MAX_LENGTH: int(100_000, 100, 100_000_000),
  QUEUE_DEDUP_WINDOW_SECONDS: int(300, 1, 7 * 24 * 3600),
  QUEUE_MAX_MESSAGE_BYTES: int(256 * 1024, 1, 16 * 1024 * 1024),
  QUEUE_MAX_DELAY_SECONDS: int(15 * 60, 0, 7 * 24 * 3600),
  QUEUE_BLOCKING_CONNECTIONS: int(16, 0, 1024),
});

/** Every environment variable the gateway reads (README and the Helm chart list the same). */
export const CONFIG_VARIABLES = Object.keys(envShape.shape);

export const configSchema = envShape.superRefine((c, ctx) => {
  if (c.CACHE_DEFAULT_TTL_SECONDS > c.CACHE_MAX_TTL_SECONDS) {
    ctx.addIssue({
      code: 'custom',
      path: ['CACHE_DEFAULT_TTL_SECONDS'],
      message: 'must not exceed CACHE_MAX_TTL_SECONDS',
    });
  }
  if (c.REDIS_COMMAND_TIMEOUT_MS >= c.REQUEST_TIMEOUT_MS) {
    ctx.addIssue({
      code: 'custom',
      path: ['REDIS_COMMAND_TIMEOUT_MS'],
      message: 'must be below REQUEST_TIMEOUT_MS',
    });
  }
  if (c.DURABLE_WAIT_TIMEOUT_MS >= c.REQUEST_TIMEOUT_MS) {
    ctx.addIssue({
      code: 'custom',
      path: ['DURABLE_WAIT_TIMEOUT_MS'],
      message: 'must be below REQUEST_TIMEOUT_MS',
    });
  }
  if (c.SESSION_IDLE_TTL_SECONDS > c.SESSION_MAX_LIFETIME_SECONDS) {
    ctx.addIssue({
      code: 'custom',
      path: ['SESSION_IDLE_TTL_SECONDS'],
      message: 'must not exceed SESSION_MAX_LIFETIME_SECONDS',
    });
  }
  if (c.IDEMPOTENCY_TTL_SECONDS > c.IDEMPOTENCY_MAX_TTL_SECONDS) {
    ctx.addIssue({
      code: 'custom',
      path: ['IDEMPOTENCY_TTL_SECONDS'],
      message: 'must not exceed IDEMPOTENCY_MAX_TTL_SECONDS',
    });
  }
  if (c.METRICS_PORT !== 0 && c.METRICS_PORT === c.PORT) {
    ctx.addIssue({ code: 'custom', path: ['METRICS_PORT'], message: 'must differ from PORT' });
  }
  if (c.RLS_GRPC_PORT !== 0 && (c.RLS_GRPC_PORT === c.PORT || c.RLS_GRPC_PORT === c.METRICS_PORT)) {
    ctx.addIssue({
      code: 'custom',
      path: ['RLS_GRPC_PORT'],
      message: 'must differ from PORT and METRICS_PORT',
    });
  }
  if ((c.RLS_GRPC_TLS_CERT_FILE === undefined) !== (c.RLS_GRPC_TLS_KEY_FILE === undefined)) {
    ctx.addIssue({
      code: 'custom',
      path: [
        c.RLS_GRPC_TLS_CERT_FILE === undefined ? 'RLS_GRPC_TLS_CERT_FILE' : 'RLS_GRPC_TLS_KEY_FILE',
      ],
      message: 'RLS_GRPC_TLS_CERT_FILE and RLS_GRPC_TLS_KEY_FILE go together',
    });
  }
  if (c.RLS_GRPC_TLS_CLIENT_CA_FILE !== undefined && c.RLS_GRPC_TLS_CERT_FILE === undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['RLS_GRPC_TLS_CLIENT_CA_FILE'],
      message: 'needs RLS_GRPC_TLS_CERT_FILE and RLS_GRPC_TLS_KEY_FILE (mutual TLS is TLS first)',
    });
  }
  if (c.RLS_GRPC_TLS_CERT_FILE !== undefined && c.RLS_GRPC_PORT === 0) {
    ctx.addIssue({
      code: 'custom',
      path: ['RLS_GRPC_TLS_CERT_FILE'],
      message: 'has no effect without RLS_GRPC_PORT (the gRPC rate limit service is off)',
    });
  }
});

type RawConfig = z.output<typeof configSchema>;

/** Where the gateway finds Redis: through sentinels (production) or one standalone server. */
export type RedisTopology =
  | { mode: 'sentinel'; sentinels: { host: string; port: number }[]; masterName: string }
  | { mode: 'standalone'; url: string };

export interface Config {
  readonly host: string;
  readonly port: number;
  /** 0 disables the separate metrics listener. */
  readonly metricsPort: number;
  readonly logLevel: RawConfig['LOG_LEVEL'];
  readonly redis: {
    readonly topology: RedisTopology;
    readonly username?: string | undefined;
    readonly password?: string | undefined;
    readonly sentinelUsername?: string | undefined;
    readonly sentinelPassword?: string | undefined;
    readonly tls: boolean;
    readonly tlsCaFile?: string | undefined;
    readonly connectTimeoutMs: number;
    readonly commandTimeoutMs: number;
    /** How often every sentinel is asked for the master (redis/sentinel-probe.ts); 0 = never. */
    readonly sentinelProbeIntervalMs: number;
    readonly readFromReplicas: boolean;
    /** Dedicated connections for durable writes (each write is followed by WAIT on its own connection). */
    readonly durableConnections: number;
  };
  /** `durable: true` writes answer only once this many replicas confirm them (WAIT). */
  readonly durable: {
    readonly replicas: number;
    readonly waitTimeoutMs: number;
  };
  readonly auth: {
    readonly apiKeysFile?: string | undefined;
    readonly adminToken?: string | undefined;
    readonly cacheTtlMs: number;
    readonly cacheMaxEntries: number;
  };
  readonly http: {
    /** Upper bound on how long a request may wait for Redis before it is answered 503. */
    readonly requestTimeoutMs: number;
    readonly bodyLimitBytes: number;
    readonly keepAliveTimeoutMs: number;
    /**
     * Proxies whose X-Forwarded-For is believed (addresses, CIDRs or proxy-addr's names
     * `loopback`, `linklocal`, `uniquelocal`); false trusts none.
     */
    readonly trustProxy: false | string[];
    readonly shutdownGraceMs: number;
    readonly docsEnabled: boolean;
    /** Mean event-loop delay (per 500 ms) above which new requests are shed; 0: never. */
    readonly overloadMaxEventLoopDelayMs: number;
  };
  readonly cache: {
    readonly defaultTtlSeconds: number;
    readonly maxTtlSeconds: number;
    readonly maxValueBytes: number;
    readonly maxBatch: number;
    /** Whether `ttl: null` (never expire) is accepted. */
    readonly allowPersist: boolean;
    /** Values at least this large are stored compressed; 0 disables compression. */
    readonly compressMinBytes: number;
    readonly maxLeaseMs: number;
    /** Lease handed to the one reader that refreshes a stale value. */
    readonly refreshLeaseMs: number;
    /** Longest `wait` a reader may ask for on a leased miss. */
    readonly maxWaitMs: number;
    /** Most keys one `_invalidate` call deletes before it returns a continuation cursor. */
    readonly invalidateMaxKeys: number;
    readonly metricsTenantLabel: boolean;
    readonly metricsMaxTenants: number;
    /** Bytes of the process-local near cache; 0 disables it (and key tracking). */
    readonly localMaxBytes: number;
    /** Entries larger than this are never held locally. */
    readonly localMaxEntryBytes: number;
  };
  readonly ratelimit: {
    readonly policiesFile?: string | undefined;
    /** Also send X-RateLimit-Limit/-Remaining/-Reset. */
    readonly legacyHeaders: boolean;
    /** Identifiers known to be over their limit, remembered in-process; 0 disables. */
    readonly localDenyEntries: number;
    /** Identifiers a replica may hold leases for (policies with leaseMs); 0 turns leases off. */
    readonly leaseEntries: number;
    /** Most single checks of one event-loop turn sent in one script call (1: no batching). */
    readonly batchMax: number;
    /** Requests one API key may make per minute across all replicas; 0 turns the quota off. */
    readonly requestQuotaPerMinute: number;
    /** Port of the gRPC rate limit service (Envoy's RLS); 0: not served. */
    readonly rlsGrpcPort: number;
    /**
     * Seconds an RLS connection lives before the server asks the client to reconnect (GOAWAY, with
     * ±10 % jitter), so Envoy's connections spread over replicas added later; 0: forever.
     */
    readonly rlsGrpcMaxConnectionAgeSeconds: number;
    /**
     * Tenant whose counters gRPC RLS calls without credentials use (for clients that cannot send
     * metadata); undefined: such calls are UNAUTHENTICATED.
     */
    readonly rlsGrpcAnonymousTenant?: string | undefined;
    /** TLS for the RLS port (PEM files; a client CA: mutual TLS); undefined: plaintext h2c. */
    readonly rlsGrpcTls?:
      | {
          readonly certFile: string;
          readonly keyFile: string;
          readonly clientCaFile?: string | undefined;
        }
      | undefined;
  };
  readonly sessions: {
    /** Default idle expiry, slid forward by touches. */
    readonly idleTtlSeconds: number;
    /** Default and upper bound of a session's absolute lifetime. */
    readonly maxLifetimeSeconds: number;
    /** Bytes of a session's data (field names plus their JSON values). */
    readonly maxDataBytes: number;
    /** Live sessions one user may hold; creating one more revokes the least recently active. */
    readonly maxPerUser: number;
    /** A touch this soon after the last recorded activity writes nothing (0: every touch writes). */
    readonly touchAfterSeconds: number;
  };
  readonly idempotency: {
    readonly ttlSeconds: number;
    readonly maxTtlSeconds: number;
    readonly lockTtlSeconds: number;
    readonly maxResponseBytes: number;
    /** 'api-key': each API key has its own keys (the draft's advice); 'tenant': shared by the tenant's keys. */
    readonly keyScope: 'api-key' | 'tenant';
  };
  readonly queues: {
    /** Receives after which a message moves to the dead-letter queue. */
    readonly maxReceiveCount: number;
    /** Acknowledged history kept per stream (trimming never drops an unacknowledged message). */
    readonly maxLength: number;
    readonly dedupWindowSeconds: number;
    readonly maxMessageBytes: number;
    readonly maxDelaySeconds: number;
    /** Dedicated connections for long polls; 0 turns long polling off (receives never wait). */
    readonly blockingConnections: number;
  };
}

/** Names of the variables holding secrets; their values never reach a log line. */
export const SECRET_VARIABLES = [
  'REDIS_PASSWORD',
  'REDIS_SENTINEL_PASSWORD',
  'ADMIN_TOKEN',
] as const;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

/** Parses the environment into a frozen Config, or throws a ConfigError listing every bad variable. */
export function parseConfig(env: Record<string, string | undefined>): Config {
  const parsed = configSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => {
      const name = i.path.join('.') || '(environment)';
      const secret = (SECRET_VARIABLES as readonly string[]).includes(name);
      const value = secret ? '' : env[name] === undefined ? ' (unset)' : ` (got "${env[name]}")`;
      return `${name}: ${i.message}${value}`;
    });
    throw new ConfigError(problems);
  }
  const c = parsed.data;
  const topology: RedisTopology =
    c.REDIS_SENTINELS.length > 0
      ? { mode: 'sentinel', sentinels: c.REDIS_SENTINELS, masterName: c.REDIS_MASTER_NAME }
      : { mode: 'standalone', url: c.REDIS_URL };
  const trust = c.TRUSTED_PROXIES.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const config: Config = {
    host: c.HOST,
    port: c.PORT,
    metricsPort: c.METRICS_PORT,
    logLevel: c.LOG_LEVEL,
    redis: {
      topology,
      username: c.REDIS_USERNAME,
      password: c.REDIS_PASSWORD,
      sentinelUsername: c.REDIS_SENTINEL_USERNAME,
      sentinelPassword: c.REDIS_SENTINEL_PASSWORD,
      tls: c.REDIS_TLS || (topology.mode === 'standalone' && topology.url.startsWith('rediss:')),
      tlsCaFile: c.REDIS_TLS_CA_FILE,
      connectTimeoutMs: c.REDIS_CONNECT_TIMEOUT_MS,
      commandTimeoutMs: c.REDIS_COMMAND_TIMEOUT_MS,
      sentinelProbeIntervalMs: c.REDIS_SENTINEL_PROBE_INTERVAL_MS,
      readFromReplicas: c.READ_FROM_REPLICAS,
      durableConnections: c.REDIS_DURABLE_CONNECTIONS,
    },
    durable: { replicas: c.DURABLE_REPLICAS, waitTimeoutMs: c.DURABLE_WAIT_TIMEOUT_MS },
    auth: {
      apiKeysFile: c.API_KEYS_FILE,
      adminToken: c.ADMIN_TOKEN,
      cacheTtlMs: c.AUTH_CACHE_TTL_MS,
      cacheMaxEntries: c.AUTH_CACHE_MAX_ENTRIES,
    },
    http: {
      requestTimeoutMs: c.REQUEST_TIMEOUT_MS,
      bodyLimitBytes: c.BODY_LIMIT_BYTES,
      keepAliveTimeoutMs: c.HTTP_KEEP_ALIVE_TIMEOUT_MS,
      trustProxy: trust.length > 0 ? trust : false,
      shutdownGraceMs: c.SHUTDOWN_GRACE_MS,
      docsEnabled: c.DOCS_ENABLED,
      overloadMaxEventLoopDelayMs: c.OVERLOAD_MAX_EVENT_LOOP_DELAY_MS,
    },
    cache: {
      defaultTtlSeconds: c.CACHE_DEFAULT_TTL_SECONDS,
      maxTtlSeconds: c.CACHE_MAX_TTL_SECONDS,
      maxValueBytes: c.CACHE_MAX_VALUE_BYTES,
      maxBatch: c.CACHE_MAX_BATCH,
      allowPersist: c.CACHE_ALLOW_PERSIST,
      compressMinBytes: c.CACHE_COMPRESS_MIN_BYTES,
      maxLeaseMs: c.CACHE_MAX_LEASE_MS,
      refreshLeaseMs: c.CACHE_REFRESH_LEASE_MS,
      maxWaitMs: c.CACHE_MAX_WAIT_MS,
      invalidateMaxKeys: c.CACHE_INVALIDATE_MAX_KEYS,
      metricsTenantLabel: c.CACHE_METRICS_TENANT_LABEL,
      metricsMaxTenants: c.CACHE_METRICS_MAX_TENANTS,
      localMaxBytes: c.CACHE_LOCAL_MAX_BYTES,
      localMaxEntryBytes: c.CACHE_LOCAL_MAX_ENTRY_BYTES,
    },
    ratelimit: {
      policiesFile: c.RATELIMIT_POLICIES_FILE,
      legacyHeaders: c.RATELIMIT_LEGACY_HEADERS,
      localDenyEntries: c.RATELIMIT_LOCAL_DENY_ENTRIES,
      leaseEntries: c.RATELIMIT_LEASE_ENTRIES,
      batchMax: c.RATELIMIT_BATCH_MAX,
      requestQuotaPerMinute: c.REQUEST_QUOTA_PER_MINUTE,
      rlsGrpcPort: c.RLS_GRPC_PORT,
      rlsGrpcMaxConnectionAgeSeconds: c.RLS_GRPC_MAX_CONNECTION_AGE_SECONDS,
      rlsGrpcAnonymousTenant: c.RLS_GRPC_ANONYMOUS_TENANT,
      rlsGrpcTls:
        c.RLS_GRPC_TLS_CERT_FILE === undefined || c.RLS_GRPC_TLS_KEY_FILE === undefined
          ? undefined
          : {
              certFile: c.RLS_GRPC_TLS_CERT_FILE,
              keyFile: c.RLS_GRPC_TLS_KEY_FILE,
              clientCaFile: c.RLS_GRPC_TLS_CLIENT_CA_FILE,
            },
    },
    sessions: {
      idleTtlSeconds: c.SESSION_IDLE_TTL_SECONDS,
      maxLifetimeSeconds: c.SESSION_MAX_LIFETIME_SECONDS,
      maxDataBytes: c.SESSION_MAX_DATA_BYTES,
      maxPerUser: c.SESSION_MAX_PER_USER,
      touchAfterSeconds: c.SESSION_TOUCH_AFTER_SECONDS,
    },
    idempotency: {
      ttlSeconds: c.IDEMPOTENCY_TTL_SECONDS,
      maxTtlSeconds: c.IDEMPOTENCY_MAX_TTL_SECONDS,
      lockTtlSeconds: c.IDEMPOTENCY_LOCK_TTL_SECONDS,
      maxResponseBytes: c.IDEMPOTENCY_MAX_RESPONSE_BYTES,
      keyScope: c.IDEMPOTENCY_KEY_SCOPE,
    },
    queues: {
      maxReceiveCount: c.QUEUE_MAX_RECEIVE_COUNT,
      maxLength: c.QUEUE_MAX_LENGTH,
      dedupWindowSeconds: c.QUEUE_DEDUP_WINDOW_SECONDS,
      maxMessageBytes: c.QUEUE_MAX_MESSAGE_BYTES,
      maxDelaySeconds: c.QUEUE_MAX_DELAY_SECONDS,
      blockingConnections: c.QUEUE_BLOCKING_CONNECTIONS,
    },
  };
  return deepFreeze(config);
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
