/**
 * A process-local copy of recently read cache entries, kept coherent with Redis by server-assisted
 * invalidation (redis/tracking.ts): a GET hit served from here costs no Redis round trip.
 *
 * Coherence rules:
 * - nothing is served or stored unless tracking is active;
 * - a read is stored only if tracking stayed active with the same generation from before the
 *   command was sent until its reply, and no invalidation for that key arrived meanwhile (an
 *   invalidation can overtake the reply: it travels on another connection);
 * - this process's own writes drop the key at once (read-your-writes on this replica); writes
 *   through other replicas arrive as invalidations, typically well under a millisecond later.
 * Bounded by bytes; eviction is CLOCK (a recently used entry gets a second chance).
 */
import type { KeyTracking } from '../../redis/tracking.js';
import type { Envelope } from './envelope.js';

interface Slot {
  env: Envelope;
  bytes: number;
  used: boolean;
}

export interface NearCacheOptions {
  tracking: KeyTracking;
  maxBytes: number;
  maxEntryBytes: number;
}

/** Rough per-entry overhead of the map, the envelope object and the key. */
const OVERHEAD = 160;

export function createNearCache(opts: NearCacheOptions) {
  const { tracking } = opts;
  const slots = new Map<string, Slot>();
  let bytes = 0;
  /** Reads in flight per key, and keys invalidated while one was in flight. */
  const pending = new Map<string, number>();
  const dirty = new Set<string>();

  function drop(key: string): void {
    const s = slots.get(key);
    if (s !== undefined) {
      slots.delete(key);
      bytes -= s.bytes;
    }
  }

  function clear(): void {
    slots.clear();
    bytes = 0;
    for (const k of pending.keys()) dirty.add(k);
  }

  function evict(): void {
    while (bytes > opts.maxBytes) {
      const oldest = slots.entries().next().value;
      if (oldest === undefined) return;
      const [key, slot] = oldest;
      slots.delete(key);
      if (slot.used) {
        slot.used = false;
        slots.set(key, slot); // second chance: to the back of the line
      } else {
        bytes -= slot.bytes;
      }
    }
  }

  tracking.onInvalidate((invalidated) => {
    if (invalidated === null) {
      clear();
      return;
    }
    for (const key of invalidated) {
      drop(key);
      if (pending.has(key)) dirty.add(key);
    }
  });

  return {
    /** The stored entry, when held and tracking is active. */
    get(key: string): Envelope | undefined {
      if (!tracking.active()) return undefined;
      const s = slots.get(key);
      if (s === undefined) return undefined;
      s.used = true;
      return s.env;
    },

    /** Call before sending the read; returns what endRead needs. */
    beginRead(key: string): number {
      pending.set(key, (pending.get(key) ?? 0) + 1);
      return tracking.active() ? tracking.generation() : -1;
    },

    /** Call with the read's outcome (null: no entry); keeps it when coherence allows. */
    endRead(key: string, generation: number, env: Envelope | null): void {
      const n = (pending.get(key) ?? 1) - 1;
      const invalidated = dirty.has(key);
      if (n <= 0) {
        pending.delete(key);
        dirty.delete(key);
      } else {
        pending.set(key, n);
      }
      if (
        env === null ||
        invalidated ||
        generation === -1 ||
        !tracking.active() ||
        tracking.generation() !== generation
      )
        return;
      const size = env.payload.length + key.length * 2 + OVERHEAD;
      if (size > opts.maxEntryBytes) return;
      drop(key);
      slots.set(key, { env, bytes: size, used: false });
      bytes += size;
      evict();
    },

    /** Drops a key this process is writing or deleting. */
    drop,

    stats(): { entries: number; bytes: number } {
      return { entries: slots.size, bytes };
    },
  };
}

export type NearCache = ReturnType<typeof createNearCache>;
