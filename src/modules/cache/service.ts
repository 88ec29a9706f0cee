/**
 * The cache over Redis strings. A read is one GET (on a replica when READ_FROM_REPLICAS is on and
 * one is ready) and hands back the stored JSON bytes untouched; a write is one script call.
 */
import type { Clock } from '../../clock.js';
import { AppError } from '../../errors.js';
import type { RedisAccess } from '../../redis/client.js';
import { keys } from '../../redis/keys.js';
import { decodeEnvelope, encodeEnvelope, etagOf } from './envelope.js';

export interface CacheServiceOptions {
  redis: RedisAccess;
  clock: Clock;
  limits: {
    defaultTtlSeconds: number;
    maxTtlSeconds: number;
    maxValueBytes: number;
    maxBatch: number;
  };
  /** Counts lookups: op 'get' or 'mget', hit or miss. */
  onLookup?(op: 'get' | 'mget', hit: boolean, count: number): void;
}

/** A stored value as read: the JSON text of the value, its tag and remaining TTL. */
export interface CacheEntry {
  /** The value's JSON text, exactly as stored. */
  readonly json: Buffer;
  readonly etag: string;
  /** Seconds until expiry (rounded up); null when the entry never expires. */
  readonly ttl: number | null;
}

export interface PutResult {
  readonly created: boolean;
  readonly ttl: number | null;
  readonly etag: string;
}

export interface PutItem {
  key: string;
  value: unknown;
  ttl?: number | undefined;
}

export function createCacheService(opts: CacheServiceOptions) {
  const { redis, clock, limits } = opts;

  function toEntry(buf: Buffer | null, now: number): CacheEntry | null {
    if (buf === null) return null;
    const e = decodeEnvelope(buf);
    if (e.expiresAtMs !== 0 && e.expiresAtMs <= now) return null;
    return {
      json: e.payload,
      etag: e.etag,
      ttl: e.expiresAtMs === 0 ? null : Math.ceil((e.expiresAtMs - now) / 1000),
    };
  }

  function resolveTtl(ttl: number | undefined, field: string): number {
    const t = ttl ?? limits.defaultTtlSeconds;
    if (t > limits.maxTtlSeconds) {
      throw new AppError('VALIDATION_FAILED', `${field} exceeds ${limits.maxTtlSeconds} seconds.`, {
        errors: [
          {
            field,
            message: `must be at most ${limits.maxTtlSeconds}`,
            limit: 'CACHE_MAX_TTL_SECONDS',
          },
        ],
      });
    }
    return t;
  }

  function serialize(value: unknown, field: string): Buffer {
    const json = Buffer.from(JSON.stringify(value), 'utf8');
    if (json.length > limits.maxValueBytes) {
      throw new AppError(
        'VALUE_TOO_LARGE',
        `${field} is ${json.length} bytes of JSON; the limit is ${limits.maxValueBytes}.`,
        {
          errors: [
            {
              field,
              message: `larger than ${limits.maxValueBytes} bytes`,
              limit: 'CACHE_MAX_VALUE_BYTES',
            },
          ],
        },
      );
    }
    return json;
  }

  function checkBatch(n: number, field: string): void {
    if (n > limits.maxBatch) {
      throw new AppError(
        'VALIDATION_FAILED',
        `${field} has ${n} entries; the limit is ${limits.maxBatch}.`,
        {
          errors: [
            { field, message: `more than ${limits.maxBatch} entries`, limit: 'CACHE_MAX_BATCH' },
          ],
        },
      );
    }
  }

  function prepare(tenant: string, item: PutItem, field: string, now: number) {
    const ttl = resolveTtl(item.ttl, `${field}.ttl`);
    const json = serialize(item.value, `${field}.value`);
    const etag = etagOf(json);
    const expiresAtMs = now + ttl * 1000;
    return {
      redisKey: keys.cache(tenant, item.key),
      envelope: encodeEnvelope(json, expiresAtMs, etag),
      expiresAtMs,
      ttl,
      etag,
    };
  }

  return {
    /** One GET; null on a miss (absent or expired). */
    async get(tenant: string, key: string): Promise<CacheEntry | null> {
      const redisKey = keys.cache(tenant, key);
      const stored = await redis.onReader((c) => c.getBuffer(redisKey));
      const entry = toEntry(stored, clock.nowMs());
      opts.onLookup?.('get', entry !== null, 1);
      return entry;
    },

    /** Stores a value; `created` tells a new entry from a replaced one. */
    async put(tenant: string, item: PutItem): Promise<PutResult> {
      const p = prepare(tenant, item, 'body', clock.nowMs());
      const created = await redis.onMaster((c) =>
        c.cachePut(p.redisKey, p.envelope, p.expiresAtMs),
      );
      return { created: created === 1, ttl: p.ttl, etag: p.etag };
    },

    /** Deletes a key; deleting an absent key is not an error. */
    async delete(tenant: string, key: string): Promise<void> {
      const redisKey = keys.cache(tenant, key);
      await redis.onMaster((c) => c.unlink(redisKey));
    },

    /** One MGET; entries in request order, null for misses. */
    async mget(tenant: string, list: readonly string[]): Promise<(CacheEntry | null)[]> {
      checkBatch(list.length, 'body.keys');
      const redisKeys = list.map((k) => keys.cache(tenant, k));
      const bufs = await redis.onReader((c) => c.mgetBuffer(...redisKeys));
      const now = clock.nowMs();
      const out = bufs.map((b) => toEntry(b, now));
      const hits = out.reduce((n, e) => (e === null ? n : n + 1), 0);
      if (hits > 0) opts.onLookup?.('mget', true, hits);
      if (hits < out.length) opts.onLookup?.('mget', false, out.length - hits);
      return out;
    },

    /** Stores many values atomically (MULTI/EXEC, one round trip). */
    async mset(
      tenant: string,
      items: readonly PutItem[],
    ): Promise<{ ttl: number; etag: string }[]> {
      checkBatch(items.length, 'body.items');
      const now = clock.nowMs();
      const prepared = items.map((item, i) => prepare(tenant, item, `body.items[${i}]`, now));
      const res = await redis.onMaster((c) => {
        const tx = c.multi();
        for (const p of prepared) tx.set(p.redisKey, p.envelope, 'PXAT', p.expiresAtMs);
        return tx.exec();
      });
      if (res === null) throw new Error('MULTI/EXEC aborted');
      for (const [err] of res) if (err) throw err;
      return prepared.map((p) => ({ ttl: p.ttl, etag: p.etag }));
    },
  };
}

export type CacheService = ReturnType<typeof createCacheService>;
