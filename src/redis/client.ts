/**
 * ioredis clients built from the config: standalone or Sentinel, a request-path client, an optional
 * replica reader and a subscriber, all with bounded failure behaviour.
 *
 * The request path never queues commands while Redis is away (no offline queue, no resend of
 * unanswered commands): a command is either sent to a ready master or refused at once, so a
 * request that got a 503 can never have its write applied minutes later. Instead `whenReady()`
 * lets a request wait a bounded time for a master (the failover gap), and fails fast once an
 * outage has lasted longer than that budget (a simple circuit breaker: requests stop piling up,
 * ioredis's own reconnect attempts are the half-open probes).
 */
import { readFileSync } from 'node:fs';
import { Redis, type RedisOptions } from 'ioredis';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';

export type RedisRole = 'primary' | 'replica' | 'subscriber';

/** Callbacks through which the composition root feeds metrics and logs. */
export interface RedisHooks {
  onReady?(role: RedisRole, address: string): void;
  onDown?(role: RedisRole): void;
  onReconnecting?(role: RedisRole): void;
  /** The primary came back on a different address than before: a failover happened. */
  onFailover?(from: string, to: string): void;
  onError?(role: RedisRole, err: Error): void;
}

export interface RedisHandle {
  /** Request-path client on the master. */
  readonly primary: Redis;
  /** Dedicated pub/sub client. */
  readonly subscriber: Redis;
  /** The replica client when READ_FROM_REPLICAS is on and it is ready, else the primary. */
  reader(): Redis;
  /**
   * undefined when the master is ready (the hot path allocates nothing); else a promise that
   * resolves once it is, or rejects with a 503 AppError when the wait budget is spent.
   */
  whenReady(): Promise<void> | undefined;
  /** True once the master has been ready at least once (startup done). */
  everReady(): boolean;
  /** Per-role connection state, for /readyz?verbose and logs. */
  state(): Record<string, string>;
  close(): Promise<void>;
}

export interface CreateRedisOptions {
  hooks?: RedisHooks;
  /** Do not connect until a command is sent (used to build an app only to print its OpenAPI). */
  lazyConnect?: boolean;
  now?: () => number;
}

function baseOptions(config: Config, name: string, lazy: boolean): RedisOptions {
  const r = config.redis;
  const tls = r.tls ? (r.tlsCaFile ? { ca: readFileSync(r.tlsCaFile) } : {}) : undefined;
  const opts: RedisOptions = {
    // Pinned: ioredis 6 defaults to RESP3; RESP2 replies are what our scripts and parsers expect.
    protocol: 2,
    connectionName: `cache-gateway:${name}`,
    connectTimeout: r.connectTimeoutMs,
    commandTimeout: r.commandTimeoutMs,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    enableReadyCheck: true,
    keepAlive: 10_000,
    lazyConnect: lazy,
    // A demoted master answers READONLY: drop the connection and rediscover the master.
    reconnectOnError: (err) => (err.message.startsWith('READONLY') ? 1 : false),
    retryStrategy: (times) =>
      Math.min(50 * 2 ** Math.min(times - 1, 10), 1000) + Math.floor(Math.random() * 50),
    username: r.username,
    password: r.password,
    tls,
  };
  if (r.topology.mode === 'sentinel') {
    return {
      ...opts,
      sentinels: r.topology.sentinels,
      name: r.topology.masterName,
      sentinelUsername: r.sentinelUsername,
      sentinelPassword: r.sentinelPassword,
      enableTLSForSentinelMode: r.tls,
      sentinelTLS: tls,
      // Subscribe to +switch-master on the sentinels: follow a failover at once, not at the
      // next socket error.
      failoverDetector: true,
      sentinelRetryStrategy: (times) => Math.min(100 * times, 1000),
      sentinelCommandTimeout: r.connectTimeoutMs,
    };
  }
  const url = new URL(r.topology.url);
  const db = url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0;
  return { ...opts, host: url.hostname, port: Number(url.port || 6379), db };
}

function addressOf(client: Redis): string {
  const s = client.stream as { remoteAddress?: string; remotePort?: number } | undefined;
  return s?.remoteAddress ? `${s.remoteAddress}:${s.remotePort}` : 'unknown';
}

/** Builds the clients. Connection happens in the background; use whenReady() to wait. */
export function createRedis(config: Config, options: CreateRedisOptions = {}): RedisHandle {
  const hooks = options.hooks ?? {};
  const now = options.now ?? Date.now;
  const lazy = options.lazyConnect ?? false;
  const budgetMs = config.http.requestTimeoutMs - config.redis.commandTimeoutMs;

  const primary = new Redis(baseOptions(config, 'primary', lazy));
  const subscriber = new Redis({
    ...baseOptions(config, 'subscriber', lazy),
    // Pub/sub connections idle for long; no per-command deadline on SUBSCRIBE.
    commandTimeout: undefined,
    enableOfflineQueue: true,
  });
  const replica =
    config.redis.readFromReplicas && config.redis.topology.mode === 'sentinel'
      ? new Redis({ ...baseOptions(config, 'replica', lazy), role: 'slave' })
      : undefined;

  let everReady = false;
  let lastPrimaryAddress: string | undefined;
  let downSince: number | undefined = now();
  let waiters: { resolve(): void; reject(e: unknown): void; timer: NodeJS.Timeout }[] = [];

  const wire = (client: Redis, role: RedisRole) => {
    client.on('ready', () => {
      const address = addressOf(client);
      hooks.onReady?.(role, address);
      if (role !== 'primary') return;
      everReady = true;
      downSince = undefined;
      if (lastPrimaryAddress !== undefined && lastPrimaryAddress !== address) {
        hooks.onFailover?.(lastPrimaryAddress, address);
      }
      lastPrimaryAddress = address;
      const ws = waiters;
      waiters = [];
      for (const w of ws) {
        clearTimeout(w.timer);
        w.resolve();
      }
    });
    client.on('close', () => {
      hooks.onDown?.(role);
      if (role === 'primary' && downSince === undefined) downSince = now();
    });
    client.on('reconnecting', () => hooks.onReconnecting?.(role));
    client.on('error', (err: Error) => hooks.onError?.(role, err));
  };
  wire(primary, 'primary');
  wire(subscriber, 'subscriber');
  if (replica) wire(replica, 'replica');

  const unavailable = () =>
    new AppError(
      'BACKEND_UNAVAILABLE',
      'Redis has no reachable master right now (failover or outage in progress).',
      { retryAfter: 1 },
    );

  return {
    primary,
    subscriber,
    reader: () => (replica !== undefined && replica.status === 'ready' ? replica : primary),
    whenReady() {
      if (primary.status === 'ready') return undefined;
      if (lazy && primary.status === 'wait') void primary.connect().catch(() => undefined);
      const since = downSince ?? now();
      const remaining = since + budgetMs - now();
      // Circuit open: the outage has outlasted one request's budget; answer at once.
      if (remaining <= 0) return Promise.reject(unavailable());
      return new Promise<void>((resolve, reject) => {
        const entry = {
          resolve,
          reject,
          timer: setTimeout(() => {
            waiters = waiters.filter((w) => w !== entry);
            reject(unavailable());
          }, remaining),
        };
        waiters.push(entry);
      });
    },
    everReady: () => everReady,
    state: () => ({
      primary: primary.status,
      subscriber: subscriber.status,
      ...(replica ? { replica: replica.status } : {}),
    }),
    async close() {
      for (const w of waiters) {
        clearTimeout(w.timer);
        w.reject(unavailable());
      }
      waiters = [];
      const clients = [primary, subscriber, ...(replica ? [replica] : [])];
      await Promise.all(
        clients.map(async (c) => {
          if (c.status === 'ready') {
            await c.quit().catch(() => c.disconnect());
          } else {
            c.disconnect();
          }
        }),
      );
    },
  };
}
