/**
 * Leases: units of a limit that this replica reserved in Redis (with the check that went there)
 * and now gives out itself, without a Redis call, until they run out or the lease ends. Only
 * limiters with `leaseMs` use them, and the check script guarantees that no sequence of leased and
 * direct uses, over all replicas, exceeds the limit (lua/lent.lua, the algorithms' headers).
 *
 * What a lease costs is the units it holds and does not use: they count as used until the
 * replica's next check of the identifier gives them back, and for good when what counted them no
 * longer does (the window has ended; the bucket's lease generation is forgotten). So a
 * lease is sized to what this replica saw the identifier use: none for an identifier seen once per
 * lease time, then 1, doubled whenever a lease ran out before it ended, and after a lease that
 * ended unused in part, what that one used (over leaseMs: a lease its window cut short used that
 * in less time). The script grants at most half of what is left, and the limiter at most 1/16 of
 * its quota.
 */

/** One identifier's lease on this replica. */
export interface Lease {
  readonly key: string;
  /** Units left to give out. */
  units: number;
  /**
   * Clock ms: the asking check's clock reading (never later than the `now` its batch sent) plus
   * the lease's ms. No unit is given out from then.
   */
  expiresAt: number;
  /** Units of the last grant (0: none). */
  granted: number;
  /** How long the last grant was for, ms: leaseMs, or less when a window ended it. */
  heldMs: number;
  /**
   * What counted the last grant, named as the script returned it: a window's start or index, a
   * bucket's lease generation (its forget-at). The units of it not given out go back with it.
   */
  origin: number;
  /** What Redis had left beyond the grant, and when it would have been fully restored. */
  remaining: number;
  resetAt: number;
  /** When a check of this identifier last went to Redis. */
  askedAt: number;
  /** A check asking for a lease is on its way to Redis: the others ask for none meanwhile. */
  asking: boolean;
  /**
   * Counts the asks that went out with this lease: an answer that arrives after its check stopped
   * waiting is used only while this is still what its ask read (`Ask.ticket`).
   */
  ticket: number;
  /**
   * Retired since its last ask: a grant still to come is taken as a lease that has ended (its
   * units go back with the next check) instead of one to give out.
   */
  ended: boolean;
}

export interface LeaseTable {
  /** Takes `cost` units of a live lease; undefined when there is none with enough units. */
  take(key: string, cost: number, now: number): Lease | undefined;
  /**
   * How many units a check going to Redis now should ask for beyond its cost (0: none), the
   * lease to hand the answer to, and the units of the last lease it gives back (no longer given
   * out here; the script uncounts them if what counted them still counts).
   */
  ask(key: string, now: number, leaseMs: number, max: number): Ask;
  /** The script's answer for the check that asked: `units` granted for `leaseMs` from `now`. */
  granted(lease: Lease, now: number, r: Grant): void;
  /**
   * The check that asked got no answer in time (the lease table forgets it was asking). Its
   * answer may still come: see `late`.
   */
  failed(lease: Lease): void;
  /**
   * The answer of an ask that had `failed` by timeout, arriving after all: Redis did count its
   * grant. Taken as `granted` (from the same `now`, so the lease ends no later than Redis counted
   * it; ended at once if retired meanwhile) unless the lease moved on since that ask: a newer ask,
   * or out of the table (forgotten by a reset, cleared by a master change). True when taken.
   */
  late(lease: Lease, ticket: number, now: number, r: Grant): boolean;
  /** Units of a live lease (0 when none). */
  held(key: string, now: number): number;
  forget(key: string): void;
  /**
   * Ends every lease (of a key starting with `prefix`: one tenant's) at once: none of its units
   * is given out from now, and those left go back with the identifier's next check. A lease
   * whose grant is on its way (or late) ends when that grant comes, likewise.
   */
  retire(prefix?: string): void;
  /** Forgets every lease: their units are neither given out nor back (they count as used). */
  clear(): void;
  readonly size: number;
}

/** What the script answered an ask: `units` granted for `leaseMs` from its `now`. */
export interface Grant {
  units: number;
  leaseMs: number;
  origin: number;
  /** What Redis had left beyond the grant, and in how many ms it would be fully restored. */
  remaining: number;
  resetMs: number;
}

export interface Ask {
  want: number;
  lease?: Lease;
  /** The lease's ticket as this ask left it (with `lease`). */
  ticket?: number;
  /** Units given back, and what counted them (`Lease.origin`; 0 0: none). */
  back: number;
  backOrigin: number;
}

const NOTHING: Ask = { want: 0, back: 0, backOrigin: 0 };

/** A table of at most `maxEntries` leases (the oldest is dropped first); 0 turns leases off. */
export function createLeaseTable(maxEntries: number): LeaseTable {
  const leases = new Map<string, Lease>();
  const grant = (l: Lease, now: number, r: Grant) => {
    l.asking = false;
    if (r.units > 0 && leases.get(l.key) === l) {
      // Busy identifiers move to the young end: the oldest entry is dropped first.
      leases.delete(l.key);
      leases.set(l.key, l);
    }
    l.granted = r.units;
    l.heldMs = r.leaseMs;
    l.origin = r.origin;
    l.units = r.units;
    l.expiresAt = r.units > 0 && !l.ended ? now + r.leaseMs : 0;
    l.remaining = r.remaining;
    l.resetAt = now + r.resetMs;
  };
  return {
    take(key, cost, now) {
      const l = leases.get(key);
      if (l === undefined || l.units < cost || now >= l.expiresAt) return undefined;
      l.units -= cost;
      return l;
    },

    ask(key, now, leaseMs, max) {
      if (maxEntries === 0) return NOTHING;
      let l = leases.get(key);
      if (l === undefined) {
        if (leases.size >= maxEntries) {
          const oldest = leases.keys().next().value;
          if (oldest !== undefined) leases.delete(oldest);
        }
        l = {
          key,
          units: 0,
          expiresAt: 0,
          granted: 0,
          heldMs: 0,
          origin: 0,
          remaining: 0,
          resetAt: 0,
          askedAt: now,
          asking: false,
          ticket: 0,
          ended: false,
        };
        leases.set(key, l);
        return NOTHING;
      }
      if (l.asking) return NOTHING;
      // What is left of the last lease goes back with this check: this replica gives out
      // none of it from now on (a lease too small for this cost, or one that ended).
      let back = 0;
      let backOrigin = 0;
      if (l.units > 0 && l.origin !== 0) {
        back = l.units;
        backOrigin = l.origin;
      }
      let want: number;
      if (l.granted > 0 && now < l.expiresAt) {
        // Used up before it ended: this identifier needs more.
        want = 2 * l.granted;
        if (back > 0) l.units = 0;
      } else if (l.granted > 0) {
        // Ended: ask for what it used (none: start again from nothing), per leaseMs: a lease
        // its window cut short used that in less time (the script cuts the next one likewise).
        const used = l.granted - l.units;
        want = l.heldMs < leaseMs ? Math.ceil((used * leaseMs) / Math.max(1, l.heldMs)) : used;
        l.granted = 0;
        l.units = 0;
      } else {
        // A second check within a lease time: worth a lease of one.
        want = now - l.askedAt < leaseMs ? 1 : 0;
      }
      l.askedAt = now;
      want = Math.min(want, max);
      if (want === 0) return back === 0 ? NOTHING : { want, back, backOrigin };
      l.asking = true;
      l.ended = false;
      return { want, lease: l, ticket: ++l.ticket, back, backOrigin };
    },

    granted(l, now, r) {
      grant(l, now, r);
    },

    failed(l) {
      l.asking = false;
    },

    late(l, ticket, now, r) {
      if (l.ticket !== ticket || leases.get(l.key) !== l) return false;
      grant(l, now, r);
      return true;
    },

    held(key, now) {
      const l = leases.get(key);
      return l === undefined || now >= l.expiresAt ? 0 : l.units;
    },

    forget(key) {
      leases.delete(key);
    },

    retire(prefix) {
      for (const [key, l] of leases) {
        if (prefix !== undefined && !key.startsWith(prefix)) continue;
        l.expiresAt = 0;
        l.ended = true;
      }
    },

    clear() {
      leases.clear();
    },

    get size() {
      return leases.size;
    },
  };
}
