import { describe, expect, it } from 'vitest';
import { isoTime } from '../../src/clock.js';

describe('isoTime', () => {
  it('matches Date#toISOString at the edges', () => {
    const cases = [
      0,
      1,
      999,
      86_399_999,
      86_400_000,
      951_782_400_000, // 2000-02-29
      1_709_164_799_999, // 2024-02-28T23:59:59.999Z
      1_709_251_200_000, // 2024-03-01
      253_402_300_799_999, // 9999-12-31T23:59:59.999Z
    ];
    for (const ms of cases) expect(isoTime(ms)).toBe(new Date(ms).toISOString());
  });

  it('matches Date#toISOString for random times', () => {
    for (let i = 0; i < 20_000; i++) {
      const ms = Math.floor(Math.random() * 253_402_300_800_000);
      expect(isoTime(ms)).toBe(new Date(ms).toISOString());
    }
  });

  it('falls back for what the fast path does not cover', () => {
    for (const ms of [-1, -86_400_001, 1.5, 253_402_300_800_000, 8.64e15]) {
      expect(isoTime(ms)).toBe(new Date(ms).toISOString());
    }
    expect(() => isoTime(Number.NaN)).toThrow(RangeError);
  });
});
