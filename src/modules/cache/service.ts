/**
 * The cache over Redis strings. A read is one GET (on a replica when READ_FROM_REPLICAS is on and
 * one is ready) and hands back the stored bytes untouched; every write is one script call.
 * Stampede protection: a reader that misses may take a lease (one per key); others wait for the
 * fill, announced over pub/sub, instead of polling. Stale-while-revalidate: past its freshness a
 * value is still served, marked stale, and one reader gets a refresh lease.
 */
import { createHash } from 'node:crypto';
import type { Clock } from '../../clock.js';
import { AppError } from '../../errors.js';
import type { RedisAccess } from '../../redis/client.js';
import { escapeGlob, keys } from '../../redis/keys.js';
import {
  type Encoding,
  type Envelope,
  decodeEnvelope,
  encodeEnvelope,
  etagOf,
} from './envelope.js';
import type { NearCache } from './near-cache.js';
import { randomToken } from '../../random.js';

export interface CacheLimits {
  defaultTtlSeconds: number;
  maxTtlSeconds: number;
  maxValueBytes: number;
  maxBatch: number;
  allowPersist: boolean;
  compressMinBytes: number;
  maxLeaseMs: number;
  refreshLeaseMs: number;
  maxWaitMs: number;
  invalidateMaxKeys: number;
}

export type LookupResult = 'hit' | 'stale' | 'miss';
export type LeaseOutcome = 'acquired' | 'held' | 'collapsed' | 'timeout' | 'refresh';

export interface CacheServiceOptions {
  redis: RedisAccess;
  clock: Clock;
  limits: CacheLimits;
  onLookup?(op: 'get' | 'mget', result: LookupResult, count: number, tenant: string): void;
  onStored?(bytes: number, savedBytes: number): void;
  onLease?(outcome: LeaseOutcome): void;
  onInvalidated?(by: 'tags' | 'prefix' | 'pattern', count: number): void;
  /** A GET hit answered from the process-local near cache. */
  onNearHit?(): void;
  /** Process-local copies of read entries, kept coherent by Redis invalidations (optional). */
  near?: NearCache | undefined;
}

/** A stored value as read. */
export interface CacheEntry {
  readonly encoding: Encoding;
  /** The value's bytes: its JSON text, or the raw bytes of a binary value. */
  readonly payload: Buffer;
  readonly etag: string;
  /** Seconds the value stays fresh (rounded up; 0 once stale); null when it never goes stale. */
  readonly ttl: number | null;
  /** When a stale window was set: seconds it will still be served after `ttl` runs out. */
  readonly staleTtl: number | undefined;
  readonly stale: boolean;
  readonly tags: readonly string[];
}

export type ReadResult =
  | { hit: true; entry: CacheEntry; refreshLease?: string; collapsed?: boolean }
  | { hit: false; lease?: { token: string; ttlMs: number }; retryAfterMs?: number };

export interface PutInput {
  key: string;
  /** JSON values: the value; binary: a Buffer. */
  value: unknown;
  encoding: Encoding;
  /** Seconds; null = never expires (when allowed); undefined = the default. */
  ttl?: number | null | undefined;
  staleTtl?: number | undefined;
  tags?: readonly string[] | undefined;
  /** If-Match etag (compare-and-set), or create-only (If-None-Match: *). */
  condition?: { match: string } | { absent: true } | undefined;
  leaseToken?: string | undefined;
}

export interface PutOutcome {
  readonly created: boolean;
  readonly ttl: number | null;
  readonly staleTtl: number | undefined;
  readonly etag: string;
  /** Whether the presented lease token was the key's lease (now released). */
  readonly leaseReleased: boolean;
}

export interface InvalidateSpec {
  tags?: readonly string[] | undefined;
  prefix?: string | undefined;
  pattern?: string | undefined;
}

/** How long one _invalidate or listing call may keep scanning before it returns a cursor. */
const SCAN_BUDGET_MS = 1000;
const SCAN_COUNT = 1000;
/**
 * Members per invalidate-by-tag script: it reads each member's header, so 100 keep one script
 * near a millisecond (500 took 5-10 ms; `BENCH_ONLY=invalidate npm run bench`).
 */
const TAG_BATCH = 100;

function newToken(): string {
  return randomToken(16);
}

const secondsUntil = (ms: number, now: number) => Math.max(0, Math.ceil((ms - now) / 1000));

export function createCacheService(opts: CacheServiceOptions) {
  const { redis, clock, limits } = opts;
  const fillChannel = keys.channels.cacheFilled();
  /** Readers waiting for a leased key to be filled, by entry key. */
  const waiters = new Map<string, Set<(filled: boolean) => void>>();

  const { near } = opts;

  function toEntry(buf: Buffer | null, now: number): CacheEntry | null {
    return buf === null ? null : fromEnvelope(decodeEnvelope(buf), now);
  }

  function fromEnvelope(e: Envelope, now: number): CacheEntry | null {
    if (e.expiresAtMs !== 0 && e.expiresAtMs <= now) return null;
    const stale = e.freshUntilMs !== 0 && e.freshUntilMs <= now;
    return {
      encoding: e.encoding,
      payload: e.payload,
      etag: e.etag,
      ttl: e.freshUntilMs === 0 ? null : secondsUntil(e.freshUntilMs, now),
      staleTtl:
        e.expiresAtMs === e.freshUntilMs
          ? undefined
          : secondsUntil(e.expiresAtMs, Math.max(now, e.freshUntilMs)),
      stale,
      tags: e.tags,
    };
  }

  function invalid(field: string, message: string, limit?: string): AppError {
    return new AppError('VALIDATION_FAILED', `${field} ${message}.`, {
      errors: [{ field, message, ...(limit ? { limit } : {}) }],
    });
  }

  function resolveTtl(ttl: number | null | undefined, field: string): number | null {
    if (ttl === null) {
      if (!limits.allowPersist)
        throw invalid(
          field,
          'may not be null: values must expire (CACHE_ALLOW_PERSIST is off)',
          'CACHE_ALLOW_PERSIST',
        );
      return null;
    }
    const t = ttl ?? limits.defaultTtlSeconds;
    if (t > limits.maxTtlSeconds)
      throw invalid(field, `must be at most ${limits.maxTtlSeconds}`, 'CACHE_MAX_TTL_SECONDS');
    return t;
  }

  function checkBatch(n: number, field: string): void {
    if (n > limits.maxBatch)
      throw invalid(field, `must have at most ${limits.maxBatch} entries`, 'CACHE_MAX_BATCH');
  }

  function prepare(tenant: string, item: PutInput, field: string, now: number) {
    const ttl = resolveTtl(item.ttl, `${field}.ttl`);
    const staleTtl = item.staleTtl;
    if (staleTtl !== undefined && ttl === null)
      throw invalid(`${field}.staleTtl`, 'needs a ttl (a value that never expires is never stale)');
    if (staleTtl !== undefined && staleTtl > limits.maxTtlSeconds) {
      throw invalid(
        `${field}.staleTtl`,
        `must be at most ${limits.maxTtlSeconds}`,
        'CACHE_MAX_TTL_SECONDS',
      );
    }
    // JSON stays text (its UTF-8 length measured, not encoded) until the envelope needs bytes.
    const payload: Buffer | string =
      item.encoding === 'json' ? JSON.stringify(item.value) : (item.value as Buffer);
    const bytes = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
    if (bytes > limits.maxValueBytes) {
      throw new AppError(
        'VALUE_TOO_LARGE',
        `${field}.value is ${bytes} bytes; the limit is ${limits.maxValueBytes}.`,
        {
          errors: [
            {
              field: `${field}.value`,
              message: `larger than ${limits.maxValueBytes} bytes`,
              limit: 'CACHE_MAX_VALUE_BYTES',
            },
          ],
        },
      );
    }
    const freshUntilMs = ttl === null ? 0 : now + ttl * 1000;
    const expiresAtMs = ttl === null ? 0 : freshUntilMs + (staleTtl ?? 0) * 1000;
    const etag = etagOf(item.encoding, payload);
    const tags = [...new Set(item.tags ?? [])];
    const { stored, savedBytes } = encodeEnvelope(
      { encoding: item.encoding, freshUntilMs, expiresAtMs, etag, tags },
      payload,
      limits.compressMinBytes,
      bytes,
    );
    const condition =
      item.condition === undefined ? '' : 'match' in item.condition ? 'match' : 'absent';
    const expected =
      item.condition !== undefined && 'match' in item.condition ? item.condition.match : '';
    opts.onStored?.(bytes, savedBytes);
    const entryKey = keys.cache(tenant, item.key);
    return {
      args: [
        entryKey,
        keys.cacheLease(tenant, item.key),
        stored,
        expiresAtMs,
        condition,
        expected,
        item.leaseToken ?? '',
        keys.cacheTagPrefix(tenant),
        tags.join('|'),
        fillChannel,
        entryKey,
      ] as const,
      ttl,
      staleTtl,
      etag,
    };
  }

  function waitForFill(entryKey: string, ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      let set = waiters.get(entryKey);
      if (set === undefined) {
        set = new Set();
        waiters.set(entryKey, set);
      }
      const done = (filled: boolean) => {
        clearTimeout(timer);
        const s = waiters.get(entryKey);
        s?.delete(done);
        if (s?.size === 0) waiters.delete(entryKey);
        resolve(filled);
      };
      const timer = setTimeout(() => done(false), ms);
      set.add(done);
    });
  }

  async function takeLease(
    leaseKey: string,
    ms: number,
  ): Promise<{ token: string; held: false; ms: number } | { held: true; ms: number }> {
    const token = newToken();
    const [got, remaining] = await redis.onMaster((c) => c.cacheLease(leaseKey, token, ms));
    return got === 1 ? { token, held: false, ms } : { held: true, ms: Math.max(remaining, 0) };
  }

  function lookup(tenant: string, result: LookupResult): void {
    opts.onLookup?.('get', result, 1, tenant);
  }

  /** Reads a value; with `lease`, a miss takes (or waits on) the key's stampede lease. */
  /** One GET: from the near cache when it holds a fresh copy, else from Redis (tracked). */
  async function read(entryKey: string): Promise<CacheEntry | null> {
    if (near === undefined)
      return toEntry(await redis.onReader((c) => c.getBuffer(entryKey)), clock.nowMs());
    const held = near.get(entryKey);
    if (held !== undefined) {
      const entry = fromEnvelope(held, clock.nowMs());
      // A stale copy goes to Redis: the refresh lease is decided there.
      if (entry !== null && !entry.stale) {
        opts.onNearHit?.();
        return entry;
      }
    }
    const generation = near.beginRead(entryKey);
    let env: Envelope | null = null;
    try {
      // The master: tracking follows the request-path connection's reads.
      const stored = await redis.onMaster((c) => c.getBuffer(entryKey));
      env = stored === null ? null : decodeEnvelope(stored);
    } finally {
      near.endRead(entryKey, generation, env);
    }
    return env === null ? null : fromEnvelope(env, clock.nowMs());
  }

  async function get(
    tenant: string,
    key: string,
    options: { lease?: number; wait?: number } = {},
  ): Promise<ReadResult> {
    const entryKey = keys.cache(tenant, key);
    const entry = await read(entryKey);
    if (entry !== null) {
      if (!entry.stale) {
        lookup(tenant, 'hit');
        return { hit: true, entry };
      }
      lookup(tenant, 'stale');
      // Stale: exactly one reader in the window is told to refresh.
      const lease = await takeLease(
        keys.cacheLease(tenant, key),
        options.lease ?? limits.refreshLeaseMs,
      );
      if (!lease.held) {
        opts.onLease?.('refresh');
        return { hit: true, entry, refreshLease: lease.token };
      }
      return { hit: true, entry };
    }
    lookup(tenant, 'miss');
    if (options.lease === undefined) return { hit: false };
    const leaseKey = keys.cacheLease(tenant, key);
    const lease = await takeLease(leaseKey, options.lease);
    if (!lease.held) {
      opts.onLease?.('acquired');
      return { hit: false, lease: { token: lease.token, ttlMs: lease.ms } };
    }
    const wait = Math.min(options.wait ?? 0, lease.ms);
    if (wait <= 0) {
      opts.onLease?.('held');
      return { hit: false, retryAfterMs: lease.ms };
    }
    // Register first, then look again: a fill between the miss and the registration is not lost.
    const filled = waitForFill(entryKey, wait);
    const again = toEntry(await redis.onMaster((c) => c.getBuffer(entryKey)), clock.nowMs());
    if (again !== null) {
      opts.onLease?.('collapsed');
      return { hit: true, entry: again, collapsed: true };
    }
    if (await filled) {
      const value = toEntry(await redis.onMaster((c) => c.getBuffer(entryKey)), clock.nowMs());
      if (value !== null) {
        opts.onLease?.('collapsed');
        return { hit: true, entry: value, collapsed: true };
      }
    }
    opts.onLease?.('timeout');
    const left = await redis.onMaster((c) => c.pttl(leaseKey));
    return { hit: false, retryAfterMs: left > 0 ? left : 1000 };
  }

  function cursorSpecHash(spec: InvalidateSpec): string {
    return createHash('sha256')
      .update(JSON.stringify([spec.tags ?? null, spec.prefix ?? null, spec.pattern ?? null]))
      .digest('base64url')
      .slice(0, 8);
  }

  function decodeCursor(text: string | undefined, spec: InvalidateSpec): { i: number; c: string } {
    if (text === undefined) return { i: 0, c: '0' };
    try {
      const parsed = JSON.parse(Buffer.from(text, 'base64url').toString('utf8')) as {
        v?: number;
        h?: string;
        i?: number;
        c?: string;
      };
      if (
        parsed.v === 1 &&
        parsed.h === cursorSpecHash(spec) &&
        Number.isInteger(parsed.i) &&
        /^\d+$/.test(parsed.c ?? '')
      ) {
        return { i: parsed.i as number, c: parsed.c as string };
      }
    } catch {
      /* fall through */
    }
    throw invalid(
      'body.cursor',
      'is not a cursor returned by an _invalidate call with the same tags, prefix or pattern',
    );
  }

  function encodeCursor(spec: InvalidateSpec, i: number, c: string): string {
    return Buffer.from(JSON.stringify({ v: 1, h: cursorSpecHash(spec), i, c }), 'utf8').toString(
      'base64url',
    );
  }

  return {
    get,

    /** Stores a value (JSON or binary); conditional writes throw PRECONDITION_FAILED. */
    async put(tenant: string, item: PutInput): Promise<PutOutcome> {
      const p = prepare(tenant, item, 'body', clock.nowMs());
      const [status, created, released] = await redis.onMaster((c) => c.cachePut(...p.args));
      near?.drop(p.args[0]);
      if (status === -1) {
        throw new AppError(
          'PRECONDITION_FAILED',
          item.condition !== undefined && 'match' in item.condition
            ? 'The stored value has another ETag (or none): the If-Match condition failed.'
            : 'A value is already stored under this key: the If-None-Match: * condition failed.',
        );
      }
      return {
        created: created === 1,
        ttl: p.ttl,
        staleTtl: p.staleTtl,
        etag: p.etag,
        leaseReleased: released === 1,
      };
    },

    /** Deletes a key (and its tag memberships); `ifMatch` makes it conditional. */
    async delete(tenant: string, key: string, ifMatch?: string): Promise<boolean> {
      const entryKey = keys.cache(tenant, key);
      const res = await redis.onMaster((c) =>
        c.cacheDelete(
          entryKey,
          ifMatch === undefined ? '' : 'match',
          ifMatch ?? '',
          keys.cacheTagPrefix(tenant),
        ),
      );
      near?.drop(entryKey);
      if (res === -1)
        throw new AppError(
          'PRECONDITION_FAILED',
          'The stored value has another ETag (or none): the If-Match condition failed.',
        );
      return res === 1;
    },

    /**
     * Deletes many keys atomically in one round trip (each leaving its tag sets, as one DELETE
     * does); true for each key that held a value.
     */
    async mdelete(tenant: string, list: readonly string[]): Promise<boolean[]> {
      checkBatch(list.length, 'body.keys');
      const entryKeys = list.map((k) => keys.cache(tenant, k));
      const tagPrefix = keys.cacheTagPrefix(tenant);
      const res = await redis.onMaster((c) => {
        const tx = c.multi();
        for (const k of entryKeys) tx.cacheDelete(k, '', '', tagPrefix);
        return tx.exec();
      });
      for (const k of entryKeys) near?.drop(k);
      if (res === null) throw new Error('MULTI/EXEC aborted');
      return res.map(([err, n]) => {
        if (err) throw err;
        return n === 1;
      });
    },

    /** Changes freshness/expiry without rewriting the value; null when there is no such entry. */
    async touch(tenant: string, key: string, ttlIn: number | null, staleTtl: number | undefined) {
      const ttl = resolveTtl(ttlIn, 'body.ttl');
      if (staleTtl !== undefined && ttl === null) throw invalid('body.staleTtl', 'needs a ttl');
      const now = clock.nowMs();
      const freshUntilMs = ttl === null ? 0 : now + ttl * 1000;
      const expiresAtMs = ttl === null ? 0 : freshUntilMs + (staleTtl ?? 0) * 1000;
      const entryKey = keys.cache(tenant, key);
      const [ok, etag] = await redis.onMaster((c) =>
        c.cacheTouch(entryKey, freshUntilMs, expiresAtMs, keys.cacheTagPrefix(tenant)),
      );
      near?.drop(entryKey);
      return ok === 1 ? { ttl, staleTtl, etag } : null;
    },

    /** One MGET; entries in request order, null for misses. */
    async mget(tenant: string, list: readonly string[]): Promise<(CacheEntry | null)[]> {
      checkBatch(list.length, 'body.keys');
      const redisKeys = list.map((k) => keys.cache(tenant, k));
      const bufs = await redis.onReader((c) => c.mgetBuffer(...redisKeys));
      const now = clock.nowMs();
      const out = bufs.map((b) => toEntry(b, now));
      let hits = 0;
      let stale = 0;
      for (const e of out) {
        if (e === null) continue;
        if (e.stale) stale++;
        else hits++;
      }
      if (hits > 0) opts.onLookup?.('mget', 'hit', hits, tenant);
      if (stale > 0) opts.onLookup?.('mget', 'stale', stale, tenant);
      if (hits + stale < out.length)
        opts.onLookup?.('mget', 'miss', out.length - hits - stale, tenant);
      return out;
    },

    /** Stores many values atomically (MULTI/EXEC of the put script, one round trip). */
    async mset(
      tenant: string,
      items: readonly PutInput[],
    ): Promise<{ ttl: number | null; staleTtl: number | undefined; etag: string }[]> {
      checkBatch(items.length, 'body.items');
      const now = clock.nowMs();
      const prepared = items.map((item, i) => prepare(tenant, item, `body.items[${i}]`, now));
      const res = await redis.onMaster((c) => {
        const tx = c.multi();
        for (const p of prepared) tx.cachePut(...p.args);
        return tx.exec();
      });
      for (const p of prepared) near?.drop(p.args[0]);
      if (res === null) throw new Error('MULTI/EXEC aborted');
      for (const [err] of res) if (err) throw err;
      return prepared.map((p) => ({ ttl: p.ttl, staleTtl: p.staleTtl, etag: p.etag }));
    },

    /**
     * Deletes every key carrying one of `tags`, under `prefix`, or matching `pattern` (a glob inside
     * the tenant's namespace), in batches (SSCAN/SCAN + UNLINK, each a short command). Stops after
     * CACHE_INVALIDATE_MAX_KEYS deletions or about a second and returns a cursor to continue.
     */
    async invalidate(
      tenant: string,
      spec: InvalidateSpec,
      cursorText?: string,
    ): Promise<{ deleted: number; cursor: string | null }> {
      const start = Date.now();
      const entryPrefix = keys.cachePrefix(tenant);
      let { i, c } = decodeCursor(cursorText, spec);
      let deleted = 0;
      let processed = 0;
      // The cap counts keys handled (deleted, or already gone), so a call's work is bounded.
      const outOfBudget = () =>
        processed >= limits.invalidateMaxKeys || Date.now() - start > SCAN_BUDGET_MS;
      if (spec.tags !== undefined) {
        // Members are removed from the tag set as they are handled, so each batch is a random
        // sample of what is left (SRANDMEMBER in the script), and the cursor is the tag's index.
        // The script deletes only entries that still carry the tag (lua/invalidate-tag-1.lua).
        const tags = spec.tags;
        const tagPrefix = keys.cacheTagPrefix(tenant);
        while (i < tags.length && !outOfBudget()) {
          const tag = tags[i] as string;
          const batch = Math.min(TAG_BATCH, limits.invalidateMaxKeys - processed);
          const r = await redis.onMaster((c) =>
            c.cacheInvalidateTag(keys.cacheTag(tenant, tag), tag, tagPrefix, entryPrefix, batch),
          );
          const taken = Number(r[0]);
          if (taken === 0) {
            i++;
            continue;
          }
          for (let j = 1; j < r.length; j++) near?.drop(String(r[j]));
          deleted += r.length - 1;
          processed += taken;
        }
        opts.onInvalidated?.('tags', deleted);
        return { deleted, cursor: i < tags.length ? encodeCursor(spec, i, '0') : null };
      }
      const by = spec.prefix !== undefined ? 'prefix' : 'pattern';
      const match =
        escapeGlob(entryPrefix) +
        (spec.prefix !== undefined ? `${escapeGlob(spec.prefix)}*` : (spec.pattern as string));
      do {
        const count = Math.min(SCAN_COUNT, limits.invalidateMaxKeys - processed);
        const [next, found] = await redis.onMaster((r) =>
          r.scan(c, 'MATCH', match, 'COUNT', count),
        );
        const own = found.filter((k) => k.startsWith(entryPrefix));
        for (const k of own) near?.drop(k);
        if (own.length > 0) deleted += await redis.onMaster((r) => r.unlink(...own));
        processed += own.length;
        c = next;
      } while (c !== '0' && !outOfBudget());
      opts.onInvalidated?.(by, deleted);
      return { deleted, cursor: c === '0' ? null : encodeCursor(spec, 0, c) };
    },

    /** Pages the tenant's keys under `prefix` (SCAN); a page may be short, continue until the cursor is null. */
    async list(
      tenant: string,
      prefix: string,
      cursorText: string | undefined,
      limit: number,
    ): Promise<{ keys: string[]; cursor: string | null }> {
      const start = Date.now();
      const entryPrefix = keys.cachePrefix(tenant);
      const match = `${escapeGlob(entryPrefix)}${escapeGlob(prefix)}*`;
      let c = cursorText ?? '0';
      if (!/^\d{1,20}$/.test(c))
        throw invalid('query.cursor', 'is not a cursor returned by a previous listing');
      const out: string[] = [];
      do {
        const [next, found] = await redis.onReader((r) =>
          r.scan(c, 'MATCH', match, 'COUNT', Math.max(limit, 100)),
        );
        for (const k of found) if (k.startsWith(entryPrefix)) out.push(k.slice(entryPrefix.length));
        c = next;
      } while (c !== '0' && out.length < limit && Date.now() - start < SCAN_BUDGET_MS);
      return { keys: out, cursor: c === '0' ? null : c };
    },

    /** A leased key was filled somewhere (pub/sub): wake the readers waiting on it here. */
    onFilled(entryKey: string): void {
      const set = waiters.get(entryKey);
      if (set === undefined) return;
      for (const done of [...set]) done(true);
    },

    /** Entries and bytes held by the near cache (undefined when it is off). */
    nearStats: near === undefined ? undefined : () => near.stats(),

    /** Releases every waiting reader (shutdown). */
    close(): void {
      for (const set of [...waiters.values()]) for (const done of [...set]) done(false);
    },
  };
}

export type CacheService = ReturnType<typeof createCacheService>;
