/**
 * The overload monitor (http/overload.ts): a sample over the limit flags the process overloaded,
 * the next one under it clears the flag; 0 turns it off; and the real event-loop histogram sees a
 * saturated loop.
 */
import { describe, expect, it } from 'vitest';
import { startOverloadMonitor } from '../../src/http/overload.js';

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('overload monitor', () => {
  it('flags each sample by its mean delay against the limit', async () => {
    const delays = [0, 150, 250, 400, 90];
    const seen: [number, boolean][] = [];
    const m = startOverloadMonitor({
      maxDelayMs: 200,
      sampleMs: 5,
      meanDelayMs: () => delays.shift() ?? 0,
      onSample: (d, o) => seen.push([d, o]),
    });
    while (seen.length < 5) await tick(5);
    m.stop();
    expect(seen.slice(0, 5)).toEqual([
      [0, false],
      [150, false],
      [250, true],
      [400, true],
      [90, false],
    ]);
  });

  it('does nothing with a limit of 0', async () => {
    let samples = 0;
    const m = startOverloadMonitor({
      maxDelayMs: 0,
      sampleMs: 5,
      meanDelayMs: () => 10_000,
      onSample: () => samples++,
    });
    await tick(30);
    m.stop();
    expect(samples).toBe(0);
  });

  it('measures a saturated event loop', async () => {
    const seen: [number, boolean][] = [];
    const m = startOverloadMonitor({
      maxDelayMs: 50,
      sampleMs: 400,
      onSample: (d, o) => seen.push([d, o]),
    });
    // A saturated loop: every turn takes 80 ms of work (the timers wait that long each time).
    while (seen.length < 1) {
      const until = performance.now() + 80;
      while (performance.now() < until) {
        /* a turn's worth of requests */
      }
      await new Promise((r) => setImmediate(r));
    }
    m.stop();
    expect(seen[0]?.[1]).toBe(true);
    expect(seen[0]?.[0]).toBeGreaterThan(50);
  });
});
