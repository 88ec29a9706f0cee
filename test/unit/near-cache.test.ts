/** The near cache's coherence rules, driven through its KeyTracking contract (no Redis here). */
import { describe, expect, it } from 'vitest';
import type { Envelope } from '../../src/modules/cache/envelope.js';
import { createNearCache } from '../../src/modules/cache/near-cache.js';
import type { KeyTracking } from '../../src/redis/tracking.js';

function fakeTracking() {
  let active = true;
  let gen = 1;
  const listeners: ((keys: string[] | null) => void)[] = [];
  const tracking: KeyTracking = {
    active: () => active,
    generation: () => gen,
    onInvalidate: (l) => listeners.push(l),
  };
  return {
    tracking,
    invalidate: (keys: string[] | null) => listeners.forEach((l) => l(keys)),
    reconnect: () => {
      active = false;
      gen++;
      listeners.forEach((l) => l(null));
      active = true;
    },
    deactivate: () => {
      active = false;
    },
  };
}

const env = (bytes = 10): Envelope => ({
  encoding: 'json',
  freshUntilMs: 0,
  expiresAtMs: 0,
  etag: 'e',
  tags: [],
  payload: Buffer.alloc(bytes, 0x31),
  savedBytes: 0,
});

function read(
  near: ReturnType<typeof createNearCache>,
  key: string,
  value: Envelope | null,
  during?: () => void,
) {
  const g = near.beginRead(key);
  during?.();
  near.endRead(key, g, value);
}

describe('near cache', () => {
  it('keeps a completed read and serves it while tracking is active', () => {
    const f = fakeTracking();
    const near = createNearCache({ tracking: f.tracking, maxBytes: 1e6, maxEntryBytes: 1e5 });
    const e = env();
    read(near, 'k', e);
    expect(near.get('k')).toBe(e);
    f.deactivate();
    expect(near.get('k')).toBeUndefined();
  });

  it('drops a key on invalidation, and everything on a flush', () => {
    const f = fakeTracking();
    const near = createNearCache({ tracking: f.tracking, maxBytes: 1e6, maxEntryBytes: 1e5 });
    read(near, 'a', env());
    read(near, 'b', env());
    f.invalidate(['a']);
    expect(near.get('a')).toBeUndefined();
    expect(near.get('b')).toBeDefined();
    f.invalidate(null);
    expect(near.get('b')).toBeUndefined();
    expect(near.stats()).toEqual({ entries: 0, bytes: 0 });
  });

  it('never keeps a read overtaken by an invalidation of its key, or by a reconnect', () => {
    const f = fakeTracking();
    const near = createNearCache({ tracking: f.tracking, maxBytes: 1e6, maxEntryBytes: 1e5 });
    read(near, 'k', env(), () => f.invalidate(['k']));
    expect(near.get('k')).toBeUndefined();
    read(near, 'k', env(), () => f.reconnect());
    expect(near.get('k')).toBeUndefined();
    // Two overlapping reads, the key invalidated while both are in flight: neither is kept.
    const g1 = near.beginRead('k');
    const g2 = near.beginRead('k');
    f.invalidate(['k']);
    near.endRead('k', g1, env());
    near.endRead('k', g2, env());
    expect(near.get('k')).toBeUndefined();
    // Afterwards a clean read is kept again.
    read(near, 'k', env());
    expect(near.get('k')).toBeDefined();
  });

  it('does not keep reads begun while tracking was inactive', () => {
    const f = fakeTracking();
    const near = createNearCache({ tracking: f.tracking, maxBytes: 1e6, maxEntryBytes: 1e5 });
    f.deactivate();
    const g = near.beginRead('k');
    near.endRead('k', g, env());
    expect(near.stats().entries).toBe(0);
  });

  it('stays within its byte bound, giving recently used entries a second chance, and skips large entries', () => {
    const f = fakeTracking();
    const near = createNearCache({ tracking: f.tracking, maxBytes: 2000, maxEntryBytes: 1000 });
    for (let i = 0; i < 4; i++) read(near, `k${i}`, env(300)); // four fit
    expect(near.stats().entries).toBe(4);
    expect(near.get('k0')).toBeDefined(); // k0 is used: it gets a second chance
    read(near, 'k4', env(300));
    expect(near.stats().bytes).toBeLessThanOrEqual(2000);
    expect(near.get('k1')).toBeUndefined(); // the oldest untouched one went
    expect(near.get('k0')).toBeDefined();
    for (let i = 5; i < 40; i++) read(near, `k${i}`, env(300));
    expect(near.stats().bytes).toBeLessThanOrEqual(2000);
    read(near, 'big', env(5000));
    expect(near.get('big')).toBeUndefined();
  });
});
