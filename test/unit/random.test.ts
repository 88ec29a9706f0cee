import { describe, expect, it } from 'vitest';
import { randomToken } from '../../src/random.js';

describe('randomToken', () => {
  it('gives base64url of the asked length', () => {
    expect(randomToken(32)).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(randomToken(16)).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(randomToken(9)).toMatch(/^[A-Za-z0-9_-]{12}$/);
    expect(randomToken(4096)).toHaveLength(5462);
  });

  it('never repeats across many pool refills', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 20_000; i++) seen.add(randomToken(16));
    expect(seen.size).toBe(20_000);
  });

  it('looks uniform: every base64url character about equally often', () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      // 30 bytes = 40 characters, none of them padding-biased.
      for (const ch of randomToken(30)) counts.set(ch, (counts.get(ch) ?? 0) + 1);
    }
    expect(counts.size).toBe(64);
    const expected = (3000 * 40) / 64;
    for (const n of counts.values()) {
      expect(n).toBeGreaterThan(expected * 0.8);
      expect(n).toBeLessThan(expected * 1.2);
    }
  });
});
