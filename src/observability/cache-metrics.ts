/**
 * Cache metrics: lookups by operation and result (optionally by tenant, capped), a panel-ready
 * hit ratio over the last minute, bytes stored and saved by compression, leases and invalidations.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { type CounterSeries, FastCounter } from './fast-metrics.js';

export type CacheOp = 'get' | 'mget';
export type CacheResult = 'hit' | 'stale' | 'miss';

export interface CacheMetrics {
  lookup(op: CacheOp, result: CacheResult, count: number, tenant: string): void;
  stored(bytes: number, savedBytes: number): void;
  lease(outcome: string): void;
  invalidated(by: string, count: number): void;
  /** A GET answered from the process-local near cache. */
  nearHit(): void;
  /** Reports the near cache's size at each scrape. */
  watchNear(stats: () => { entries: number; bytes: number }): void;
  /** Stops the ratio window's timer. */
  close(): void;
}

export interface CacheMetricsOptions {
  /** Label lookups with the tenant id, for at most this many tenants ('other' beyond); 0 = off. */
  tenantLabels: number;
}

const WINDOW_BUCKETS = 12;
const BUCKET_MS = 5000;

export function createCacheMetrics(registry: Registry, options: CacheMetricsOptions): CacheMetrics {
  const byTenant = options.tenantLabels > 0;
  const lookups = new FastCounter(
    'gateway_cache_lookups_total',
    'Cache lookups by operation (get, mget) and result (hit, stale, miss); one per key for mget. With CACHE_METRICS_TENANT_LABEL, also by tenant (at most CACHE_METRICS_MAX_TENANTS, the rest as "other").',
    byTenant ? ['op', 'result', 'tenant'] : ['op', 'result'],
  ).register(registry);
  const children = new Map<string, CounterSeries>();
  const tenants = new Set<string>();
  const series = (op: CacheOp, result: CacheResult, tenant: string): CounterSeries => {
    let t = '';
    if (byTenant) {
      if (!tenants.has(tenant) && tenants.size < options.tenantLabels) tenants.add(tenant);
      t = tenants.has(tenant) ? tenant : 'other';
    }
    const id = `${op}|${result}|${t}`;
    let s = children.get(id);
    if (s === undefined) {
      s = lookups.child(
        byTenant
          ? { op, result, tenant: t }
          : ({ op, result } as { op: string; result: string; tenant: string }),
      );
      children.set(id, s);
    }
    return s;
  };

  // Hit ratio over the last minute: 12 buckets of 5 s, rotated by one timer.
  const window = {
    get: {
      hits: new Array<number>(WINDOW_BUCKETS).fill(0),
      all: new Array<number>(WINDOW_BUCKETS).fill(0),
    },
    mget: {
      hits: new Array<number>(WINDOW_BUCKETS).fill(0),
      all: new Array<number>(WINDOW_BUCKETS).fill(0),
    },
  };
  let slot = 0;
  const timer = setInterval(() => {
    slot = (slot + 1) % WINDOW_BUCKETS;
    for (const w of Object.values(window)) {
      w.hits[slot] = 0;
      w.all[slot] = 0;
    }
  }, BUCKET_MS);
  timer.unref();
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  new Gauge({
    name: 'gateway_cache_hit_ratio',
    help: 'Share of cache lookups answered with a value (fresh or stale) over the last minute, by operation; absent when there were none.',
    labelNames: ['op'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [op, w] of Object.entries(window)) {
        const all = sum(w.all);
        if (all > 0) this.set({ op }, sum(w.hits) / all);
      }
    },
  });

  const storedBytes = new Counter({
    name: 'gateway_cache_stored_bytes_total',
    help: 'Bytes of values written (before compression).',
    registers: [registry],
  });
  const savedBytes = new Counter({
    name: 'gateway_cache_compression_saved_bytes_total',
    help: 'Bytes compression saved on written values.',
    registers: [registry],
  });
  const leases = new Counter({
    name: 'gateway_cache_leases_total',
    help: 'Stampede leases by outcome: acquired (a miss got the lease), held (another caller has it), collapsed (a waiter got the filled value), timeout (a waiter gave up), refresh (a stale read got the refresh lease).',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const invalidated = new Counter({
    name: 'gateway_cache_invalidated_keys_total',
    help: 'Keys deleted by _invalidate, by kind (tags, prefix, pattern).',
    labelNames: ['by'] as const,
    registers: [registry],
  });

  const nearHits = new FastCounter(
    'gateway_cache_local_hits_total',
    'GET hits answered from the process-local near cache, without a Redis round trip (also counted in gateway_cache_lookups_total).',
    [] as const,
  ).register(registry);
  const nearHitSeries = nearHits.child({});
  let nearStats: (() => { entries: number; bytes: number }) | undefined;
  new Gauge({
    name: 'gateway_cache_local_bytes',
    help: 'Bytes held by the process-local near cache (bounded by CACHE_LOCAL_MAX_BYTES).',
    registers: [registry],
    collect() {
      this.set(nearStats?.().bytes ?? 0);
    },
  });
  new Gauge({
    name: 'gateway_cache_local_entries',
    help: 'Entries held by the process-local near cache.',
    registers: [registry],
    collect() {
      this.set(nearStats?.().entries ?? 0);
    },
  });

  return {
    nearHit() {
      nearHitSeries.inc();
    },
    watchNear(stats) {
      nearStats = stats;
    },
    lookup(op, result, count, tenant) {
      series(op, result, tenant).inc(count);
      const w = window[op];
      w.all[slot] = (w.all[slot] as number) + count;
      if (result !== 'miss') w.hits[slot] = (w.hits[slot] as number) + count;
    },
    stored(bytes, saved) {
      storedBytes.inc(bytes);
      if (saved > 0) savedBytes.inc(saved);
    },
    lease(outcome) {
      leases.inc({ outcome });
    },
    invalidated(by, count) {
      invalidated.inc({ by }, count);
    },
    close() {
      clearInterval(timer);
    },
  };
}
