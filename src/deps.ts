/**
 * The composition root: Redis clients, scripts, clock, metrics and every service, built once from
 * the config and handed to buildApp. Tests build their own with other options.
 */
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type { Logger } from 'pino';
import { type Clock, systemClock } from './clock.js';
import type { Config } from './config.js';
import { createAdminService } from './modules/admin/service.js';
import { parseKeysFile } from './modules/admin/keys-file.js';
import { createNearCache } from './modules/cache/near-cache.js';
import { createCacheService } from './modules/cache/service.js';
import {
  type IdempotencyService,
  createIdempotencyService,
} from './modules/idempotency/service.js';
import { parsePoliciesFile } from './modules/ratelimit/policy.js';
import { type QuotaCounter, createQuotaCounter } from './modules/ratelimit/quota.js';
import { type RatelimitService, createRatelimitService } from './modules/ratelimit/service.js';
import { type EnvoyService, createEnvoyService } from './modules/ratelimit/envoy-service.js';
import { type PolicyStore, createPolicyStore } from './modules/ratelimit/store.js';
import { type QueueService, createQueueService } from './modules/queues/service.js';
import { type SessionService, createSessionService } from './modules/sessions/service.js';
import type { Lifecycle } from './observability/health.js';
import { type Metrics, createMetrics } from './observability/metrics.js';
import { type RedisHandle, createRedis, redisTls } from './redis/client.js';
import { keys } from './redis/keys.js';
import { defineScripts, loadScripts } from './redis/scripts.js';
import {
  type SentinelProbe,
  failoverPossible,
  mastersNamed,
  sentinelMasterViews,
  startSentinelProbe,
} from './redis/sentinel-probe.js';

export interface Deps {
  readonly config: Config;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly redis: RedisHandle;
  /** Every sentinel asked for the master now and then (Sentinel mode, unless turned off). */
  readonly sentinels: SentinelProbe | undefined;
  readonly metrics: Metrics;
  readonly lifecycle: Lifecycle;
  readonly admin: ReturnType<typeof createAdminService>;
  readonly cache: ReturnType<typeof createCacheService>;
  readonly policies: PolicyStore;
  readonly ratelimit: RatelimitService;
  /** envoyproxy/ratelimit decisions (HTTP /json mirror and the gRPC rate limit service). */
  readonly envoy: EnvoyService;
  readonly quota: QuotaCounter;
  readonly sessions: SessionService;
  readonly idempotency: IdempotencyService;
  readonly queues: QueueService;
  /** Re-reads API_KEYS_FILE now (it is also polled every 10 s). */
  reloadKeysFile(): void;
  /** Re-reads RATELIMIT_POLICIES_FILE now (it is also polled every 10 s). */
  reloadPoliciesFile(): void;
  close(): Promise<void>;
}

export interface DepsOptions {
  clock?: Clock;
  metrics?: Metrics;
  /** Build without connecting (to print the OpenAPI document). */
  lazyConnect?: boolean;
  /** Redis refuses something the gateway cannot work without; main.ts exits. Default: log it. */
  onFatal?(err: Error): void;
}

const KEYS_FILE_POLL_MS = 10_000;

export function createDeps(config: Config, logger: Logger, options: DepsOptions = {}): Deps {
  const clock = options.clock ?? systemClock;
  const metrics =
    options.metrics ??
    createMetrics({
      cacheTenantLabels: config.cache.metricsTenantLabel ? config.cache.metricsMaxTenants : 0,
    });
  const log = logger.child({ component: 'redis' });

  let subscriberReadyOnce = false;
  const redis = createRedis(config, {
    lazyConnect: options.lazyConnect ?? false,
    tracking: config.cache.localMaxBytes > 0,
    now: () => clock.nowMs(),
    hooks: {
      onReady(role, address) {
        metrics.redisReady.set({ role }, 1);
        log.info({ role, address }, 'redis ready');
        if (role === 'subscriber') {
          // Revocations and policy changes published while we were away were missed: forget
          // every cached key and API-managed policy.
          if (subscriberReadyOnce) {
            admin.forgetAll();
            policies.forgetAll();
          }
          subscriberReadyOnce = true;
        }
      },
      onDown(role) {
        metrics.redisReady.set({ role }, 0);
      },
      onReconnecting(role) {
        metrics.redisReconnects.inc({ role });
      },
      onFailover(from, to) {
        metrics.redisFailovers.inc();
        log.warn({ from, to }, 'redis master changed');
        // A grant the old master had not yet passed on to the replica promoted is lost: units
        // left of such a lease would be admitted with nothing counting them.
        ratelimit.forgetLeases();
      },
      onDurable(module, result) {
        metrics.state.durable(module, result);
      },
      onFatal(err) {
        log.fatal({ err: err.message }, 'redis permissions');
        options.onFatal?.(err);
      },
      onSettings(checks, address) {
        for (const c of checks) {
          metrics.redisSettingOk.set({ setting: c.setting }, c.ok ? 1 : 0);
          if (c.ok) continue;
          if (c.setting === 'acl')
            log.error({ address, detail: c.detail }, 'redis user lacks permissions');
          else
            log.warn(
              { setting: c.setting, address, detail: c.detail },
              'redis setting risks data loss',
            );
        }
      },
      onRetry(reason) {
        metrics.redisRetries.inc({ reason: /^[A-Z]+$/.test(reason) ? reason : 'NOTSENT' });
      },
      onError(role, err) {
        log.warn({ role, err: err.message }, 'redis connection error');
      },
    },
  });
  const topology = config.redis.topology;
  let mastersBefore = 0;
  let failoverBefore: boolean | undefined;
  const sentinelAsk =
    topology.mode === 'sentinel'
      ? {
          sentinels: topology.sentinels,
          masterName: topology.masterName,
          username: config.redis.sentinelUsername,
          password: config.redis.sentinelPassword,
          tls: redisTls(config),
          timeoutMs: config.redis.connectTimeoutMs,
        }
      : undefined;
  const sentinels =
    sentinelAsk !== undefined &&
    config.redis.sentinelProbeIntervalMs > 0 &&
    options.lazyConnect !== true
      ? startSentinelProbe({
          ...sentinelAsk,
          intervalMs: config.redis.sentinelProbeIntervalMs,
          onChange(r, previous) {
            if (r.state === 'ok') {
              log.info({ sentinel: r.sentinel, master: r.master }, 'sentinel answers again');
            } else {
              log.warn(
                { sentinel: r.sentinel, state: r.state, detail: r.detail, previous },
                'sentinel cannot name the master; a reconnect will skip it (and fail if no sentinel can)',
              );
            }
          },
          onRound(reports) {
            for (const r of reports) {
              metrics.sentinelUp.set({ sentinel: r.sentinel }, r.state === 'ok' ? 1 : 0);
              if (r.quorum === undefined) metrics.sentinelQuorum.remove({ sentinel: r.sentinel });
              else metrics.sentinelQuorum.set({ sentinel: r.sentinel }, r.quorum ? 1 : 0);
            }
            // Logged when it changes: no sentinel that answers can get a failover authorized.
            const failover = failoverPossible(reports);
            if (failover === false && failoverBefore !== false) {
              log.error(
                {
                  named: Object.fromEntries(reports.map((r) => [r.sentinel, r.detail ?? r.state])),
                },
                'sentinels cannot fail the master over: too few usable sentinels for the quorum or the majority',
              );
            } else if (failover === true && failoverBefore === false) {
              log.info('sentinels can fail the master over again');
            }
            failoverBefore = failover;
            const masters = mastersNamed(reports);
            // Logged once when they start to disagree (a failover being announced, or a stale
            // sentinel); the gauge shows how long it lasts.
            if (masters > 1 && mastersBefore <= 1) {
              log.warn(
                {
                  named: Object.fromEntries(reports.map((r) => [r.sentinel, r.master ?? r.state])),
                },
                'sentinels name different masters',
              );
            }
            mastersBefore = masters;
            metrics.sentinelMasters.set(masters);
          },
        })
      : undefined;
  const scripts = loadScripts();
  defineScripts(
    [
      redis.primary,
      ...redis.durable,
      ...(redis.reader() !== redis.primary ? [redis.reader()] : []),
    ],
    scripts,
  );

  const authHit = metrics.authCache.child({ result: 'hit' });
  const authMiss = metrics.authCache.child({ result: 'miss' });
  const admin = createAdminService({
    redis,
    clock,
    adminToken: config.auth.adminToken,
    cacheTtlMs: config.auth.cacheTtlMs,
    cacheMaxEntries: config.auth.cacheMaxEntries,
    onCacheLookup: (hit) => (hit ? authHit.inc() : authMiss.inc()),
    ...(sentinelAsk !== undefined ? { sentinelViews: () => sentinelMasterViews(sentinelAsk) } : {}),
  });

  const cache = createCacheService({
    redis,
    clock,
    limits: config.cache,
    onLookup: (op, result, n, tenant) => metrics.cache.lookup(op, result, n, tenant),
    onStored: (bytes, saved) => metrics.cache.stored(bytes, saved),
    onLease: (outcome) => metrics.cache.lease(outcome),
    onInvalidated: (by, n) => metrics.cache.invalidated(by, n),
    onNearHit: () => metrics.cache.nearHit(),
    near:
      redis.tracking === undefined
        ? undefined
        : createNearCache({
            tracking: redis.tracking,
            maxBytes: config.cache.localMaxBytes,
            maxEntryBytes: config.cache.localMaxEntryBytes,
          }),
  });
  if (cache.nearStats) metrics.cache.watchNear(cache.nearStats);

  const ratelimitLog = logger.child({ component: 'ratelimit' });
  const policyLabel = (p: { source: string; name: string }) =>
    p.source === 'builtin' || p.source === 'file'
      ? p.name
      : p.source === 'inline'
        ? 'inline'
        : 'tenant';
  const policies: PolicyStore = createPolicyStore({
    redis,
    clock,
    cacheTtlMs: config.auth.cacheTtlMs,
    onChange: (tenant) => ratelimit.clearLocal(tenant),
    onInvalidEntry: (tenant, name, message) =>
      ratelimitLog.error(
        { tenant, policy: name, err: message },
        'stored policy is invalid; ignored',
      ),
  });
  const lifecycle: Lifecycle = { draining: false, overloaded: false };
  const ratelimit: RatelimitService = createRatelimitService({
    redis,
    clock,
    overloaded: () => lifecycle.overloaded,
    shadowAll: () => policies.shadowAll(),
    localDenyEntries: config.ratelimit.localDenyEntries,
    leaseEntries: config.ratelimit.leaseEntries,
    batchMax: config.ratelimit.batchMax,
    onDecision: (policy, outcome) => metrics.ratelimit.decision(policyLabel(policy), outcome),
    onLocalDenial: () => metrics.ratelimit.localDenial(),
    onLease: (event, units) => metrics.ratelimit.lease(event, units),
    onRefund: (units) => metrics.ratelimit.refund(units),
    onBatch: (checks) => metrics.ratelimit.batch(checks),
    onRedisError: (kind) => metrics.redisErrors.inc({ module: 'ratelimit', kind }),
    onReset: (policy, cleared) => metrics.ratelimit.reset(policyLabel(policy), cleared),
  });
  const envoy = createEnvoyService({
    service: ratelimit,
    store: policies,
    clock,
    onDecision: (policy, outcome) => metrics.ratelimit.decision(policyLabel(policy), outcome),
    onUnmatched: (reason) => metrics.ratelimit.envoyUnmatched(reason),
  });
  const quota = createQuotaCounter({
    redis,
    clock,
    onError: () => metrics.ratelimit.quotaFlushError(),
  });

  const sessions = createSessionService({
    redis,
    clock,
    limits: config.sessions,
    onEvent: (event, n) => metrics.state.session(event, n),
  });
  const idempotency = createIdempotencyService({
    redis,
    clock,
    limits: config.idempotency,
    onOutcome: (outcome) => metrics.state.idempotency(outcome),
  });

  const queues = createQueueService({
    redis,
    blocking: redis.blocking,
    clock,
    limits: config.queues,
    isDraining: () => lifecycle.draining,
    onEvent: (event, n) => metrics.queues.message(event, n),
    onLongPoll: (result) => metrics.queues.longPoll(result),
  });
  metrics.queues.watchPool(redis.blocking);

  // Pub/sub: revocations (drop a key from the auth cache), fills of leased cache keys (wake
  // the readers waiting here), changes of API-managed rate-limit policies, and rate-limit resets
  // (drop a remembered denial). On a resubscribe, policies.forgetAll() also clears the denials.
  const revoked = keys.channels.apiKeyRevoked();
  const filled = keys.channels.cacheFilled();
  const policiesChanged = keys.channels.policiesChanged();
  const ratelimitReset = keys.channels.ratelimitReset();
  redis.subscriber.on('message', (ch: string, message: string) => {
    if (ch === revoked) admin.forget(message);
    else if (ch === filled) cache.onFilled(message);
    else if (ch === policiesChanged) policies.forget(message);
    else if (ch === ratelimitReset) ratelimit.forgetKey(message);
  });
  if (!options.lazyConnect) {
    redis.subscriber
      .subscribe(revoked, filled, policiesChanged, ratelimitReset)
      .catch((err: Error) => log.error({ err: err.message }, 'cannot subscribe to revocations'));
  }

  const keysFile = config.auth.apiKeysFile;
  const reloadKeysFile = () => {
    if (keysFile === undefined) return;
    admin.setFileKeys(parseKeysFile(readFileSync(keysFile, 'utf8'), keysFile));
  };
  if (keysFile !== undefined) {
    reloadKeysFile(); // at startup a bad file stops the process
    watchFile(keysFile, { interval: KEYS_FILE_POLL_MS, persistent: false }, () => {
      try {
        reloadKeysFile();
        logger.info({ file: keysFile }, 'API keys file reloaded');
      } catch (err) {
        logger.error(
          { err: (err as Error).message },
          'API keys file unreadable; keeping the previous keys',
        );
      }
    });
  }

  const policiesFile = config.ratelimit.policiesFile;
  const reloadPoliciesFile = () => {
    if (policiesFile === undefined) return;
    const file = parsePoliciesFile(readFileSync(policiesFile, 'utf8'), policiesFile);
    try {
      policies.setFile(file);
    } catch (err) {
      throw new Error(`${policiesFile}: ${(err as Error).message}`);
    }
    metrics.ratelimit.shadowAll(file.shadow === true);
    if (file.shadow === true) {
      ratelimitLog.warn(
        { file: policiesFile },
        'rate limits in shadow mode (the policies file sets shadow: true): nothing is denied',
      );
    }
  };
  if (policiesFile !== undefined) {
    reloadPoliciesFile(); // at startup a bad file stops the process
    watchFile(policiesFile, { interval: KEYS_FILE_POLL_MS, persistent: false }, () => {
      try {
        reloadPoliciesFile();
        logger.info({ file: policiesFile }, 'rate-limit policies file reloaded');
      } catch (err) {
        logger.error(
          { err: (err as Error).message },
          'rate-limit policies file invalid; keeping the previous policies',
        );
      }
    });
  }

  return {
    config,
    logger,
    clock,
    redis,
    sentinels,
    metrics,
    lifecycle,
    admin,
    cache,
    policies,
    ratelimit,
    envoy,
    quota,
    sessions,
    idempotency,
    queues,
    reloadKeysFile,
    reloadPoliciesFile,
    async close() {
      if (keysFile !== undefined) unwatchFile(keysFile);
      if (policiesFile !== undefined) unwatchFile(policiesFile);
      quota.close();
      cache.close();
      metrics.cache.close();
      sentinels?.stop();
      await redis.close();
    },
  };
}
