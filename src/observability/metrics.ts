/**
 * Every Prometheus metric of the gateway, on a registry of its own (never prom-client's global one).
 * Labels are bounded: route templates, methods, status codes, module and outcome names; never a
 * tenant id, API key, Redis key, stream name or raw URL.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { type CacheMetrics, createCacheMetrics } from './cache-metrics.js';
import { FastCounter, FastHistogram } from './fast-metrics.js';
import { type RatelimitMetrics, createRatelimitMetrics } from './ratelimit-metrics.js';
import { type QueueMetrics, createQueueMetrics } from './queue-metrics.js';
import { type StateMetrics, createStateMetrics } from './state-metrics.js';

export interface Metrics {
  readonly registry: Registry;
  readonly httpDuration: FastHistogram<'method' | 'route' | 'status_code'>;
  readonly cache: CacheMetrics;
  readonly ratelimit: RatelimitMetrics;
  readonly state: StateMetrics;
  readonly queues: QueueMetrics;
  readonly redisErrors: Counter<'module' | 'kind'>;
  readonly redisReady: Gauge<'role'>;
  readonly redisReconnects: Counter<'role'>;
  readonly redisFailovers: Counter;
  readonly redisRetries: Counter<'reason'>;
  /** Per durability setting of the master (redis/settings-check.ts): 1 as recommended, else 0. */
  readonly redisSettingOk: Gauge<'setting'>;
  /** Per configured sentinel: 1 when it named a master at the last probe (redis/sentinel-probe.ts). */
  readonly sentinelUp: Gauge<'sentinel'>;
  /** Distinct masters the answering sentinels named at the last probe. */
  readonly sentinelMasters: Gauge;
  /** Per sentinel that said (SENTINEL CKQUORUM): 1 when a failover could be authorized now. */
  readonly sentinelQuorum: Gauge<'sentinel'>;
  readonly authFailures: Counter<'reason'>;
  readonly authCache: FastCounter<'result'>;
  /** 1 while the process sheds load (its event loop lags past the limit), else 0. */
  readonly overloaded: Gauge;
  /** Requests answered 503 OVERLOADED without being served, by module. */
  readonly shed: Counter<'module'>;
  /** Records one HTTP request; children are cached so the hot path does no label hashing. */
  observeHttp(method: string, route: string, status: number, seconds: number): void;
}

export interface MetricsOptions {
  registry?: Registry;
  /** Node process metrics (event loop, heap, GC). */
  collectDefaults?: boolean;
  /** Tenant labels on cache lookups for at most this many tenants; 0 = off. */
  cacheTenantLabels?: number;
}

export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = options.registry ?? new Registry();
  if (options.collectDefaults ?? true) collectDefaultMetrics({ register: registry });
  const httpDuration = new FastHistogram(
    'gateway_http_request_duration_seconds',
    'HTTP request duration by route template, method and status code.',
    ['method', 'route', 'status_code'] as const,
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  ).register(registry);
  const cache = createCacheMetrics(registry, { tenantLabels: options.cacheTenantLabels ?? 0 });
  const ratelimit = createRatelimitMetrics(registry);
  const state = createStateMetrics(registry);
  const queues = createQueueMetrics(registry);
  const redisErrors = new Counter({
    name: 'gateway_redis_errors_total',
    help: 'Redis errors seen while serving requests, by module and kind (unavailable, timeout, readonly, noreplicas, oom, noperm, other).',
    labelNames: ['module', 'kind'] as const,
    registers: [registry],
  });
  const redisReady = new Gauge({
    name: 'gateway_redis_client_ready',
    help: '1 when the Redis client of this role is connected and ready, else 0.',
    labelNames: ['role'] as const,
    registers: [registry],
  });
  const redisReconnects = new Counter({
    name: 'gateway_redis_reconnects_total',
    help: 'Reconnection attempts of the Redis clients, by role.',
    labelNames: ['role'] as const,
    registers: [registry],
  });
  const redisFailovers = new Counter({
    name: 'gateway_redis_failovers_total',
    help: 'Master changes seen by this gateway (the primary client came back on another address).',
    registers: [registry],
  });
  const redisRetries = new Counter({
    name: 'gateway_redis_retries_total',
    help: 'Commands Redis refused before executing them (READONLY, NOREPLICAS, LOADING, not sent) and the gateway sent again within the request budget.',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const redisSettingOk = new Gauge({
    name: 'gateway_redis_setting_ok',
    help: 'Per setting of the Redis master that decides whether acknowledged writes survive (persistence: appendonly; eviction: maxmemory-policy noeviction; min_replicas: min-replicas-to-write) and the permissions of the gateway user (acl: every grant of the gateway line of deploy/redis/users.acl), 1 when set as deploy/redis/ does, else 0; read at each connection to a master.',
    labelNames: ['setting'] as const,
    registers: [registry],
  });
  const sentinelUp = new Gauge({
    name: 'gateway_redis_sentinel_up',
    help: '1 when this configured sentinel answered the last probe with a master for REDIS_MASTER_NAME, else 0 (unreachable, refused, or it monitors no such master).',
    labelNames: ['sentinel'] as const,
    registers: [registry],
  });
  const sentinelMasters = new Gauge({
    name: 'gateway_redis_sentinel_masters',
    help: 'Distinct master addresses the sentinels named at the last probe: 1 when they agree, 2 or more while a failover is announced or a sentinel is stale, 0 when none answered.',
    registers: [registry],
  });
  const sentinelQuorum = new Gauge({
    name: 'gateway_redis_sentinel_quorum',
    help: 'Per sentinel that answered SENTINEL CKQUORUM at the last probe: 1 when, as it sees the others, enough sentinels are usable for the quorum and the majority a failover needs; 0 when not (a master that fails now is not replaced). No series for a sentinel that did not say.',
    labelNames: ['sentinel'] as const,
    registers: [registry],
  });
  const authFailures = new Counter({
    name: 'gateway_auth_failures_total',
    help: 'Refused credentials by reason (missing, malformed, unknown, revoked, expired, scope).',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const authCache = new FastCounter(
    'gateway_auth_cache_lookups_total',
    'In-process API-key cache lookups by result (hit, miss).',
    ['result'] as const,
  ).register(registry);
  const overloaded = new Gauge({
    name: 'gateway_overloaded',
    help: '1 while this replica sheds load: its event loop lags past OVERLOAD_MAX_EVENT_LOOP_DELAY_MS.',
    registers: [registry],
  });
  overloaded.set(0);
  const shed = new Counter({
    name: 'gateway_requests_shed_total',
    help: 'Requests answered 503 OVERLOADED without being served, by module.',
    labelNames: ['module'] as const,
    registers: [registry],
  });
  for (const role of ['primary', 'replica', 'subscriber']) redisReady.set({ role }, 0);

  const children = new Map<string, ReturnType<typeof httpDuration.child>>();
  return {
    registry,
    httpDuration,
    cache,
    ratelimit,
    state,
    queues,
    redisErrors,
    redisReady,
    redisReconnects,
    redisFailovers,
    redisRetries,
    redisSettingOk,
    sentinelUp,
    sentinelMasters,
    sentinelQuorum,
    authFailures,
    authCache,
    overloaded,
    shed,
    observeHttp(method, route, status, seconds) {
      const id = `${method} ${status} ${route}`;
      let child = children.get(id);
      if (child === undefined) {
        child = httpDuration.child({ method, route, status_code: String(status) });
        children.set(id, child);
      }
      httpDuration.observeSeries(child, seconds);
    },
  };
}
