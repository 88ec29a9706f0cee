import { describe, expect, it } from 'vitest';
import { rateLimitHeaders } from '../../src/modules/ratelimit/headers.js';
import {
  BUILTIN_POLICIES,
  PolicyDefinition,
  compilePolicy,
  globMatcher,
  parsePoliciesFile,
} from '../../src/modules/ratelimit/policy.js';
import type { Decision } from '../../src/modules/ratelimit/service.js';

describe('policy definitions', () => {
  it('accepts the documented shapes and refuses unknown fields and bad numbers', () => {
    const ok = [
      { algorithm: 'token_bucket', capacity: 100, refillPerSecond: 1.67 },
      { algorithm: 'gcra', limit: 100, periodMs: 60000, burst: 10 },
      { algorithm: 'sliding_log', limit: 100, windowMs: 60000 },
      { algorithm: 'sliding_window', limit: 100, windowMs: 60000, failureMode: 'closed' },
      { algorithm: 'fixed_window', limit: 100, windowMs: 60000, calendar: true, shadow: true },
      { algorithm: 'unlimited', identifyBy: 'header:X-Api-Key' },
      {
        algorithm: 'fixed_window',
        limit: 1,
        windowMs: 1000,
        overrides: [{ match: 'vip-*', policy: { algorithm: 'unlimited' } }],
      },
    ];
    for (const d of ok) expect(PolicyDefinition.safeParse(d).success, JSON.stringify(d)).toBe(true);
    const bad = [
      { algorithm: 'leaky_bucket', limit: 1 },
      { algorithm: 'token_bucket', capacity: 10 },
      { algorithm: 'token_bucket', capacity: 10, refillPerSecond: 0 },
      { algorithm: 'gcra', limit: 1.5, periodMs: 1000 },
      { algorithm: 'sliding_log', limit: 1001, windowMs: 1000 },
      { algorithm: 'fixed_window', limit: 1, windowMs: 0 },
      { algorithm: 'fixed_window', limit: 1, windowMs: 1000, timeoutMs: 0 },
      { algorithm: 'fixed_window', limit: 1, windowMs: 1000, identifyBy: 'cookie:sid' },
      { algorithm: 'fixed_window', limit: 1, windowMs: 1000, windowSize: 5 },
      // overrides do not nest
      {
        algorithm: 'unlimited',
        overrides: [{ match: 'a', policy: { algorithm: 'unlimited', overrides: [] } }],
      },
    ];
    for (const d of bad)
      expect(PolicyDefinition.safeParse(d).success, JSON.stringify(d)).toBe(false);
  });

  it('ships the documented defaults', () => {
    expect(Object.keys(BUILTIN_POLICIES).sort()).toEqual(
      ['authenticated', 'bulk', 'internal', 'public', 'webhooks'].sort(),
    );
    for (const d of Object.values(BUILTIN_POLICIES))
      expect(PolicyDefinition.safeParse(d).success).toBe(true);
    expect(
      compilePolicy('public', 'builtin', BUILTIN_POLICIES.public as PolicyDefinition).quota,
    ).toBe(100);
  });

  it('compiles: inline policies are keyed by their parameters, options do not change the state', () => {
    const a = compilePolicy('inline', 'inline', {
      algorithm: 'fixed_window',
      limit: 5,
      windowMs: 1000,
    });
    const b = compilePolicy('inline', 'inline', {
      algorithm: 'fixed_window',
      limit: 5,
      windowMs: 1000,
      failureMode: 'closed',
    });
    const c = compilePolicy('inline', 'inline', {
      algorithm: 'fixed_window',
      limit: 6,
      windowMs: 1000,
    });
    expect(a.stateName).toBe(b.stateName);
    expect(a.stateName).not.toBe(c.stateName);
    expect(a.stateName.startsWith('~')).toBe(true);
    expect(b.failureMode).toBe('closed');
    expect(a.failureMode).toBe('open');
    expect(a.timeoutMs).toBe(50);
  });

  it('picks the first matching override', () => {
    const p = compilePolicy('p', 'file', {
      algorithm: 'fixed_window',
      limit: 1,
      windowMs: 1000,
      overrides: [
        { match: 'vip-?', policy: { algorithm: 'fixed_window', limit: 10, windowMs: 1000 } },
        { match: 'vip-*', policy: { algorithm: 'fixed_window', limit: 20, windowMs: 1000 } },
      ],
    });
    expect(p.limiterFor('vip-1').quota).toBe(10);
    expect(p.limiterFor('vip-12').quota).toBe(20);
    expect(p.limiterFor('user').quota).toBe(1);
  });

  it('leases: leaseMs within bounds, never for a sliding log or a quota under 16; overrides inherit it', () => {
    const ok = (d: unknown) => PolicyDefinition.safeParse(d).success;
    const tb = { algorithm: 'token_bucket', capacity: 1600, refillPerSecond: 10 };
    expect(ok({ ...tb, leaseMs: 100 })).toBe(true);
    expect(ok({ ...tb, leaseMs: 10_000 })).toBe(true);
    expect(ok({ ...tb, leaseMs: 99 })).toBe(false);
    expect(ok({ ...tb, leaseMs: 10_001 })).toBe(false);
    expect(ok({ ...tb, leaseMs: 500.5 })).toBe(false);
    expect(ok({ algorithm: 'sliding_log', limit: 100, windowMs: 1000, leaseMs: 1000 })).toBe(false);
    expect(ok({ algorithm: 'unlimited', leaseMs: 1000 })).toBe(false);

    const p = compilePolicy('p', 'file', {
      algorithm: 'token_bucket',
      capacity: 1600,
      refillPerSecond: 10,
      leaseMs: 2000,
      overrides: [
        { match: 'small', policy: { algorithm: 'fixed_window', limit: 15, windowMs: 1000 } },
        { match: 'log', policy: { algorithm: 'sliding_log', limit: 100, windowMs: 1000 } },
        {
          match: 'own',
          policy: { algorithm: 'gcra', limit: 32, periodMs: 1000, burst: 32, leaseMs: 500 },
        },
        { match: 'big', policy: { algorithm: 'sliding_window', limit: 160, windowMs: 1000 } },
      ],
    });
    const lease = (id: string) => {
      const l = p.limiterFor(id);
      return [l.leaseMs, l.leaseMax];
    };
    expect(lease('anyone')).toEqual([2000, 100]); // 1/16 of the capacity
    expect(lease('small')).toEqual([0, 0]);
    expect(lease('log')).toEqual([0, 0]);
    expect(lease('own')).toEqual([500, 2]);
    expect(lease('big')).toEqual([2000, 10]);
    const off = compilePolicy('q', 'file', tb as PolicyDefinition);
    expect([off.leaseMs, off.leaseMax]).toEqual([0, 0]);
  });

  it('matches globs literally apart from * and ?', () => {
    expect(globMatcher('a.b*')('a.bc')).toBe(true);
    expect(globMatcher('a.b*')('axbc')).toBe(false);
    expect(globMatcher('(x)?')('(x)1')).toBe(true);
    expect(globMatcher('plain')('plain')).toBe(true);
    expect(globMatcher('plain')('plains')).toBe(false);
  });
});

describe('policies file', () => {
  it('reads YAML and JSON', () => {
    const yaml = parsePoliciesFile(
      'policies:\n  api: { algorithm: gcra, limit: 10, periodMs: 1000 }\nquotas:\n  acme: 100\n',
      'p.yaml',
    );
    expect(yaml.policies?.api?.algorithm).toBe('gcra');
    expect(yaml.quotas).toEqual({ acme: 100 });
    const json = parsePoliciesFile(
      '{"tenants":{"acme":{"x":{"algorithm":"unlimited"}}}}',
      'p.json',
    );
    expect(json.tenants?.acme?.x?.algorithm).toBe('unlimited');
    expect(parsePoliciesFile('', 'empty.yaml')).toEqual({});
  });

  it('names the file and every problem', () => {
    expect(() => parsePoliciesFile('{', 'p.json')).toThrow(/p\.json: not valid JSON/);
    expect(() =>
      parsePoliciesFile(
        'policies:\n  Bad Name: { algorithm: unlimited }\nquotas: { acme: -1 }\n',
        'p.yaml',
      ),
    ).toThrow(/p\.yaml: .*policies.*quotas\.acme/s);
    expect(() => parsePoliciesFile('polices: {}', 'p.yaml')).toThrow(/Unrecognized key/);
  });
});

describe('rate-limit headers', () => {
  const limiter = compilePolicy('api', 'file', {
    algorithm: 'fixed_window',
    limit: 10,
    windowMs: 60000,
  });
  const d = (over: Partial<Decision>): Decision => ({
    allowed: true,
    limit: 10,
    remaining: 7,
    resetMs: 1500,
    retryAfterMs: 0,
    policy: 'api',
    limiter,
    ...over,
    sfName: `"${over.policy ?? 'api'}"`,
  });

  it('renders draft-11 RateLimit-Policy / RateLimit and the legacy trio', () => {
    expect(rateLimitHeaders([d({})], { legacy: true })).toEqual({
      'ratelimit-policy': '"api";q=10;w=60',
      ratelimit: '"api";r=7;t=2',
      'x-ratelimit-limit': '10',
      'x-ratelimit-remaining': '7',
      'x-ratelimit-reset': '2',
    });
    expect(rateLimitHeaders([d({})], { legacy: false })['x-ratelimit-limit']).toBeUndefined();
  });

  it('adds Retry-After (whole seconds, at least 1) on a denial and the degraded flag', () => {
    const h = rateLimitHeaders([d({ allowed: false, remaining: 0, retryAfterMs: 1 })], {
      legacy: false,
    });
    expect(h['retry-after']).toBe('1');
    expect(
      rateLimitHeaders([d({ degraded: true })], { legacy: false })['x-ratelimit-degraded'],
    ).toBe('true');
  });

  it('lists each policy once with its tightest result; unlimited adds nothing', () => {
    const other = compilePolicy('burst', 'file', {
      algorithm: 'token_bucket',
      capacity: 5,
      refillPerSecond: 1,
    });
    const h = rateLimitHeaders(
      [
        d({ remaining: 7 }),
        d({ remaining: 3 }),
        d({ policy: 'burst', limit: 5, remaining: 4, limiter: other }),
        d({ policy: 'internal', limit: null, remaining: null }),
      ],
      { legacy: true },
    );
    expect(h['ratelimit-policy']).toBe('"api";q=10;w=60, "burst";q=5;w=5');
    expect(h.ratelimit).toBe('"api";r=3;t=2, "burst";r=4;t=2');
    expect(h['x-ratelimit-remaining']).toBe('3');
  });
});
