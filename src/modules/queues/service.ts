/**
 * Pull queues over Redis Streams with SQS semantics: publish (dedup, delay, durable), consumer
 * groups, receive with a visibility timeout and long polling, ack / nack / extend, dead-letter
 * after maxReceiveCount receives, and redrive. Every state change is one script (lua/); long
 * polls block on a bounded pool of dedicated connections (XREAD BLOCK as a wake-up signal, then
 * the receive script again), never on the request-path client.
 */
import type { Redis } from 'ioredis';
import type { Clock } from '../../clock.js';
import { AppError } from '../../errors.js';
import type { BlockingPool, RedisAccess } from '../../redis/client.js';
import { escapeGlob, keys } from '../../redis/keys.js';
import { randomToken } from '../../random.js';

export interface QueueLimits {
  maxReceiveCount: number;
  maxLength: number;
  dedupWindowSeconds: number;
  maxMessageBytes: number;
  maxDelaySeconds: number;
}

/** The largest visibility timeout (SQS's 12 hours); also the idle-time ceiling of the scripts. */
export const VISIBILITY_CEILING_MS = 12 * 3600 * 1000;
/** One XREAD BLOCK lasts at most this long; a longer wait is several of them. */
const BLOCK_CHUNK_MS = 5000;
const DLQ_SUFFIX = '.dlq';
/** How long one listing call may keep scanning before it returns a cursor. */
const SCAN_BUDGET_MS = 1000;

export type QueueEvent =
  | 'published'
  | 'deduplicated'
  | 'delivered'
  | 'redelivered'
  | 'acked'
  | 'nacked'
  | 'dead_lettered'
  | 'redriven';
export type LongPollResult = 'woken' | 'timeout' | 'degraded';

export interface QueueServiceOptions {
  redis: RedisAccess;
  blocking: BlockingPool;
  clock: Clock;
  limits: QueueLimits;
  isDraining(): boolean;
  onEvent?(event: QueueEvent, n: number): void;
  onLongPoll?(result: LongPollResult): void;
}

export interface PublishInput {
  /** The message's JSON text. */
  json: string;
  dedupId?: string | undefined;
  delayMs?: number | undefined;
}

export interface ReceivedMessage {
  readonly id: string;
  /** The stored JSON text. */
  readonly json: string;
  readonly enqueuedAt: number;
  readonly receiveCount: number;
}

/** A queue's effective settings: its own, or the configured defaults. */
export interface QueueSettings {
  maxReceiveCount: number;
  maxLength: number;
}

export interface ReceiveInput {
  consumer: string;
  max: number;
  waitMs: number;
  visibilityTimeoutMs: number;
}

export interface GroupInfo {
  name: string;
  consumers: { name: string; pending: number; idleMs: number }[];
  pending: number;
  lastDeliveredId: string;
  lag: number | null;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Flat [k, v, k, v] lists (XINFO replies) as objects. */
function pairs(flat: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const a = flat as unknown[];
  for (let i = 0; i + 1 < a.length; i += 2) out[String(a[i])] = a[i + 1];
  return out;
}

function fieldsOf(flat: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i] as string] = flat[i + 1] as string;
  return out;
}

export function createQueueService(opts: QueueServiceOptions) {
  const { redis, clock, limits } = opts;
  const event = (e: QueueEvent, n = 1) => {
    if (n > 0) opts.onEvent?.(e, n);
  };
  const queueMissing = (name: string) =>
    new AppError('QUEUE_NOT_FOUND', `No queue "${name}": nothing was published to it.`);
  const groupMissing = (group: string) =>
    new AppError(
      'GROUP_NOT_FOUND',
      `No consumer group "${group}" on this queue; create it with PUT .../groups/${group}.`,
    );

  const write = <T>(durable: boolean, fn: (r: Redis) => Promise<T>): Promise<T> =>
    durable ? redis.onMasterDurable(fn, 'queues') : redis.onMaster(fn);

  function parseReceived(r: (string | number)[]): {
    messages: ReceivedMessage[];
    lastId: string;
    nextDue: number;
    dead: number;
  } {
    const messages: ReceivedMessage[] = [];
    for (let i = 4; i + 3 < r.length; i += 4) {
      messages.push({
        id: String(r[i]),
        json: String(r[i + 1]),
        enqueuedAt: Number(r[i + 2]),
        receiveCount: Number(r[i + 3]),
      });
    }
    return { messages, lastId: String(r[1]), nextDue: Number(r[2]), dead: Number(r[3]) };
  }

  async function settingsOf(tenant: string, name: string): Promise<QueueSettings> {
    const [r, l] = await redis.onMaster((c) => c.hmget(keys.queueConfig(tenant, name), 'r', 'l'));
    return {
      maxReceiveCount: r === null ? limits.maxReceiveCount : Number(r),
      maxLength: l === null ? limits.maxLength : Number(l),
    };
  }

  return {
    async publish(
      tenant: string,
      name: string,
      messages: readonly PublishInput[],
      durable: boolean,
    ): Promise<{ id: string; duplicate: boolean }[]> {
      const keyList = [
        keys.queue(tenant, name),
        keys.queueDelayed(tenant, name),
        keys.queueConfig(tenant, name),
      ];
      const args: (string | number)[] = [
        clock.nowMs(),
        limits.maxLength,
        limits.dedupWindowSeconds * 1000,
        // A new dedup epoch, used only if the queue has none (publish-n.lua).
        messages.some((m) => m.dedupId !== undefined) ? randomToken(9) : '-',
        messages.length,
      ];
      for (const m of messages) {
        let dk = 0;
        if (m.dedupId !== undefined) {
          keyList.push(keys.queueDedup(tenant, name, m.dedupId));
          dk = keyList.length;
        }
        args.push(m.json, m.delayMs ?? 0, dk, randomToken(9));
      }
      const r = await write(durable, (c) => c.queuePublish(keyList.length, ...keyList, ...args));
      const out: { id: string; duplicate: boolean }[] = [];
      for (let i = 0; i + 1 < r.length; i += 2) {
        out.push({ id: String(r[i]), duplicate: r[i + 1] === '1' });
      }
      const dups = out.filter((o) => o.duplicate).length;
      event('published', out.length - dups);
      event('deduplicated', dups);
      return out;
    },

    /** Creates a group (idempotent): true when created now. */
    async createGroup(
      tenant: string,
      name: string,
      group: string,
      startFrom: 'earliest' | 'latest',
    ): Promise<boolean> {
      const stream = keys.queue(tenant, name);
      try {
        await redis.onMaster((c) =>
          c.xgroup('CREATE', stream, group, startFrom === 'earliest' ? '0' : '$', 'MKSTREAM'),
        );
        return true;
      } catch (err) {
        if (err instanceof Error && err.message.startsWith('BUSYGROUP')) return false;
        throw err;
      }
    },

    async deleteGroup(tenant: string, name: string, group: string): Promise<void> {
      const stream = keys.queue(tenant, name);
      let n: unknown = 0;
      try {
        n = await redis.onMaster((c) => c.xgroup('DESTROY', stream, group));
      } catch (err) {
        // XGROUP DESTROY on a missing stream is an error, not 0.
        if (!(err instanceof Error && /no such key|requires the key to exist/i.test(err.message)))
          throw err;
      }
      if (Number(n) === 0) throw groupMissing(group);
    },

    /**
     * Redelivers expired leases, then new messages; long-polls up to `waitMs` when there are
     * none. `longPoll` says how the wait went (degraded: no blocking connection was free).
     */
    async receive(
      tenant: string,
      name: string,
      group: string,
      input: ReceiveInput,
    ): Promise<{ messages: ReceivedMessage[]; longPoll: LongPollResult | undefined }> {
      const stream = keys.queue(tenant, name);
      const delayed = keys.queueDelayed(tenant, name);
      const dlq = keys.queue(tenant, name + DLQ_SUFFIX);
      const settings = keys.queueConfig(tenant, name);
      const deadline = clock.nowMs() + input.waitMs;
      let waited: true | undefined;
      for (;;) {
        let got: ReturnType<typeof parseReceived>;
        try {
          const r = await redis.onMaster((c) =>
            c.queueReceive(
              stream,
              delayed,
              dlq,
              settings,
              clock.nowMs(),
              group,
              input.consumer,
              input.max,
              input.visibilityTimeoutMs,
              VISIBILITY_CEILING_MS,
              limits.maxReceiveCount,
              limits.maxLength,
            ),
          );
          if (r[0] === 'nogroup') throw groupMissing(group);
          got = parseReceived(r);
        } catch (err) {
          // A failover while long-polling: retry on the new master within the caller's wait.
          if (err instanceof AppError && err.code === 'GROUP_NOT_FOUND') throw err;
          if (waited === undefined || clock.nowMs() + 100 >= deadline || opts.isDraining())
            throw err;
          await sleep(100);
          continue;
        }
        event('dead_lettered', got.dead);
        const fresh = got.messages.filter((m) => m.receiveCount === 1).length;
        event('delivered', fresh);
        event('redelivered', got.messages.length - fresh);
        const now = clock.nowMs();
        if (got.messages.length > 0 || now >= deadline || opts.isDraining()) {
          if (waited === undefined) return { messages: got.messages, longPoll: undefined };
          const result = got.messages.length > 0 ? 'woken' : 'timeout';
          opts.onLongPoll?.(result);
          return { messages: got.messages, longPoll: result };
        }
        let blockMs = Math.min(deadline - now, BLOCK_CHUNK_MS);
        if (got.nextDue >= 0) blockMs = Math.min(blockMs, Math.max(1, got.nextDue - now));
        const wake = opts.blocking.tryWith((c) =>
          c.xread('BLOCK', Math.max(1, Math.ceil(blockMs)), 'STREAMS', stream, got.lastId),
        );
        if (wake === undefined) {
          opts.onLongPoll?.('degraded');
          return { messages: [], longPoll: 'degraded' };
        }
        waited = true;
        try {
          await wake;
        } catch {
          // Interrupted (shutdown) or the connection died (failover): loop and read again.
          if (opts.isDraining()) return { messages: [], longPoll: 'timeout' };
          await sleep(50);
        }
      }
    },

    async ack(tenant: string, name: string, group: string, ids: readonly string[]) {
      const n = await redis.onMaster((c) =>
        c.queueAck(
          keys.queue(tenant, name),
          keys.queueConfig(tenant, name),
          group,
          limits.maxLength,
          ...ids,
        ),
      );
      event('acked', n);
      return n;
    },

    /** nack (visible again after `delayMs`) or extend (hidden for `visibilityMs` from now). */
    async lease(
      tenant: string,
      name: string,
      group: string,
      consumer: string,
      ids: readonly string[],
      visibleInMs: number,
      kind: 'nack' | 'extend',
    ): Promise<number> {
      const n = await redis.onMaster((c) =>
        c.queueLease(
          keys.queue(tenant, name),
          group,
          consumer,
          VISIBILITY_CEILING_MS - visibleInMs,
          ...ids,
        ),
      );
      if (n === -1) throw groupMissing(group);
      if (kind === 'nack') event('nacked', n);
      return n;
    },

    /** The queue's own settings (null resets one to the configured default); returns them. */
    async configure(
      tenant: string,
      name: string,
      changes: { maxReceiveCount?: number | null; maxLength?: number | null },
    ): Promise<QueueSettings> {
      const key = keys.queueConfig(tenant, name);
      const set: (string | number)[] = [];
      const unset: string[] = [];
      for (const [field, value] of [
        ['r', changes.maxReceiveCount],
        ['l', changes.maxLength],
      ] as const) {
        if (value === null) unset.push(field);
        else if (value !== undefined) set.push(field, value);
      }
      await redis.onMaster((c) =>
        Promise.all([
          set.length > 0 ? c.hset(key, ...set) : Promise.resolve(0),
          unset.length > 0 ? c.hdel(key, ...unset) : Promise.resolve(0),
        ]),
      );
      return settingsOf(tenant, name);
    },

    async info(tenant: string, name: string) {
      const stream = keys.queue(tenant, name);
      const [exists, length, first, delayed, dlqLength] = await redis.onMaster((c) =>
        Promise.all([
          c.exists(stream),
          c.xlen(stream),
          c.xrange(stream, '-', '+', 'COUNT', 1),
          c.zcard(keys.queueDelayed(tenant, name)),
          c.xlen(keys.queue(tenant, name + DLQ_SUFFIX)),
        ]),
      );
      if (exists === 0 && delayed === 0) throw queueMissing(name);
      const groups: GroupInfo[] = [];
      if (exists === 1) {
        const raw = (await redis.onMaster((c) => c.xinfo('GROUPS', stream))) as unknown[];
        const consumers = await redis.onMaster((c) =>
          Promise.all(
            raw.map(
              (g) => c.xinfo('CONSUMERS', stream, String(pairs(g).name)) as Promise<unknown[]>,
            ),
          ),
        );
        raw.forEach((g, i) => {
          const p = pairs(g);
          groups.push({
            name: String(p.name),
            consumers: (consumers[i] ?? []).map((x) => {
              const q = pairs(x);
              return { name: String(q.name), pending: Number(q.pending), idleMs: Number(q.idle) };
            }),
            pending: Number(p.pending),
            lastDeliveredId: String(p['last-delivered-id']),
            lag: p.lag === null || p.lag === undefined ? null : Number(p.lag),
          });
        });
      }
      const settings = await settingsOf(tenant, name);
      const oldest = first[0];
      const enqueued = oldest ? Number(fieldsOf(oldest[1]).t) : undefined;
      return {
        name,
        length,
        delayed,
        deadLettered: dlqLength,
        ...settings,
        oldestMessageAgeMs: enqueued === undefined ? null : Math.max(0, clock.nowMs() - enqueued),
        groups,
      };
    },

    async pending(
      tenant: string,
      name: string,
      group: string,
      cursor: string | undefined,
      limit: number,
    ) {
      let rows: unknown[];
      try {
        rows = await redis.onMaster<unknown[]>((c) =>
          c.xpending(
            keys.queue(tenant, name),
            group,
            cursor === undefined ? '-' : `(${cursor}`,
            '+',
            limit,
          ),
        );
      } catch (err) {
        if (err instanceof Error && err.message.startsWith('NOGROUP')) throw groupMissing(group);
        throw err;
      }
      const entries = rows.map((row) => {
        const [id, consumer, idle, count] = row as [string, string, number, number];
        return {
          id,
          consumer,
          visibleInMs: Math.max(0, VISIBILITY_CEILING_MS - Number(idle)),
          receiveCount: Number(count),
        };
      });
      return {
        entries,
        cursor: entries.length === limit ? (entries[entries.length - 1]?.id ?? null) : null,
      };
    },

    async deadLetters(tenant: string, name: string, cursor: string | undefined, limit: number) {
      const rows = await redis.onMaster((c) =>
        c.xrange(
          keys.queue(tenant, name + DLQ_SUFFIX),
          cursor === undefined ? '-' : `(${cursor}`,
          '+',
          'COUNT',
          limit,
        ),
      );
      const messages = rows.map(([id, flat]) => {
        const f = fieldsOf(flat);
        return {
          id,
          json: f.d ?? 'null',
          enqueuedAt: Number(f.t),
          originalId: f.o ?? '',
          group: f.g ?? '',
          receiveCount: Number(f.c ?? 0),
        };
      });
      return {
        messages,
        cursor: messages.length === limit ? (messages[messages.length - 1]?.id ?? null) : null,
      };
    },

    async redrive(tenant: string, name: string, ids: readonly string[] | undefined, max: number) {
      const [moved, remaining] = await redis.onMaster((c) =>
        c.queueRedrive(
          keys.queue(tenant, name + DLQ_SUFFIX),
          keys.queue(tenant, name),
          keys.queueConfig(tenant, name),
          limits.maxLength,
          max,
          ...(ids ?? []),
        ),
      );
      event('redriven', moved);
      return { redriven: moved, remaining };
    },

    /**
     * Deletes the queue with its groups, delayed messages, settings and dead-letter queue, in one
     * step; QUEUE_NOT_FOUND when none of them existed.
     */
    async deleteQueue(tenant: string, name: string) {
      const dlq = name + DLQ_SUFFIX;
      const [existed, messages, delayed, groups, deadLettered] = await redis.onMaster((c) =>
        c.queueDelete(
          keys.queue(tenant, name),
          keys.queueDelayed(tenant, name),
          keys.queueConfig(tenant, name),
          keys.queue(tenant, dlq),
          keys.queueDelayed(tenant, dlq),
          keys.queueConfig(tenant, dlq),
        ),
      );
      if (existed === 0) throw queueMissing(name);
      return { name, messages, delayed, groups, deadLettered };
    },

    /**
     * Drops every message and delayed message of the queue, keeping its groups (at the end, with
     * nothing in flight), settings and dead-letter queue; QUEUE_NOT_FOUND when it had neither.
     */
    async purge(tenant: string, name: string) {
      const [existed, messages, delayed, groups] = await redis.onMaster((c) =>
        c.queuePurge(
          keys.queue(tenant, name),
          keys.queueDelayed(tenant, name),
          keys.queueConfig(tenant, name),
        ),
      );
      if (existed === 0) throw queueMissing(name);
      return { name, messages, delayed, groups };
    },

    /**
     * Pages the tenant's queues whose names start with `prefix` (SCAN over streams: a page may be
     * short while the cursor is not null). A queue appears once it has a stream: from its first
     * publish (a delayed one creates the stream empty) or its first group.
     */
    async list(
      tenant: string,
      prefix: string,
      cursorText: string | undefined,
      limit: number,
    ): Promise<{ queues: { name: string; length: number }[]; cursor: string | null }> {
      const start = Date.now();
      const streamPrefix = keys.queuePrefix(tenant);
      const match = `${escapeGlob(streamPrefix)}${escapeGlob(prefix)}*`;
      let c = cursorText ?? '0';
      const names: string[] = [];
      do {
        const [next, found] = await redis.onReader((r) =>
          r.scan(c, 'MATCH', match, 'COUNT', Math.max(limit, 100), 'TYPE', 'stream'),
        );
        for (const k of found)
          if (k.startsWith(streamPrefix)) names.push(k.slice(streamPrefix.length));
        c = next;
      } while (c !== '0' && names.length < limit && Date.now() - start < SCAN_BUDGET_MS);
      const lengths = await redis.onReader((r) =>
        Promise.all(names.map((n) => r.xlen(keys.queue(tenant, n)))),
      );
      return {
        queues: names.map((n, i) => ({ name: n, length: lengths[i] ?? 0 })),
        cursor: c === '0' ? null : c,
      };
    },

    /** Ends every long poll now (shutdown); they answer with what they have. */
    interruptWaits(): void {
      opts.blocking.interrupt();
    },
  };
}

export type QueueService = ReturnType<typeof createQueueService>;
