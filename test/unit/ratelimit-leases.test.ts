import { describe, expect, it } from 'vitest';
import { createLeaseTable } from '../../src/modules/ratelimit/leases.js';

const L = 1000;
/** A grant without an origin (0: nothing given back). */
const grant = { leaseMs: L, origin: 0, remaining: 500, resetMs: 100 };

describe('lease table', () => {
  it('sizes leases to what the identifier uses: none, 1, doubled while run out early', () => {
    const t = createLeaseTable(10);
    expect(t.ask('k', 0, L, 100).want).toBe(0); // seen once
    const second = t.ask('k', 10, L, 100);
    expect(second.want).toBe(1); // seen again within a lease time
    t.granted(second.lease!, 10, { ...grant, units: 1 });
    expect(t.take('k', 1, 20)?.units).toBe(0);
    expect(t.take('k', 1, 21)).toBeUndefined(); // run out
    const third = t.ask('k', 21, L, 100);
    expect(third.want).toBe(2);
    t.granted(third.lease!, 21, { ...grant, units: 2 });
    t.take('k', 2, 22);
    expect(t.ask('k', 23, L, 100).want).toBe(4);
  });

  it('after a lease that ended, asks for what it used; nothing used: starts again', () => {
    const t = createLeaseTable(10);
    t.ask('k', 0, L, 100);
    const a = t.ask('k', 1, L, 100);
    t.granted(a.lease!, 1, { ...grant, units: 1 });
    t.take('k', 1, 2);
    const b = t.ask('k', 3, L, 100);
    t.granted(b.lease!, 3, { ...grant, units: 2 });
    // asked while b's lease still runs (the service asks only once it is used up): doubled
    const c = t.ask('k', 4, L, 100);
    expect(c.want).toBe(4);
    t.granted(c.lease!, 4, { ...grant, units: 10 });
    for (let i = 0; i < 3; i++) t.take('k', 1, 5 + i);
    expect(t.held('k', 500)).toBe(7);
    expect(t.take('k', 1, 4 + L)).toBeUndefined(); // ended at now + leaseMs
    expect(t.held('k', 4 + L)).toBe(0);
    const d = t.ask('k', 5 + L, L, 100);
    expect(d.want).toBe(3); // the ended lease's use
    t.granted(d.lease!, 5 + L, { ...grant, units: 3 });
    const e = t.ask('k', 6 + 3 * L, L, 100); // ended unused
    expect(e.want).toBe(0);
    expect(t.ask('k', 7 + 3 * L, L, 100).want).toBe(1); // and starts again
  });

  it('after a lease its window cut short, asks for that use over a whole leaseMs', () => {
    const t = createLeaseTable(10);
    t.ask('k', 0, L, 100);
    const a = t.ask('k', 1, L, 100);
    // The window ends 250 ms after the grant: a lease of 250 ms.
    t.granted(a.lease!, 1, { ...grant, leaseMs: 250, units: 4 });
    t.take('k', 3, 100);
    expect(t.take('k', 1, 251)).toBeUndefined(); // ended with its window
    // 3 used in 250 ms: 12 per leaseMs (the script cuts it to what the next window leaves).
    expect(t.ask('k', 252, L, 100).want).toBe(12);
  });

  it('gives back what is left of a lease with the next check that goes to Redis, once', () => {
    const t = createLeaseTable(10);
    t.ask('k', 0, L, 100);
    const a = t.ask('k', 1, L, 100);
    t.granted(a.lease!, 1, { ...grant, origin: 7, units: 5 });
    t.take('k', 2, 10);
    // Ended with 3 left: they go back (origin 7), and the next lease is sized to the 2 used.
    expect(t.ask('k', 2 + L, L, 100)).toMatchObject({ want: 2, back: 3, backOrigin: 7 });
    expect(t.held('k', 2 + L)).toBe(0);
    // A live lease too small for a check's cost: what it holds goes back, none of it is used.
    const t2 = createLeaseTable(10);
    t2.ask('k', 0, L, 100);
    const b = t2.ask('k', 1, L, 100);
    t2.granted(b.lease!, 1, { ...grant, origin: 7, units: 2 });
    expect(t2.take('k', 3, 5)).toBeUndefined();
    const c = t2.ask('k', 5, L, 100);
    expect(c).toMatchObject({ want: 4, back: 2, backOrigin: 7 });
    expect(t2.take('k', 1, 6)).toBeUndefined();
    // Nothing is given back twice: the check that carried them may have failed.
    t2.failed(c.lease!);
    expect(t2.ask('k', 7, L, 100)).toMatchObject({ back: 0 });
    // A lease without an origin (0) is never given back.
    const t3 = createLeaseTable(10);
    t3.ask('k', 0, L, 100);
    const d = t3.ask('k', 1, L, 100);
    t3.granted(d.lease!, 1, { ...grant, units: 5 });
    expect(t3.ask('k', 2 + L, L, 100)).toMatchObject({ want: 0, back: 0 });
  });

  it('retire ends leases at once (one prefix, or all): their units go back, also those of a grant on its way', () => {
    const t = createLeaseTable(10);
    for (const k of ['t1:x', 't1:y', 't2:x']) {
      t.ask(k, 0, L, 100);
      const a = t.ask(k, 1, L, 100);
      t.granted(a.lease!, 1, { ...grant, origin: 7, units: 4 });
    }
    t.ask('t1:z', 0, L, 100);
    const z = t.ask('t1:z', 1, L, 100);
    expect(z.want).toBe(1); // its grant is on its way
    t.retire('t1:');
    expect(t.take('t1:x', 1, 2)).toBeUndefined();
    expect(t.take('t2:x', 1, 2)?.units).toBe(3); // another prefix's lease goes on
    expect(t.ask('t1:x', 3, L, 100)).toMatchObject({ want: 0, back: 4, backOrigin: 7 });
    t.granted(z.lease!, 1, { ...grant, origin: 7, units: 1 }); // comes after the retirement
    expect(t.take('t1:z', 1, 3)).toBeUndefined();
    expect(t.ask('t1:z', 3, L, 100)).toMatchObject({ want: 0, back: 1, backOrigin: 7 });
    t.retire();
    expect(t.held('t2:x', 4)).toBe(0);
    expect(t.ask('t2:x', 5, L, 100)).toMatchObject({ want: 1, back: 3, backOrigin: 7 });
  });

  it('asks once at a time per identifier, within the limiter maximum; a failure lets it ask again', () => {
    const t = createLeaseTable(10);
    t.ask('k', 0, L, 3);
    const a = t.ask('k', 1, L, 3);
    expect(a.want).toBe(1);
    expect(t.ask('k', 1, L, 3).want).toBe(0); // a's check is on its way
    t.failed(a.lease!);
    const b = t.ask('k', 2, L, 3);
    expect(b.want).toBe(1);
    t.granted(b.lease!, 2, { ...grant, units: 1 });
    t.take('k', 1, 3);
    const c = t.ask('k', 4, L, 3);
    t.granted(c.lease!, 4, { ...grant, units: 2 });
    t.take('k', 2, 5);
    expect(t.ask('k', 6, L, 3).want).toBe(3); // 4, capped
    expect(t.ask('other', 6, L, 0).want).toBe(0);
  });

  it('takes a grant that came after its check timed out, unless the lease moved on meanwhile', () => {
    /** A lease of `k` whose ask of 1 unit (at 1) timed out; what happens next, then its answer. */
    const timedOut = (meanwhile: (t: ReturnType<typeof createLeaseTable>) => void = () => {}) => {
      const t = createLeaseTable(10);
      t.ask('k', 0, L, 100);
      const a = t.ask('k', 1, L, 100);
      expect(a.want).toBe(1);
      t.failed(a.lease!);
      meanwhile(t);
      return { t, taken: t.late(a.lease!, a.ticket!, 1, { ...grant, origin: 7, units: 1 }) };
    };
    const quiet = timedOut();
    expect(quiet.taken).toBe(true);
    expect(quiet.t.held('k', 500)).toBe(1);
    expect(quiet.t.take('k', 1, 1 + L)).toBeUndefined(); // ends at the ask's now + leaseMs
    expect(quiet.t.ask('k', 2 + L, L, 100)).toMatchObject({ back: 1, backOrigin: 7 });
    // A newer ask went out: its own answer, not this one, is what the lease will hold.
    const asked = timedOut((t) => expect(t.ask('k', 2, L, 100).want).toBe(1));
    expect(asked.taken).toBe(false);
    expect(asked.t.held('k', 3)).toBe(0);
    // Retired meanwhile (policies changed): taken as ended, its units go back.
    const retired = timedOut((t) => t.retire());
    expect(retired.taken).toBe(true);
    expect(retired.t.held('k', 3)).toBe(0);
    expect(retired.t.ask('k', 4, L, 100)).toMatchObject({ want: 0, back: 1, backOrigin: 7 });
    // Forgotten (a reset) or cleared (a master change): not taken.
    for (const end of [
      (t: ReturnType<typeof createLeaseTable>) => t.forget('k'),
      (t: ReturnType<typeof createLeaseTable>) => t.clear(),
    ]) {
      const ended = timedOut(end);
      expect(ended.taken).toBe(false);
      expect(ended.t.held('k', 3)).toBe(0);
      expect(ended.t.ask('k', 4, L, 100).back).toBe(0);
    }
  });

  it('holds at most its entries (busy identifiers stay longest); 0 turns leases off', () => {
    const t = createLeaseTable(2);
    for (const k of ['a', 'b']) t.ask(k, 0, L, 10);
    const a = t.ask('a', 1, L, 10);
    t.granted(a.lease!, 1, { ...grant, units: 1 }); // a moves to the young end
    t.ask('c', 2, L, 10); // drops b, the oldest
    expect(t.size).toBe(2);
    expect(t.held('a', 3)).toBe(1);
    expect(t.ask('b', 3, L, 10).want).toBe(0); // b is new again
    const off = createLeaseTable(0);
    off.ask('k', 0, L, 10);
    expect(off.ask('k', 1, L, 10).want).toBe(0);
    expect(off.size).toBe(0);
    t.forget('a');
    expect(t.held('a', 3)).toBe(0);
    t.clear();
    expect(t.size).toBe(0);
  });
});
