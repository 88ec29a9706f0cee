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
import { AppError, classifyRedisError } from '../errors.js';
import { aclCheckArgs, readAclCheck } from './acl-check.js';
import { type RedisSettingCheck, aclSetting, checkRedisSettings } from './settings-check.js';
import { type KeyTracking, createKeyTracking } from './tracking.js';

export type RedisRole = 'primary' | 'replica' | 'subscriber' | 'tracker' | 'durable' | 'blocking';

/** Callbacks through which the composition root feeds metrics and logs. */
export interface RedisHooks {
  onReady?(role: RedisRole, address: string): void;
  onDown?(role: RedisRole): void;
  onReconnecting?(role: RedisRole): void;
  /** The primary came back on a different address than before: a failover happened. */
  onFailover?(from: string, to: string): void;
  onError?(role: RedisRole, err: Error): void;
  /** A command refused before execution is being sent again (reason: READONLY, NOREPLICAS, ...). */
  onRetry?(reason: string): void;
  /** A durable write (onMasterDurable) was confirmed by the replicas, or answered 503. */
  onDurable?(module: string, result: 'confirmed' | 'unconfirmed'): void;
  /** The Redis user lacks a permission the gateway cannot work without (e.g. +info). */
  onFatal?(err: Error): void;
  /** The settings of the master just connected to that decide whether writes survive. */
  onSettings?(checks: readonly RedisSettingCheck[], address: string): void;
}

/** What services get: commands run on a ready master (or replica), within the request budget. */
export interface RedisAccess {
  /**
   * Runs `fn` on the master once it is ready (waiting at most the request budget, else a 503).
   * A command refused before it was sent (the connection was closing) is retried once after the
   * reconnect; anything that may have reached Redis is never retried here.
   */
  onMaster<T>(fn: (client: Redis) => Promise<T>): Promise<T>;
  /** Runs a read on a ready replica when READ_FROM_REPLICAS is on, else as onMaster. */
  onReader<T>(fn: (client: Redis) => Promise<T>): Promise<T>;
  /**
   * A durable write: runs `fn` on one of the dedicated durable connections, then `WAIT` on that
   * same connection (WAIT covers the writes of the connection it runs on; on the shared
   * request-path connection it would stall every request queued behind it). Resolves with `fn`'s
   * result once DURABLE_REPLICAS replicas confirm; rejects with a 503 BACKEND_NO_REPLICAS when
   * they do not within DURABLE_WAIT_TIMEOUT_MS (the write is then on the master only and may be
   * lost in a failover). `fn` must send its write as one command, synchronously: WAIT is sent
   * right behind it, in the same round trip. `module` labels the outcome in the metrics;
   * `replicas` asks for that many confirmations instead of DURABLE_REPLICAS (0: none, no WAIT).
   */
  onMasterDurable<T>(
    fn: (client: Redis) => Promise<T>,
    module: string,
    replicas?: number,
  ): Promise<T>;
  /**
   * Runs `task` once the I/O callbacks of this event-loop turn (and their promise chains) are
   * done, just before the turn's commands are written: a module gathers the requests of one turn
   * there and sends them as one command.
   */
  atEndOfTurn(task: () => void): void;
}

export interface RedisHandle extends RedisAccess {
  /** Request-path client on the master. */
  readonly primary: Redis;
  /** Dedicated pub/sub client. */
  readonly subscriber: Redis;
  /** Connections reserved for durable writes (write + WAIT). */
  readonly durable: readonly Redis[];
  /** Connections for blocking reads (queue long polls), never the request-path client. */
  readonly blocking: BlockingPool;
  /** Invalidations of the primary's reads, when created with `tracking`. */
  readonly tracking: KeyTracking | undefined;
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
  /** The durability settings of the master last connected to; empty before. */
  settings(): readonly RedisSettingCheck[];
  close(): Promise<void>;
}

/** A bounded pool of connections for blocking commands (XREAD BLOCK). */
export interface BlockingPool {
  readonly size: number;
  inUse(): number;
  /**
   * Runs `fn` on a free connection, or returns undefined at once when every connection is busy
   * (the caller then degrades to a non-blocking read).
   */
  tryWith<T>(fn: (client: Redis) => Promise<T>): Promise<T> | undefined;
  /** Ends every blocked command now (shutdown): their promises reject; connections reconnect. */
  interrupt(): void;
}

export interface CreateRedisOptions {
  hooks?: RedisHooks;
  /** Do not connect until a command is sent (used to build an app only to print its OpenAPI). */
  lazyConnect?: boolean;
  /** Track the primary's reads (CLIENT TRACKING) for a near cache; adds one connection. */
  tracking?: boolean;
  now?: () => number;
}

/** TLS options for the data nodes and the sentinels (REDIS_TLS, REDIS_TLS_CA_FILE), or none. */
export function redisTls(config: Config): { ca?: Buffer } | undefined {
  const r = config.redis;
  return r.tls ? (r.tlsCaFile ? { ca: readFileSync(r.tlsCaFile) } : {}) : undefined;
}

function baseOptions(config: Config, name: string, lazy: boolean): RedisOptions {
  const r = config.redis;
  const tls = redisTls(config);
  const opts: RedisOptions = {
    // ioredis 5 speaks RESP2 (what our scripts' replies are written for). Not ioredis 6: its RESP
    // decoder cost 12-17 us more CPU per session reply (load/RESULTS.md, stop 10).
    connectionName: `cache-gateway:${name}`,
    // No CLIENT SETINFO: one command fewer for the ACL (and Redis 7.0 does not know it).
    disableClientInfo: true,
    connectTimeout: r.connectTimeoutMs,
    commandTimeout: r.commandTimeoutMs,
    maxRetriesPerRequest: 0,
    // Off: measured A/B on the benchmark (load/RESULTS.md), ioredis's auto-pipelining cost more
    // CPU per request than it saved in writes at our concurrency (a Pipeline object and a tick
    // per batch): rate-limit checks +19 % req/s, session touch +8 %, without it. The request-path
    // client batches its writes by corking the socket instead (coalesceWrites below).
    enableAutoPipelining: false,
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

/**
 * Redis (or ioredis) refused the command before executing it, so sending it again cannot apply
 * it twice: not sent at all, a demoted master (READONLY), too few replicas (NOREPLICAS), a
 * master still loading or cut off from its own master, or a transaction discarded for one of
 * these. Any other failure may have been applied and is never retried.
 */
const NOT_EXECUTED = /^(READONLY|NOREPLICAS|LOADING|MASTERDOWN|TRYAGAIN)\b|^Stream isn't writeable/;
export function notExecuted(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (NOT_EXECUTED.test(err.message)) return true;
  const previous = (err as Error & { previousErrors?: unknown[] }).previousErrors;
  return (
    err.message.startsWith('EXECABORT') &&
    Array.isArray(previous) &&
    previous.length > 0 &&
    previous.every(notExecuted)
  );
}

function notSent(err: unknown): boolean {
  return err instanceof Error && err.message.startsWith("Stream isn't writeable");
}

/** How long NOREPLICAS is answered at once after it outlasted a request's budget (retryable()). */
const NO_REPLICAS_FAST_MS = 1000;

/** How soon a client that ioredis gave up (see wire()) is started again. */
const RESTART_ENDED_CLIENT_MS = 100;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Declares a connection dead when replies are awaited but none has arrived for `deadAfterMs`
 * (a paused or partitioned server keeps the TCP connection open), and destroys it: ioredis then
 * reconnects through the sentinels and the circuit breaker fails requests fast meanwhile.
 * ioredis's own socketTimeout does the same with a listener added and removed on every write;
 * this costs one timestamp per received chunk and one timer per client.
 */
function watchForDeadConnection(client: Redis, deadAfterMs: number): NodeJS.Timeout {
  let lastReplyAt = Date.now();
  const onData = () => {
    lastReplyAt = Date.now();
  };
  client.on('connect', () => {
    lastReplyAt = Date.now();
    (client.stream as NodeJS.EventEmitter | undefined)?.on('data', onData);
  });
  const timer = setInterval(
    () => {
      if (client.status !== 'ready' || client.commandQueue.length === 0) {
        lastReplyAt = Date.now();
        return;
      }
      if (Date.now() - lastReplyAt > deadAfterMs) {
        const stream = client.stream as { destroy?(err: Error): void } | undefined;
        stream?.destroy?.(new Error(`no reply from Redis for ${deadAfterMs} ms; reconnecting`));
      }
    },
    Math.max(50, Math.floor(deadAfterMs / 4)),
  );
  timer.unref();
  return timer;
}

function addressOf(client: Redis): string {
  const s = client.stream as { remoteAddress?: string; remotePort?: number } | undefined;
  return s?.remoteAddress ? `${s.remoteAddress}:${s.remotePort}` : 'unknown';
}

/**
 * Request-path commands sent during one event-loop turn leave in one socket write: the first
 * command of a turn corks the socket and a `setImmediate` (after the turn's I/O callbacks and
 * their promise chains) uncorks it. ioredis's auto-pipelining batches the same turn but moves
 * every command through a Pipeline object, which cost more CPU than the writes it saved (see
 * enableAutoPipelining above); corking saves the writes alone. Measured under load
 * (load/RESULTS.md): one write per ~8 commands instead of one each, and 3-33 us less gateway
 * CPU and 2-19 us less Redis CPU per scripted request. `atEndOfTurn` tasks run just before the
 * uncork, so what they send leaves in the same write.
 */
function coalesceWrites(client: Redis): (task: () => void) => void {
  const send = client.sendCommand.bind(client);
  let corked: Redis['stream'] | undefined;
  let scheduled = false;
  let tasks: (() => void)[] = [];
  const cork = () => {
    if (corked !== undefined || client.status !== 'ready') return;
    corked = client.stream;
    corked.cork();
  };
  const endTurn = () => {
    scheduled = false;
    const run = tasks;
    tasks = [];
    if (run.length > 0) cork();
    for (const task of run) {
      try {
        task();
      } catch (err) {
        // Surfaces as an uncaught exception, as it would from its own setImmediate; the other
        // tasks still run and the socket is still uncorked.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
    const s = corked;
    corked = undefined;
    s?.uncork();
  };
  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(endTurn);
  };
  client.sendCommand = (command, stream) => {
    if (corked === undefined && stream === undefined && client.status === 'ready') {
      cork();
      schedule();
    }
    return send(command, stream);
  };
  return (task) => {
    tasks.push(task);
    schedule();
  };
}

/** Builds the clients. Connection happens in the background; use whenReady() to wait. */
export function createRedis(config: Config, options: CreateRedisOptions = {}): RedisHandle {
  const hooks = options.hooks ?? {};
  const now = options.now ?? Date.now;
  const lazy = options.lazyConnect ?? false;
  const budgetMs = config.http.requestTimeoutMs - config.redis.commandTimeoutMs;

  const primary = new Redis(baseOptions(config, 'primary', lazy));
  const atEndOfTurn = coalesceWrites(primary);
  const subscriber = new Redis({
    ...baseOptions(config, 'subscriber', lazy),
    // Pub/sub connections idle for long; no per-command deadline on SUBSCRIBE.
    commandTimeout: undefined,
    enableOfflineQueue: true,
  });
  const tracker =
    options.tracking === true && !lazy
      ? new Redis({
          ...baseOptions(config, 'tracker', lazy),
          commandTimeout: undefined,
          enableOfflineQueue: true,
          autoResubscribe: false,
        })
      : undefined;
  const tracking =
    tracker === undefined
      ? undefined
      : createKeyTracking(primary, tracker, { onError: (err) => hooks.onError?.('tracker', err) });
  // A deadline that leaves room for WAIT's own timeout.
  const durable = Array.from(
    { length: config.redis.durableConnections },
    (_, i) =>
      new Redis({
        ...baseOptions(config, `durable-${i}`, true),
        commandTimeout: config.redis.commandTimeoutMs + config.durable.waitTimeoutMs,
      }),
  );
  let durableNext = 0;
  // Blocking reads hold a connection for up to their BLOCK time: no command deadline, ioredis's
  // blocking timeout (BLOCK + grace) instead, so a dead server cannot hang a read forever.
  const blockingClients: (Redis | undefined)[] = Array.from(
    { length: config.queues.blockingConnections },
    () => undefined,
  );
  const blockingBusy = new Set<number>();
  const blockingClient = (i: number): Redis => {
    let c = blockingClients[i];
    if (c === undefined) {
      c = new Redis({
        ...baseOptions(config, `blocking-${i}`, false),
        commandTimeout: undefined,
        blockingTimeout: 30_000,
        blockingTimeoutGrace: 1000,
      });
      wire(c, 'blocking');
      blockingClients[i] = c;
    }
    return c;
  };
  const blocking: BlockingPool = {
    size: blockingClients.length,
    inUse: () => blockingBusy.size,
    tryWith<T>(fn: (client: Redis) => Promise<T>): Promise<T> | undefined {
      for (let i = 0; i < blockingClients.length; i++) {
        if (blockingBusy.has(i)) continue;
        blockingBusy.add(i);
        return fn(blockingClient(i)).finally(() => blockingBusy.delete(i));
      }
      return undefined;
    },
    interrupt() {
      for (const i of blockingBusy) blockingClients[i]?.disconnect(true);
    },
  };
  const replica =
    config.redis.readFromReplicas && config.redis.topology.mode === 'sentinel'
      ? new Redis({ ...baseOptions(config, 'replica', lazy), role: 'slave' })
      : undefined;
  if (replica !== undefined) coalesceWrites(replica);

  let everReady = false;
  let closing = false;
  let lastPrimaryAddress: string | undefined;
  let downSince: number | undefined = now();
  let waiters: { resolve(): void; reject(e: unknown): void; timer: NodeJS.Timeout }[] = [];

  /**
   * ioredis skips its ready check when INFO is refused (NOPERM) and then cannot tell a master from
   * a replica; the gateway insists: without INFO it stops, and on anything but a master (a stale
   * sentinel answer) it reconnects. The same INFO tells the master's durability settings.
   */
  let settings: readonly RedisSettingCheck[] = [];
  const verifyPrimary = (address: string) => {
    primary.info().then(
      (info) => {
        const role = /^role:(\w+)/m.exec(info)?.[1];
        if (config.redis.topology.mode === 'sentinel' && role !== 'master') {
          hooks.onError?.(
            'primary',
            new Error(
              `connected to a ${role ?? 'node of unknown role'}, not the master; reconnecting`,
            ),
          );
          primary.disconnect(true);
          return;
        }
        const first = !everReady;
        everReady = true;
        settings = checkRedisSettings(info);
        hooks.onSettings?.(settings, address);
        verifyAcl(address, first);
      },
      (err: Error) => {
        if (err.message.includes('NOPERM')) {
          hooks.onFatal?.(
            new Error(
              `the Redis user may not run INFO (${err.message}); grant +info (see deploy/redis/users.acl)`,
            ),
          );
        } else {
          hooks.onError?.('primary', err);
        }
      },
    );
  };

  /**
   * Asks the master whether the gateway user has every permission of deploy/redis/users.acl's
   * gateway line (redis/acl-check.ts), reported as the setting `acl`. Lacking one at the first
   * connection stops the gateway (a rollout onto an old ACL halts there); later (a failover to a
   * node set up otherwise) it is reported, and the features that need it answer 500.
   */
  const verifyAcl = (address: string, first: boolean) => {
    // Defined with the other scripts (deps.ts); a client made without them skips the check.
    if (typeof primary.redisAclCheck !== 'function') return;
    primary.redisAclCheck(...aclCheckArgs()).then(
      (reply) => {
        const result = readAclCheck(reply);
        const check = aclSetting(result);
        if (check === undefined) return;
        settings = [...settings.filter((c) => c.setting !== 'acl'), check];
        hooks.onSettings?.([check], address);
        if (first && result !== undefined && result.refused.length > 0) {
          hooks.onFatal?.(new Error(check.detail));
        }
      },
      (err: Error) => {
        hooks.onError?.(
          'primary',
          new Error(`cannot check the Redis user's permissions: ${err.message}`),
        );
      },
    );
  };

  const wire = (client: Redis, role: RedisRole) => {
    client.on('ready', () => {
      const address = addressOf(client);
      hooks.onReady?.(role, address);
      if (role !== 'primary') return;
      verifyPrimary(address);
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
    // ioredis can give a client up for good ('end') on its own: when a sentinel's +switch-master
    // reaches its failover detector while the client is still asking the sentinels for the
    // master after a lost connection, the detector disconnects the connector mid-connect and the
    // connect fails with "Connection is closed." (seen after kill -9 of a master on a loaded
    // machine: the request-path client stayed down until a restart, /readyz false, /livez up).
    // The gateway ends a client only in close(); any other end is started again.
    client.on('end', () => {
      if (closing) return;
      hooks.onError?.(role, new Error('the client stopped reconnecting; starting it again'));
      const timer = setTimeout(() => {
        if (closing || client.status !== 'end') return;
        hooks.onReconnecting?.(role);
        client.connect().catch(() => undefined);
      }, RESTART_ENDED_CLIENT_MS);
      timer.unref();
    });
  };
  wire(primary, 'primary');
  wire(subscriber, 'subscriber');
  if (replica) wire(replica, 'replica');
  if (tracker) wire(tracker, 'tracker');
  for (const d of durable) wire(d, 'durable');
  const deadAfterMs = Math.max(1000, 3 * config.redis.commandTimeoutMs);
  const watchdogs = [primary, ...(replica ? [replica] : [])].map((c) =>
    watchForDeadConnection(c, deadAfterMs),
  );

  const unavailable = () =>
    new AppError(
      'BACKEND_UNAVAILABLE',
      'Redis has no reachable master right now (failover or outage in progress).',
      { retryAfter: 1 },
    );

  function whenReady(): Promise<void> | undefined {
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
  }

  /**
   * NOREPLICAS that outlasts a request's budget is no failover settling but replicas down or too
   * far behind (RELIABILITY.md scenario 9): retried, every write would hold its request for the
   * whole budget, and a busy gateway would pile up thousands of them. So from then on it is
   * answered at once (each write still tries once, so the first one after a replica is back
   * succeeds), until no write has met it for NO_REPLICAS_FAST_MS.
   */
  let noReplicasUntil = 0;

  /** Whether a command refused with `err` is sent again after `backoff` ms, before `deadline`. */
  function retryable(err: unknown, backoff: number, deadline: number): boolean {
    if (!notExecuted(err)) return false;
    const noReplicas = classifyRedisError(err) === 'noreplicas';
    const t = now();
    if (noReplicas && t < noReplicasUntil) {
      noReplicasUntil = t + NO_REPLICAS_FAST_MS;
      return false;
    }
    if (t + backoff < deadline) return true;
    if (noReplicas) noReplicasUntil = t + NO_REPLICAS_FAST_MS;
    return false;
  }

  /** The slow path: wait for a master, run, and resend commands refused before execution. */
  async function onMasterRetrying<T>(
    fn: (client: Redis) => Promise<T>,
    deadline: number,
    firstBackoff: number,
  ): Promise<T> {
    let backoff = firstBackoff;
    for (;;) {
      const w = whenReady();
      if (w !== undefined) await w;
      try {
        return await fn(primary);
      } catch (err) {
        // Refused before execution (a failover settling, replicas re-attaching): try again
        // within the request's budget; past it, the caller answers 503.
        if (!retryable(err, backoff, deadline)) throw err;
        hooks.onRetry?.((err as Error).message.split(' ', 1)[0] ?? 'unknown');
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 400);
      }
    }
  }

  function onMaster<T>(fn: (client: Redis) => Promise<T>): Promise<T> {
    const start = now();
    if (primary.status !== 'ready') return onMasterRetrying(fn, start + budgetMs, 25);
    // Hot path: no async frame, one derived promise; failures go to the slow path.
    return fn(primary).catch((err: unknown) => {
      if (!retryable(err, 25, start + budgetMs)) throw err;
      hooks.onRetry?.((err as Error).message.split(' ', 1)[0] ?? 'unknown');
      return sleep(25).then(() => onMasterRetrying(fn, start + budgetMs, 50));
    });
  }

  const noReplicas = (acked: number, required: number) =>
    new AppError(
      'BACKEND_NO_REPLICAS',
      `The write is on the master but ${acked} of the ${required} replica(s) required confirmed it within ${config.durable.waitTimeoutMs} ms; it could be lost in a failover. Retry.`,
      { retryAfter: 1 },
    );

  /** A durable connection, connecting the pool on first use (most deployments never need it). */
  async function durableClient(deadline: number): Promise<Redis> {
    for (;;) {
      const c = durable[durableNext++ % durable.length] as Redis;
      if (c.status === 'ready') return c;
      if (c.status === 'wait') void c.connect().catch(() => undefined);
      const ready = durable.find((d) => d.status === 'ready');
      if (ready !== undefined) return ready;
      if (now() >= deadline) throw unavailable();
      await sleep(10);
    }
  }

  async function onMasterDurable<T>(
    fn: (client: Redis) => Promise<T>,
    module: string,
    replicas = config.durable.replicas,
  ): Promise<T> {
    if (replicas <= 0) return onMaster(fn);
    const deadline = now() + budgetMs;
    let backoff = 25;
    for (;;) {
      const w = whenReady();
      if (w !== undefined) await w;
      const c = await durableClient(deadline);
      const write = fn(c);
      const acked = c.wait(replicas, config.durable.waitTimeoutMs);
      try {
        const result = await write;
        const n = await acked;
        if (n < replicas) {
          hooks.onDurable?.(module, 'unconfirmed');
          throw noReplicas(n, replicas);
        }
        hooks.onDurable?.(module, 'confirmed');
        return result;
      } catch (err) {
        acked.catch(() => undefined);
        if (!retryable(err, backoff, deadline)) throw err;
        hooks.onRetry?.((err as Error).message.split(' ', 1)[0] ?? 'unknown');
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 400);
      }
    }
  }

  const reader = (): Redis =>
    replica !== undefined && replica.status === 'ready' ? replica : primary;

  return {
    primary,
    subscriber,
    tracking,
    reader,
    whenReady,
    onMaster,
    onMasterDurable,
    atEndOfTurn,
    durable,
    blocking,
    onReader<T>(fn: (client: Redis) => Promise<T>): Promise<T> {
      const r = reader();
      if (r === primary) return onMaster(fn);
      return fn(r).catch((err: unknown) => {
        if (notSent(err)) return onMaster(fn);
        throw err;
      });
    },
    everReady: () => everReady,
    settings: () => settings,
    state: () => ({
      primary: primary.status,
      subscriber: subscriber.status,
      ...(replica ? { replica: replica.status } : {}),
      ...(tracker
        ? { tracker: tracker.status, tracking: tracking?.active() ? 'active' : 'inactive' }
        : {}),
      ...(durable.some((d) => d.status !== 'wait')
        ? { durable: durable.map((d) => d.status).join(',') }
        : {}),
    }),
    async close() {
      closing = true;
      for (const t of watchdogs) clearInterval(t);
      for (const w of waiters) {
        clearTimeout(w.timer);
        w.reject(unavailable());
      }
      waiters = [];
      const clients = [
        primary,
        subscriber,
        ...(replica ? [replica] : []),
        ...(tracker ? [tracker] : []),
        ...durable,
      ];
      // A blocked read would hold QUIT back for its whole BLOCK time: cut those at once.
      for (const c of blockingClients) c?.disconnect();
      await Promise.all(
        clients.map(async (c) => {
          // QUIT lets in-flight replies arrive; disconnect() then also stops the sentinel
          // connections of the failover detector, which QUIT alone leaves reconnecting.
          if (c.status === 'ready') await c.quit().catch(() => undefined);
          c.disconnect();
        }),
      );
    },
  };
}
