/**
 * Server-assisted client-side caching (Redis CLIENT TRACKING, RESP2 redirect mode): Redis remembers
 * the keys the request-path connection reads and, when one changes or expires, publishes its name
 * on `__redis__:invalidate` to a dedicated connection of ours. A process-local near cache can then
 * hold values safely.
 *
 * Everything tracked is lost when either connection drops or the master changes, so on any of
 * those the listeners are told to drop everything (`null`), and tracking is re-established before
 * `active()` is true again. `generation()` changes with every re-establishment: a read may be kept
 * only if tracking was active, and the generation unchanged, from before it was sent until after its
 * reply arrived.
 */
import type { Redis } from 'ioredis';

export const INVALIDATE_CHANNEL = '__redis__:invalidate';

export interface KeyTracking {
  /** True while Redis tracks the primary connection's reads for us. */
  active(): boolean;
  /** Changes whenever tracking is re-established (everything tracked before is forgotten). */
  generation(): number;
  /** Invalidated keys, or null: drop everything. */
  onInvalidate(listener: (keys: string[] | null) => void): void;
}

export interface TrackingHooks {
  onError?(err: Error): void;
}

/**
 * Wires tracking between `primary` (whose reads are tracked) and `tracker` (a connection used only
 * to receive invalidations; create it with autoResubscribe off and an offline queue).
 */
export function createKeyTracking(
  primary: Redis,
  tracker: Redis,
  hooks: TrackingHooks = {},
): KeyTracking {
  const listeners: ((keys: string[] | null) => void)[] = [];
  let trackerId: number | undefined;
  let isActive = false;
  let gen = 0;

  const flush = () => {
    isActive = false;
    gen++;
    for (const l of listeners) l(null);
  };

  const address = (c: Redis) => {
    const s = c.stream as { remoteAddress?: string; remotePort?: number } | undefined;
    return `${s?.remoteAddress}:${s?.remotePort}`;
  };

  const enable = async () => {
    if (trackerId === undefined || primary.status !== 'ready' || isActive) return;
    // Client ids are per server: pair the two connections only when they reach the same one
    // (during a failover one may already be on the new master); the other's reconnect retries.
    if (address(primary) !== address(tracker)) return;
    const id = trackerId;
    try {
      await primary.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', String(id));
      // Both connections may have moved meanwhile; only a still-valid pairing counts.
      if (trackerId === id && primary.status === 'ready') {
        gen++;
        isActive = true;
      }
    } catch (err) {
      hooks.onError?.(err as Error);
    }
  };

  tracker.on('ready', () => {
    void (async () => {
      try {
        const id = (await tracker.call('CLIENT', 'ID')) as number;
        await tracker.subscribe(INVALIDATE_CHANNEL);
        trackerId = id;
        await enable();
      } catch (err) {
        hooks.onError?.(err as Error);
      }
    })();
  });
  tracker.on('close', () => {
    trackerId = undefined;
    flush();
  });
  tracker.on('messageBuffer', (channel: Buffer, payload: unknown) => {
    if (channel.toString() !== INVALIDATE_CHANNEL) return;
    if (!Array.isArray(payload)) {
      // A null payload: the server dropped its whole table (FLUSHALL, tracking table overflow).
      for (const l of listeners) l(null);
      return;
    }
    const keys = payload.map((k: Buffer | string) => k.toString());
    for (const l of listeners) l(keys);
  });
  primary.on('ready', () => void enable());
  primary.on('close', flush);

  return {
    active: () => isActive,
    generation: () => gen,
    onInvalidate(listener) {
      listeners.push(listener);
    },
  };
}
