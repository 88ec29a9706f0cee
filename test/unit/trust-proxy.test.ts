import { describe, expect, it } from 'vitest';
import { memoizedTrust } from '../../src/http/trust-proxy.js';

describe('memoizedTrust', () => {
  it('answers as TRUSTED_PROXIES says: names, addresses, ranges, IPv4-mapped IPv6', () => {
    const trust = memoizedTrust(['loopback', '10.0.0.0/8', '192.0.2.7']);
    const cases: [string, boolean][] = [
      ['127.0.0.1', true],
      ['::1', true],
      ['::ffff:127.0.0.1', true],
      ['10.200.3.4', true],
      ['::ffff:10.1.2.3', true],
      ['192.0.2.7', true],
      ['192.0.2.8', false],
      ['11.0.0.1', false],
      ['2001:db8::1', false],
      ['not-an-address', false],
      ['', false],
    ];
    // Twice: the second answer comes from memory and must be the same.
    for (let round = 0; round < 2; round++) {
      for (const [addr, expected] of cases) expect(trust(addr, 0), addr).toBe(expected);
    }
  });

  it('keeps answering correctly past its memory bound (a client writes X-Forwarded-For)', () => {
    const trust = memoizedTrust(['10.0.0.0/8'], 4);
    for (let i = 0; i < 50; i++) {
      expect(trust(`10.0.0.${i}`, 1)).toBe(true);
      expect(trust(`11.0.0.${i}`, 1)).toBe(false);
    }
    expect(trust('10.0.0.1', 0)).toBe(true);
  });

  it('trusts nothing when given nothing', () => {
    const trust = memoizedTrust([]);
    expect(trust('127.0.0.1', 0)).toBe(false);
  });
});
