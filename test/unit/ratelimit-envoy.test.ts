/**
 * envoyproxy/ratelimit's configuration as the gateway reads it: what loading refuses (what theirs
 * refuses), and which limit a request descriptor gets (their GetLimit), without Redis.
 */
import { describe, expect, it } from 'vitest';
import {
  applyReplaces,
  compileEnvoyConfig,
  createDynamicLimits,
  envoyIdentifier,
  findLimit,
  secondsUntilReset,
} from '../../src/modules/ratelimit/envoy.js';
import { parsePoliciesFile } from '../../src/modules/ratelimit/policy.js';

/** The `envoy` list of a policies file written in YAML, compiled. */
function load(yaml: string) {
  const file = parsePoliciesFile(yaml, 'p.yaml');
  return compileEnvoyConfig(file.envoy ?? [], file.envoyOptions);
}

const entries = (...kv: [string, string][]) => kv.map(([key, value]) => ({ key, value }));

// The example of envoyproxy/ratelimit's README, plus a wildcard and a nested default.
const CONFIG = `
envoy:
  - domain: mongo_cps
    descriptors:
      - key: database
        value: users
        rate_limit: { unit: second, requests_per_unit: 500 }
      - key: database
        value: default
        rate_limit: { unit: second, requests_per_unit: 500 }
  - domain: edge
    descriptors:
      - key: remote_address
        rate_limit: { unit: MINUTE, requests_per_unit: 10 }
      - key: remote_address
        value: 10.0.0.1
        rate_limit: { unit: minute, requests_per_unit: 100 }
      - key: path
        value: /api/*
        rate_limit: { unit: second, requests_per_unit: 2 }
      - key: user
        descriptors:
          - key: plan
            value: free
            rate_limit: { unit: hour, requests_per_unit: 20 }
          - key: plan
            rate_limit: { unit: hour, requests_per_unit: 1000 }
      - key: port
        value: 8080
        rate_limit: { unlimited: true }
`;

describe('envoyproxy/ratelimit configuration', () => {
  const domains = load(CONFIG);
  const limitOf = (domain: string, ...kv: [string, string][]) =>
    findLimit(domains, domain, entries(...kv));

  it('finds key_value first, then a value prefix ending in *, then the bare key', () => {
    expect(limitOf('mongo_cps', ['database', 'users'])).toMatchObject({
      fullKey: 'mongo_cps.database_users',
      unit: 'SECOND',
      requestsPerUnit: 500,
    });
    expect(limitOf('mongo_cps', ['database', 'orders'])).toBeUndefined();
    expect(limitOf('edge', ['remote_address', '10.0.0.1'])?.requestsPerUnit).toBe(100);
    expect(limitOf('edge', ['remote_address', '10.0.0.2'])).toMatchObject({
      fullKey: 'edge.remote_address',
      requestsPerUnit: 10,
      unit: 'MINUTE',
    });
    expect(limitOf('edge', ['path', '/api/v1/users'])?.fullKey).toBe('edge.path_/api/*');
    expect(limitOf('edge', ['path', '/web/index.html'])).toBeUndefined();
  });

  it('applies a limit only where the request descriptor ends', () => {
    expect(limitOf('edge', ['user', 'u1'], ['plan', 'free'])?.requestsPerUnit).toBe(20);
    expect(limitOf('edge', ['user', 'u1'], ['plan', 'gold'])?.requestsPerUnit).toBe(1000);
    // Shallower than the configuration: `user` alone has no rate_limit.
    expect(limitOf('edge', ['user', 'u1'])).toBeUndefined();
    // Deeper than the configuration: remote_address has no children.
    expect(limitOf('edge', ['remote_address', '10.0.0.2'], ['path', '/x'])).toBeUndefined();
    expect(limitOf('nowhere', ['remote_address', '10.0.0.2'])).toBeUndefined();
  });

  it('reads YAML numbers as strings and unlimited limits without a policy', () => {
    const port = limitOf('edge', ['port', '8080']);
    expect(port).toMatchObject({ unlimited: true, fullKey: 'edge.port_8080' });
    expect(port?.policy).toBeUndefined();
  });

  it('counts each limit in a fixed window of its unit aligned to the epoch', () => {
    const def = limitOf('edge', ['user', 'u'], ['plan', 'free'])?.policy?.definition;
    expect(def).toEqual({
      algorithm: 'fixed_window',
      limit: 20,
      windowMs: 3_600_000,
      calendar: true,
    });
    const shadow = load(
      'envoy:\n  - domain: d\n    descriptors:\n      - key: k\n        shadow_mode: true\n        rate_limit: { unit: day, requests_per_unit: 1 }\n',
    );
    expect(findLimit(shadow, 'd', entries(['k', 'v']))?.policy?.shadow).toBe(true);
  });

  it("gives every limit of a domain its envoyOptions (leases, failure mode, timeout), and only that domain's", () => {
    const yaml = `
envoy:
  - domain: edge
    descriptors:
      - key: remote_address
        rate_limit: { unit: second, requests_per_unit: 1000 }
      - key: user
        descriptors:
          - key: plan
            rate_limit: { unit: minute, requests_per_unit: 600 }
      - key: small
        rate_limit: { unit: minute, requests_per_unit: 15 }
  - domain: other
    descriptors:
      - key: remote_address
        rate_limit: { unit: second, requests_per_unit: 1000 }
envoyOptions:
  edge: { leaseMs: 500, failureMode: closed, timeoutMs: 15 }
`;
    const d = load(yaml);
    const ip = findLimit(d, 'edge', entries(['remote_address', '192.0.2.1']))?.policy;
    expect(ip).toMatchObject({ leaseMs: 500, leaseMax: 62, failureMode: 'closed', timeoutMs: 15 });
    // The window itself is envoyproxy/ratelimit's: options change how it is decided, not what.
    expect(ip?.args).toEqual(['fwin', '1000', '1000', '1']);
    expect(findLimit(d, 'edge', entries(['user', 'u'], ['plan', 'free']))?.policy).toMatchObject({
      leaseMs: 500,
      failureMode: 'closed',
    });
    // A quota under 16 is never leased, whatever the options say.
    expect(findLimit(d, 'edge', entries(['small', 'x']))?.policy?.leaseMs).toBe(0);
    expect(findLimit(d, 'other', entries(['remote_address', '192.0.2.1']))?.policy).toMatchObject({
      leaseMs: 0,
      failureMode: 'open',
      timeoutMs: 50,
    });

    // A request's own limit takes its domain's options, and a reload's new options.
    const dynamic = createDynamicLimits();
    const limit = { requestsPerUnit: 100, unit: 'SECOND' as const };
    expect(dynamic('edge', limit, d.get('edge')!.options).policy).toMatchObject({
      leaseMs: 500,
      timeoutMs: 15,
    });
    expect(dynamic('edge', limit, { leaseMs: 2000 }).policy).toMatchObject({
      leaseMs: 2000,
      timeoutMs: 50,
    });
    expect(dynamic('other', limit, d.get('other')!.options).policy?.leaseMs).toBe(0);

    // Options for a domain the list does not have: refused (a misspelt name would silently
    // leave the domain without them); and the bounds of each option.
    expect(() => load(`${yaml}  edgee: { leaseMs: 500 }\n`)).toThrow(
      /envoyOptions\.edgee: no domain 'edgee' in the envoy list/,
    );
    for (const bad of [
      '{ leaseMs: 50 }',
      '{ leaseMs: 60000 }',
      '{ timeoutMs: 0 }',
      '{ failureMode: shut }',
      '{ shadow: true }',
    ]) {
      expect(
        () => parsePoliciesFile(`envoy: []\nenvoyOptions:\n  edge: ${bad}\n`, 'p.yaml'),
        bad,
      ).toThrow(/p\.yaml: envoyOptions\.edge/);
    }
  });

  it('drops the limits another matched limit replaces', () => {
    const d = load(`
envoy:
  - domain: d
    descriptors:
      - key: key1
        rate_limit: { unit: minute, name: limit1, requests_per_unit: 10 }
      - key: key2
        value: value2
        rate_limit: { unit: minute, requests_per_unit: 20, replaces: [{ name: limit1 }] }
`);
    const general = findLimit(d, 'd', entries(['key1', 'x']));
    const specific = findLimit(d, 'd', entries(['key2', 'value2']));
    expect(applyReplaces([general, specific])).toEqual([undefined, specific]);
    expect(applyReplaces([general, undefined])).toEqual([general, undefined]);
  });

  it('refuses what envoyproxy/ratelimit refuses, naming where', () => {
    const cases: [string, RegExp][] = [
      [
        '- domain: d\n    descriptors:\n      - key: ""',
        /envoy\[0\]\.descriptors\[0\]: descriptor has empty key/,
      ],
      [
        '- domain: d\n    descriptors:\n      - { key: k, value: v }\n      - { key: k, value: v }',
        /envoy\[0\]\.descriptors\[1\]: duplicate descriptor composite key 'd\.k_v'/,
      ],
      ['- domain: d\n  - domain: d', /envoy\[1\]: duplicate domain 'd'/],
      ['- domain: ""', /envoy\[0\]: config file cannot have empty domain/],
      [
        '- domain: d\n    descriptors:\n      - { key: k, rate_limit: { unit: fortnight, requests_per_unit: 1 } }',
        /invalid rate limit unit 'fortnight'/,
      ],
      [
        '- domain: d\n    descriptors:\n      - { key: k, rate_limit: { requests_per_unit: 1 } }',
        /invalid rate limit unit ''/,
      ],
      [
        '- domain: d\n    descriptors:\n      - { key: k, rate_limit: { unlimited: true, unit: second } }',
        /should not specify rate limit unit when unlimited/,
      ],
      [
        '- domain: d\n    descriptors:\n      - { key: k, rate_limit: { unit: second, replaces: [{ name: "" }] } }',
        /should not have an empty replaces entry/,
      ],
      [
        '- domain: d\n    descriptors:\n      - { key: k, rate_limit: { unit: second, name: a, replaces: [{ name: a }] } }',
        /replaces should not contain name of same descriptor/,
      ],
    ];
    for (const [yaml, error] of cases) {
      expect(() => load(`envoy:\n  ${yaml}\n`), yaml).toThrow(error);
    }
    // Unknown keys, as their validateYamlKeys: refused when the file is read.
    expect(() =>
      parsePoliciesFile('envoy:\n  - domain: d\n    descriptor: []\n', 'p.yaml'),
    ).toThrow(/p\.yaml: envoy\.0: Unrecognized key: "descriptor"/);
    // Newer options whose meaning the gateway does not implement: refused by name.
    expect(() =>
      parsePoliciesFile(
        'envoy:\n  - domain: d\n    descriptors:\n      - { key: k, share_threshold: true }\n',
        'p.yaml',
      ),
    ).toThrow(/share_threshold/);
    expect(() =>
      parsePoliciesFile(
        'envoy:\n  - domain: d\n    descriptors:\n      - { key: k, rate_limit: { unit: second, requests_per_unit: -1 } }\n',
        'p.yaml',
      ),
    ).toThrow(/requests_per_unit/);
  });

  it('names each request descriptor in Redis keys without ambiguity', () => {
    // envoyproxy/ratelimit's own key joins these two into the same "d_a_b_c".
    const one = envoyIdentifier('d', entries(['a_b', 'c']));
    const two = envoyIdentifier('d', entries(['a', 'b_c']));
    expect(one).not.toBe(two);
    expect(envoyIdentifier('d', entries(['k', 'v']))).toBe('["d","k","v"]');
    // Long ones become a digest: short keys, still one per descriptor.
    const long = (v: string) => envoyIdentifier('d', entries(['path', `${'/x'.repeat(300)}${v}`]));
    expect(long('a')).toMatch(/^#[A-Za-z0-9_-]{43}$/);
    expect(long('a')).toBe(long('a'));
    expect(long('a')).not.toBe(long('b'));
    // Counted in bytes: 200 three-byte characters are past the limit too.
    expect(envoyIdentifier('d', entries(['k', '€'.repeat(200)]))).toMatch(/^#/);
  });

  it("counts the seconds to the end of the unit's window as envoyproxy/ratelimit does", () => {
    const t = Date.UTC(2026, 10, 22, 10, 15, 42, 500);
    expect(secondsUntilReset('SECOND', t)).toBe(1);
    expect(secondsUntilReset('MINUTE', t)).toBe(18);
    expect(secondsUntilReset('HOUR', t)).toBe(3600 - (15 * 60 + 42));
    expect(secondsUntilReset('DAY', t)).toBe(86_400 - (10 * 3600 + 15 * 60 + 42));
  });
});
