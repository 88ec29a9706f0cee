/**
 * The gateway's own protection: every API key may make at most its tenant's quota of requests per
 * minute (REQUEST_QUOTA_PER_MINUTE, per tenant in the policies file's `quotas`), across all
 * replicas. Enforced by @fastify/rate-limit with a store of our own: each replica counts locally
 * and adds its counts to a shared per-key, per-minute counter in Redis every FLUSH_MS (one script
 * call per active key, sent back to back), reading back the total. No request waits on Redis, so the
 * quota costs the hot path a Map lookup; the price is that replicas learn of each other's traffic
 * up to FLUSH_MS late (a key can overshoot by about replicas x its rate x FLUSH_MS). When Redis
 * is unavailable, each replica keeps enforcing what it counts itself. Over quota: 429 problem
 * (`quota-exceeded`) with Retry-After and the rate-limit headers.
 */
import type { FastifyRequest } from 'fastify';
import type { Clock } from '../../clock.js';
import { AppError } from '../../errors.js';
import type { RedisAccess } from '../../redis/client.js';
import { keys } from '../../redis/keys.js';

export const QUOTA_WINDOW_MS = 60_000;
const FLUSH_MS = 250;

interface Window {
  start: number;
  /** Counted here, not yet sent. */
  unflushed: number;
  /** Sent, not yet confirmed. */
  inflight: number;
  /** The shared total at the last flush (ours included). */
  shared: number;
  /** The flush in flight, settled when its answer is applied. */
  pending?: Promise<void> | undefined;
}

export interface QuotaCounterOptions {
  redis: RedisAccess;
  clock: Clock;
  onError?(err: unknown): void;
}

/** Per-key request counts of the current minute, shared through Redis in batches. */
export function createQuotaCounter(opts: QuotaCounterOptions) {
  const { redis, clock } = opts;
  const windows = new Map<string, Window>();

  /** Sends the counts not yet sent; settles when every flush in flight has been answered. */
  function flush(): Promise<void> {
    const now = clock.nowMs();
    const start = now - (now % QUOTA_WINDOW_MS);
    const waits: Promise<void>[] = [];
    for (const [keyId, w] of windows) {
      if (w.start !== start) {
        if (w.inflight === 0) windows.delete(keyId);
        continue;
      }
      if (w.pending !== undefined) waits.push(w.pending);
      if (w.unflushed === 0 || w.inflight > 0) continue;
      const n = w.unflushed;
      w.inflight = n;
      w.unflushed = 0;
      w.pending = redis
        .onMaster((c) =>
          c.gatewayQuota(keys.gw.quota(keyId, w.start), n, w.start + QUOTA_WINDOW_MS - now + 1000),
        )
        .then(
          (total) => {
            w.shared = total;
          },
          (err: unknown) => {
            // Counted again at the next flush; meanwhile this replica's own count still applies.
            w.unflushed += w.inflight;
            opts.onError?.(err);
          },
        )
        .finally(() => {
          w.inflight = 0;
          w.pending = undefined;
        });
      waits.push(w.pending);
    }
    return Promise.all(waits).then(() => undefined);
  }
  const timer = setInterval(() => void flush(), FLUSH_MS);
  timer.unref();

  return {
    /** Counts one request; returns the requests of this minute so far and ms to its end. */
    incr(keyId: string): { current: number; ttl: number } {
      const now = clock.nowMs();
      const start = now - (now % QUOTA_WINDOW_MS);
      let w = windows.get(keyId);
      if (w === undefined || w.start !== start) {
        w = { start, unflushed: 0, inflight: 0, shared: 0 };
        windows.set(keyId, w);
      }
      w.unflushed++;
      return { current: w.shared + w.inflight + w.unflushed, ttl: start + QUOTA_WINDOW_MS - now };
    },
    /** Sends pending counts now (tests; shutdown); settles once they are answered. */
    flush,
    close(): void {
      clearInterval(timer);
    },
  };
}

export type QuotaCounter = ReturnType<typeof createQuotaCounter>;

export interface QuotaPluginOptions {
  counter: QuotaCounter;
  /** Requests per minute for a tenant's keys; 0 = no quota. */
  quotaFor(tenant: string): number;
  legacyHeaders: boolean;
  onExceeded?(): void;
}

const NO_HEADERS = {
  'x-ratelimit-limit': false,
  'x-ratelimit-remaining': false,
  'x-ratelimit-reset': false,
  'retry-after': false,
} as const;

/** Options for @fastify/rate-limit (registered on the root instance by app.ts). */
export function quotaRateLimitOptions(opts: QuotaPluginOptions) {
  const { counter } = opts;
  class QuotaStore {
    incr(
      key: string,
      cb: (err: Error | null, res?: { current: number; ttl: number }) => void,
    ): void {
      cb(null, counter.incr(key));
    }
    child(): QuotaStore {
      return this;
    }
  }
  const keyOf = (req: FastifyRequest): string =>
    req.principal?.kind === 'apiKey' ? req.principal.keyId : '';
  const maxOf = (req: FastifyRequest): number =>
    req.principal === undefined ? 0 : opts.quotaFor(req.principal.tenant);
  return {
    global: true,
    hook: 'onRequest' as const,
    timeWindow: QUOTA_WINDOW_MS,
    keyGenerator: keyOf,
    // No quota: health, docs, the operator, tenants whose quota is 0.
    allowList: (req: FastifyRequest, key: string) => key === '' || maxOf(req) === 0,
    max: (req: FastifyRequest) => maxOf(req),
    store: QuotaStore,
    skipOnError: true,
    addHeaders: NO_HEADERS,
    addHeadersOnExceeding: NO_HEADERS,
    onExceeded: () => opts.onExceeded?.(),
    errorResponseBuilder: (_req: FastifyRequest, ctx: { max: number; ttl: number }) => {
      const t = Math.max(1, Math.ceil(ctx.ttl / 1000));
      const headers: Record<string, string> = {
        'ratelimit-policy': `"quota";q=${ctx.max};w=${QUOTA_WINDOW_MS / 1000}`,
        ratelimit: `"quota";r=0;t=${t}`,
      };
      if (opts.legacyHeaders) {
        headers['x-ratelimit-limit'] = String(ctx.max);
        headers['x-ratelimit-remaining'] = '0';
        headers['x-ratelimit-reset'] = String(t);
      }
      return new AppError(
        'QUOTA_EXCEEDED',
        `This API key made more than its ${ctx.max} requests this minute; retry in ${t} s.`,
        { retryAfter: t, headers, extensions: { 'violated-policies': ['quota'] } },
      );
    },
  };
}
