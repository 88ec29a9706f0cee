/**
 * In-memory reference implementations of the five rate-limit algorithms, written from their
 * definitions in src/modules/ratelimit/lua/algorithms/*.lua (same state, same arithmetic, state
 * written back only when a check consumes). The model check feeds random request sequences to
 * both and compares every decision.
 */
export interface ModelDecision {
  allowed: boolean;
  limit: number;
  remaining: number;
  resetMs: number;
  retryAfterMs: number;
}

const EPS = 1e-9;

/** A seeded generator of numbers in [0, 1): a failure can name the seed that reproduces it. */
export function seeded(seed: number): () => number {
  let s = seed * 2654435761;
  return () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
}

function finish(
  allowed: boolean,
  limit: number,
  remaining: number,
  reset: number,
  retry: number,
): ModelDecision {
  return {
    allowed,
    limit,
    remaining: Math.max(0, Math.floor(remaining + EPS)),
    resetMs: Math.max(0, Math.ceil(reset - EPS)),
    retryAfterMs: allowed ? 0 : Math.max(1, Math.ceil(retry - EPS)),
  };
}

export interface Model {
  check(now: number, cost: number): ModelDecision;
}

/** A bucket's model that can also tell its room unrounded and be copied (a replay's search). */
export interface BucketModel extends Model {
  /** The units a check at `now` could take, unrounded; changes nothing. */
  room(now: number): number;
  /** An independent copy of the model in its current state. */
  fork(): BucketModel;
}

export function tokenBucketModel(
  capacity: number,
  refillPerSecond: number,
  from?: { tokens: number; ts: number },
): BucketModel {
  const refill = refillPerSecond / 1000;
  let state = from;
  return {
    room(now) {
      if (state === undefined) return capacity;
      return Math.min(capacity, state.tokens + Math.max(0, now - state.ts) * refill);
    },
    fork() {
      return tokenBucketModel(capacity, refillPerSecond, state);
    },
    check(now, cost) {
      let tokens = state?.tokens ?? capacity;
      let ts = state?.ts ?? now;
      const t = Math.max(now, ts);
      tokens = Math.min(capacity, tokens + (t - ts) * refill);
      ts = t;
      const need = cost > 0 ? cost : 1;
      const allowed = need <= tokens + EPS;
      if (allowed && cost > 0) {
        tokens = Math.max(0, tokens - cost);
        state = { tokens, ts };
      }
      return finish(
        allowed,
        capacity,
        tokens,
        (capacity - tokens) / refill,
        (need - tokens) / refill,
      );
    },
  };
}

export function gcraModel(limit: number, periodMs: number, burst: number, from = 0): BucketModel {
  const interval = periodMs / limit;
  const tau = interval * burst;
  let stored = from;
  return {
    room(now) {
      return (tau - (Math.max(stored, now) - now)) / interval;
    },
    fork() {
      return gcraModel(limit, periodMs, burst, stored);
    },
    check(now, cost) {
      let tat = Math.max(stored, now);
      if (tat - now > tau) tat = now + tau;
      const need = cost > 0 ? cost : 1;
      const next = tat + need * interval;
      const allowed = next - now <= tau + EPS;
      if (allowed && cost > 0) {
        tat = next;
        stored = tat;
      }
      return finish(allowed, burst, (tau - (tat - now)) / interval, tat - now, next - tau - now);
    },
  };
}

export function slidingLogModel(limit: number, windowMs: number): Model {
  let entries: number[] = [];
  return {
    check(now, cost) {
      const newest = entries.length > 0 ? Math.max(...entries) : 0;
      const n = Math.max(now, newest);
      const live = entries.filter((e) => e > n - windowMs).sort((a, b) => a - b);
      const need = cost > 0 ? cost : 1;
      let used = live.length;
      const allowed = used + need <= limit;
      let pending = 0;
      if (allowed && cost > 0) {
        pending = cost;
        used += cost;
      }
      const reset = pending > 0 ? windowMs : live.length > 0 ? newest + windowMs - n : 0;
      let retry = 0;
      if (!allowed) {
        const idx = used + need - limit - 1;
        retry = idx < live.length ? (live[idx] as number) + windowMs - n : windowMs;
      }
      if (pending > 0) entries = [...live, ...new Array<number>(pending).fill(n)];
      return finish(allowed, limit, limit - used, reset, retry);
    },
  };
}

export function slidingWindowModel(limit: number, windowMs: number): Model {
  let state: { idx: number; cur: number; prev: number } | undefined;
  const w = windowMs;
  return {
    check(now, cost) {
      let { idx: idx0, cur, prev } = state ?? { idx: Math.floor(now / w), cur: 0, prev: 0 };
      let n = now;
      let idx = Math.floor(n / w);
      if (idx < idx0) {
        idx = idx0;
        n = idx * w;
      }
      if (idx === idx0 + 1) {
        prev = cur;
        cur = 0;
      } else if (idx > idx0 + 1) {
        prev = 0;
        cur = 0;
      }
      idx0 = idx;
      const elapsed = n - idx * w;
      const weight = (w - elapsed) / w;
      const need = cost > 0 ? cost : 1;
      const allowed = prev * weight + cur + need <= limit + EPS;
      if (allowed && cost > 0) {
        cur += cost;
        state = { idx: idx0, cur, prev };
      }
      const remaining = limit - (prev * weight + cur);
      const reset = cur > 0 ? 2 * w - elapsed : prev > 0 ? w - elapsed : 0;
      let retry = 0;
      if (!allowed) {
        retry =
          cur + need > limit
            ? w - elapsed + Math.max(0, w * (1 - (limit - need) / cur))
            : w * (1 - (limit - cur - need) / prev) - elapsed;
      }
      return finish(allowed, limit, remaining, reset, retry);
    },
  };
}

export function fixedWindowModel(limit: number, windowMs: number, calendar: boolean): Model {
  let state: { start: number; count: number } | undefined;
  return {
    check(now, cost) {
      let start = state?.start ?? -1;
      let count = state?.count ?? 0;
      let n = now;
      if (n < start) n = start;
      if (start < 0 || n >= start + windowMs) {
        start = calendar ? n - (n % windowMs) : n;
        count = 0;
      }
      const need = cost > 0 ? cost : 1;
      const allowed = count + need <= limit;
      if (allowed && cost > 0) {
        count += cost;
        state = { start, count };
      }
      const reset = count > 0 ? start + windowMs - n : 0;
      return finish(allowed, limit, limit - count, reset, start + windowMs - n);
    },
  };
}
