/**
 * POST /v1/ratelimit/envoy, envoyproxy/ratelimit's `/json` call, against real Redis: the same
 * request and response body and status codes, each part of their configuration (values, defaults,
 * wildcards, nesting, unlimited, shadow_mode, replaces, a request's own limit, hits_addend), the
 * windows, bad input, scopes, tenants, and the configuration's reloads.
 */
import { writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { manualClock } from '../../../src/clock.js';
import {
  type TestTenant,
  body,
  buildTestApp,
  expectProblem,
  leaseUnits,
  newTenant,
  useTestApp,
  writePoliciesFile,
} from '../../harness/app.js';
import { runCommonRouteTests } from '../../harness/common-route-tests.js';

const policiesFile = writePoliciesFile([
  'envoy:',
  '  - domain: edge',
  '    descriptors:',
  '      - key: remote_address',
  '        rate_limit: { unit: minute, requests_per_unit: 3 }',
  '      - key: remote_address',
  '        value: 10.0.0.1',
  '        rate_limit: { unit: minute, requests_per_unit: 5 }',
  '      - key: path',
  '        value: /api/*',
  '        rate_limit: { unit: second, requests_per_unit: 2 }',
  '      - key: user',
  '        descriptors:',
  '          - key: plan',
  '            value: internal',
  '            rate_limit: { unlimited: true }',
  '          - key: plan',
  '            rate_limit: { unit: hour, requests_per_unit: 2 }',
  '      - key: shadow',
  '        shadow_mode: true',
  '        rate_limit: { unit: minute, requests_per_unit: 1 }',
  '      - key: blocked',
  '        rate_limit: { unit: minute, requests_per_unit: 0 }',
  '      - key: key1',
  '        rate_limit: { unit: minute, name: limit1, requests_per_unit: 1 }',
  '      - key: key2',
  '        value: value2',
  '        rate_limit: { unit: minute, requests_per_unit: 2, replaces: [{ name: limit1 }] }',
  '      - key: bulk',
  '        rate_limit: { unit: minute, requests_per_unit: 10 }',
]);

// 10:00:20 on some day: 40 s left in the minute, windows aligned to the epoch.
const T0 = 1_800_000_000_000 - (1_800_000_000_000 % 3_600_000) + 20_000;
const clock = manualClock(T0);
const t = useTestApp({ clock, env: { RATELIMIT_POLICIES_FILE: policiesFile } });

type Status = {
  code: 'OK' | 'OVER_LIMIT';
  currentLimit?: { requestsPerUnit?: number; unit: string };
  limitRemaining?: number;
  durationUntilReset?: string;
};
type Answer = { overallCode: 'OK' | 'OVER_LIMIT'; statuses: Status[] };

const URL = '/v1/ratelimit/envoy';
let seq = 0;
/** An address no other test uses. */
const addr = () => `192.0.2.${++seq}-${Date.now()}`;
const desc = (...kv: [string, string][]) => ({
  entries: kv.map(([key, value]) => ({ key, value })),
});

async function caller(scopes = ['ratelimit:check']): Promise<TestTenant> {
  return newTenant(t.deps, scopes);
}

function call(auth: Record<string, string>, payload: unknown) {
  return t.app.inject({ method: 'POST', url: URL, headers: auth, payload: payload as object });
}

async function answer(auth: Record<string, string>, payload: unknown) {
  const res = await call(auth, payload);
  return { status: res.statusCode, body: body<Answer>(res), headers: res.headers };
}

describe('POST /v1/ratelimit/envoy', () => {
  it('answers as envoyproxy/ratelimit: 200 within the limit, 429 over it, both RateLimitResponse', async () => {
    clock.set(T0);
    const a = await caller();
    const ip = addr();
    const req = { domain: 'edge', descriptors: [desc(['remote_address', ip])] };
    const first = await call(a.auth, req);
    expect(first.statusCode).toBe(200);
    expect(first.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(first.body).toBe(
      '{"overallCode":"OK","statuses":[{"code":"OK","currentLimit":{"requestsPerUnit":3,"unit":"MINUTE"},"limitRemaining":2,"durationUntilReset":"40s"}]}',
    );
    expect(first.headers['ratelimit-policy']).toBe('"edge.remote_address";q=3;w=60');
    expect(first.headers.ratelimit).toBe('"edge.remote_address";r=2;t=40');
    await call(a.auth, req);
    // The third: allowed, nothing left (protojson leaves limitRemaining 0 out).
    expect((await answer(a.auth, req)).body.statuses[0]).toEqual({
      code: 'OK',
      currentLimit: { requestsPerUnit: 3, unit: 'MINUTE' },
      durationUntilReset: '40s',
    });
    clock.advance(5_000);
    const over = await answer(a.auth, req);
    expect(over.status).toBe(429);
    expect(over.body).toEqual({
      overallCode: 'OVER_LIMIT',
      statuses: [
        {
          code: 'OVER_LIMIT',
          currentLimit: { requestsPerUnit: 3, unit: 'MINUTE' },
          durationUntilReset: '35s',
        },
      ],
    });
    expect(over.headers['retry-after']).toBe('35');
    // The next minute is a new window.
    clock.set(T0 + 40_000);
    expect(await answer(a.auth, req)).toMatchObject({
      status: 200,
      body: { statuses: [{ code: 'OK', limitRemaining: 2, durationUntilReset: '60s' }] },
    });
  });

  it('finds key_value first, then a wildcard value, then the bare key; unmatched descriptors are OK', async () => {
    clock.set(T0);
    const a = await caller();
    const special = await answer(a.auth, {
      domain: 'edge',
      descriptors: [desc(['remote_address', '10.0.0.1'])],
    });
    expect(special.body.statuses[0]?.currentLimit?.requestsPerUnit).toBe(5);
    const wildcard = await answer(a.auth, {
      domain: 'edge',
      descriptors: [desc(['path', '/api/v1/users']), desc(['path', '/web/index.html'])],
    });
    expect(wildcard.body.statuses).toEqual([
      {
        code: 'OK',
        currentLimit: { requestsPerUnit: 2, unit: 'SECOND' },
        limitRemaining: 1,
        durationUntilReset: '1s',
      },
      { code: 'OK' },
    ]);
    // Wildcard matches share one limit per distinct value, as theirs: another path has its own.
    const other = await answer(a.auth, {
      domain: 'edge',
      descriptors: [desc(['path', '/api/v2/orders'])],
    });
    expect(other.body.statuses[0]?.limitRemaining).toBe(1);
    const nested = await answer(a.auth, {
      domain: 'edge',
      descriptors: [
        desc(['user', 'u1'], ['plan', 'gold']),
        desc(['user', 'u1'], ['plan', 'internal']),
        desc(['user', 'u1']),
        desc(['nothing', 'here']),
      ],
    });
    expect(nested.body.statuses).toEqual([
      {
        code: 'OK',
        currentLimit: { requestsPerUnit: 2, unit: 'HOUR' },
        limitRemaining: 1,
        durationUntilReset: `${3600 - 20}s`,
      },
      // unlimited: OK with the most a uint32 holds left, as envoyproxy/ratelimit answers it.
      { code: 'OK', limitRemaining: 4_294_967_295 },
      { code: 'OK' },
      { code: 'OK' },
    ]);
    // An unknown domain limits nothing (as envoyproxy/ratelimit): every descriptor OK.
    const unknown = await answer(a.auth, {
      domain: 'nowhere',
      descriptors: [desc(['remote_address', addr()])],
    });
    expect(unknown).toMatchObject({
      status: 200,
      body: { overallCode: 'OK', statuses: [{ code: 'OK' }] },
    });
    expect(unknown.headers.ratelimit).toBeUndefined();
    // Neither passes unseen: both are counted, by reason.
    const text = await t.deps.metrics.registry.metrics();
    expect(text).toMatch(
      /gateway_ratelimit_envoy_unmatched_total\{reason="unknown_domain"\} [1-9]/,
    );
    expect(text).toMatch(/gateway_ratelimit_envoy_unmatched_total\{reason="no_limit"\} [1-9]/);
  });

  it('is over the limit when any descriptor is; each descriptor counts on its own', async () => {
    clock.set(T0);
    const a = await caller();
    const ip = addr();
    const user = `u-${addr()}`;
    const req = {
      domain: 'edge',
      descriptors: [desc(['remote_address', ip]), desc(['user', user], ['plan', 'free'])],
    };
    await call(a.auth, req);
    await call(a.auth, req);
    const third = await answer(a.auth, req);
    expect(third.status).toBe(429);
    expect(third.body.overallCode).toBe('OVER_LIMIT');
    expect(third.body.statuses.map((s) => s.code)).toEqual(['OK', 'OVER_LIMIT']);
    // The address's limit counted the third request (unlike /_check's atomic default).
    const alone = await answer(a.auth, {
      domain: 'edge',
      descriptors: [desc(['remote_address', ip])],
    });
    expect(alone.status).toBe(429);
    // The headers list both limits; Retry-After is the denied one's.
    expect(third.headers['ratelimit-policy']).toBe(
      '"edge.remote_address";q=3;w=60, "edge.user.plan";q=2;w=3600',
    );
    expect(third.headers['retry-after']).toBe(String(3600 - 20));
  });

  it('shadow_mode answers OK and records what it would have denied', async () => {
    clock.set(T0);
    const a = await caller();
    const req = { domain: 'edge', descriptors: [desc(['shadow', addr()])] };
    expect((await answer(a.auth, req)).status).toBe(200);
    const second = await answer(a.auth, req);
    expect(second.status).toBe(200);
    expect(second.body.statuses[0]?.code).toBe('OK');
    expect(await t.deps.metrics.registry.metrics()).toMatch(
      /gateway_ratelimit_decisions_total\{policy="edge\.shadow",outcome="shadow_denied"\} [1-9]/,
    );
  });

  it('requests_per_unit 0 is always over, without counting', async () => {
    clock.set(T0);
    const a = await caller();
    const res = await answer(a.auth, { domain: 'edge', descriptors: [desc(['blocked', 'x'])] });
    expect(res.status).toBe(429);
    // Decided without Redis, and still in the decisions metric like any other denial.
    expect(await t.deps.metrics.registry.metrics()).toMatch(
      /gateway_ratelimit_decisions_total\{policy="edge\.blocked",outcome="denied"\} [1-9]/,
    );
    expect(res.body.statuses[0]).toEqual({
      code: 'OVER_LIMIT',
      currentLimit: { unit: 'MINUTE' },
      durationUntilReset: '40s',
    });
  });

  it('hits_addend (either name) counts that many; more than the limit is over without using it', async () => {
    clock.set(T0);
    const a = await caller();
    const id = addr();
    const req = (extra: object) => ({
      domain: 'edge',
      descriptors: [desc(['bulk', id])],
      ...extra,
    });
    expect((await answer(a.auth, req({ hits_addend: 4 }))).body.statuses[0]?.limitRemaining).toBe(
      6,
    );
    expect((await answer(a.auth, req({ hitsAddend: 0 }))).body.statuses[0]?.limitRemaining).toBe(5);
    const tooMany = await answer(a.auth, req({ hitsAddend: 11 }));
    expect(tooMany.status).toBe(429);
    expect(tooMany.body.statuses[0]?.code).toBe('OVER_LIMIT');
    // A descriptor's own hits_addend wins over the request's.
    const own = await answer(a.auth, {
      domain: 'edge',
      hitsAddend: 5,
      descriptors: [{ ...desc(['bulk', id]), hits_addend: 2 }],
    });
    expect(own.body.statuses[0]?.limitRemaining).toBe(3);
    const rest = await answer(a.auth, req({ hitsAddend: 4 }));
    expect(rest.status).toBe(429);
    // The denied 4 used nothing: 3 still fit.
    expect((await answer(a.auth, req({ hitsAddend: 3 }))).status).toBe(200);
  });

  it('a limit named in replaces gives way; a descriptor limit overrides the configuration', async () => {
    clock.set(T0);
    const a = await caller();
    const id = addr();
    const both = { domain: 'edge', descriptors: [desc(['key1', id]), desc(['key2', 'value2'])] };
    const r1 = await answer(a.auth, both);
    expect(r1.body.statuses[0]).toEqual({ code: 'OK' });
    expect(r1.body.statuses[1]?.currentLimit?.requestsPerUnit).toBe(2);
    // limit1 (1 per minute) was not counted: alone, key1 is still allowed once.
    expect(
      (await answer(a.auth, { domain: 'edge', descriptors: [desc(['key1', id])] })).status,
    ).toBe(200);

    const ip = addr();
    const dynamic = {
      domain: 'edge',
      descriptors: [
        { ...desc(['remote_address', ip]), limit: { requests_per_unit: 1, unit: 'SECOND' } },
      ],
    };
    const d1 = await answer(a.auth, dynamic);
    expect(d1.body.statuses[0]).toEqual({
      code: 'OK',
      currentLimit: { requestsPerUnit: 1, unit: 'SECOND' },
      durationUntilReset: '1s',
    });
    expect((await answer(a.auth, dynamic)).status).toBe(429);
    // The proto enum's number works too (2: MINUTE).
    const numbered = await answer(a.auth, {
      domain: 'edge',
      descriptors: [
        { ...desc(['remote_address', addr()]), limit: { requestsPerUnit: 7, unit: 2 } },
      ],
    });
    expect(numbered.body.statuses[0]?.currentLimit).toEqual({ requestsPerUnit: 7, unit: 'MINUTE' });
  });

  it('answers bad requests with a 400 problem and counts nothing', async () => {
    clock.set(T0);
    const a = await caller();
    const id = addr();
    const good = desc(['remote_address', id]);
    const bad: [unknown, string][] = [
      [{ descriptors: [good] }, 'body.domain'],
      [{ domain: '', descriptors: [good] }, 'body.domain'],
      [{ domain: 'edge', descriptors: [] }, 'body.descriptors'],
      [{ domain: 'edge', descriptors: [{ entries: [] }] }, 'body.descriptors[0].entries'],
      [
        { domain: 'edge', descriptors: [{ entries: [{ value: 'x' }] }] },
        'body.descriptors[0].entries[0].key',
      ],
      [{ domain: 'edge', descriptors: [good], hitsAddend: 1, hits_addend: 1 }, 'body.hits_addend'],
      [{ domain: 'edge', descriptors: [good], hitsAddend: -1 }, 'body.hitsAddend'],
      [{ domain: 'edge', descriptors: [good], extra: true }, 'body'],
      [{ domain: 'edge', descriptors: Array.from({ length: 65 }, () => good) }, 'body.descriptors'],
      [
        {
          domain: 'edge',
          descriptors: [{ ...good, limit: { requestsPerUnit: 1, unit: 'FORTNIGHT' } }],
        },
        'body.descriptors[0].limit.unit',
      ],
      [
        { domain: 'edge', descriptors: [{ ...good, limit: { requestsPerUnit: 1, unit: 9 } }] },
        'body.descriptors[0].limit.unit',
      ],
      [
        { domain: 'edge', descriptors: [good, desc(['remote_address', 'x'.repeat(8193)])] },
        'body.descriptors[1].entries[0].value',
      ],
    ];
    for (const [payload, field] of bad) {
      const p = expectProblem(await call(a.auth, payload), 400, 'VALIDATION_FAILED');
      expect(p.errors?.map((e) => e.field).join(' '), JSON.stringify(payload)).toContain(field);
    }
    const notJson = await t.app.inject({
      method: 'POST',
      url: URL,
      headers: { ...a.auth, 'content-type': 'application/json' },
      payload: '{"domain":',
    });
    expect(notJson.statusCode).toBe(400);
    // Nothing above counted for the good descriptor.
    const after = await answer(a.auth, { domain: 'edge', descriptors: [good] });
    expect(after.body.statuses[0]?.limitRemaining).toBe(2);
  });

  it('keeps long values (headers, paths) apart under a short key', async () => {
    clock.set(T0);
    const a = await caller();
    const long = (end: string) => desc(['remote_address', `${'p'.repeat(4000)}${end}`]);
    const one = await answer(a.auth, { domain: 'edge', descriptors: [long('a'), long('a')] });
    expect(one.body.statuses.map((s) => s.limitRemaining)).toEqual([2, 1]);
    // A value differing only in its last character is another counter.
    const other = await answer(a.auth, { domain: 'edge', descriptors: [long('b')] });
    expect(other.body.statuses[0]?.limitRemaining).toBe(2);
  });

  it('needs ratelimit:check without a policy glob', async () => {
    const a = await caller(['ratelimit:check:login*']);
    expectProblem(
      await call(a.auth, { domain: 'edge', descriptors: [desc(['remote_address', addr()])] }),
      403,
      'SCOPE_MISSING',
    );
  });

  runCommonRouteTests({
    app: () => t,
    scope: 'ratelimit:check',
    wrongScope: 'ratelimit:reset',
    request: (o) => ({
      method: 'POST',
      url: URL,
      headers: o.auth,
      payload: { domain: 'edge', descriptors: [desc(['remote_address', addr()])] },
    }),
    async crossTenant(owner, other) {
      clock.set(T0);
      const ip = addr();
      const req = { domain: 'edge', descriptors: [desc(['remote_address', ip])] };
      for (let i = 0; i < 3; i++) await call(owner.auth, req);
      expect((await answer(owner.auth, req)).status).toBe(429);
      // The same descriptor is another counter for another tenant.
      expect((await answer(other.auth, req)).body.statuses[0]?.limitRemaining).toBe(2);
      expect((await answer(owner.auth, req)).status).toBe(429);
    },
  });
});

describe('the envoy configuration in the policies file', () => {
  it('without an `envoy` list the endpoint is a 404 problem; reloads add it, bad ones keep the last good', async () => {
    const path = writePoliciesFile(['policies: {}']);
    const app = await buildTestApp({ env: { RATELIMIT_POLICIES_FILE: path } });
    try {
      const { auth } = await newTenant(app.deps, ['ratelimit:check']);
      const req = {
        method: 'POST' as const,
        url: URL,
        headers: auth,
        payload: { domain: 'd', descriptors: [desc(['k', addr()])] },
      };
      const missing = expectProblem(await app.app.inject(req), 404, 'POLICY_NOT_FOUND');
      expect(String(missing.detail)).toMatch(/no `envoy` list/);

      writeFileSync(
        path,
        'envoy:\n  - domain: d\n    descriptors:\n      - { key: k, rate_limit: { unit: hour, requests_per_unit: 1 } }\n',
      );
      app.deps.reloadPoliciesFile();
      expect((await app.app.inject(req)).statusCode).toBe(200);
      expect((await app.app.inject(req)).statusCode).toBe(429);

      // A duplicate descriptor: the reload fails naming the file, and the last good one serves.
      writeFileSync(
        path,
        'envoy:\n  - domain: d\n    descriptors:\n      - { key: k }\n      - { key: k }\n',
      );
      expect(() => app.deps.reloadPoliciesFile()).toThrow(
        /policies\.yaml: envoy\[0\]\.descriptors\[1\]: duplicate descriptor composite key 'd\.k'/,
      );
      expect((await app.app.inject(req)).statusCode).toBe(429);
    } finally {
      await app.close();
    }
  });
});

describe('envoyOptions: what the gateway adds to an envoy domain', () => {
  const lines = [
    'envoy:',
    '  - domain: leased',
    '    descriptors:',
    '      - key: remote_address',
    '        rate_limit: { unit: minute, requests_per_unit: 200 }',
    '  - domain: strict',
    '    descriptors:',
    '      - key: remote_address',
    '        rate_limit: { unit: minute, requests_per_unit: 200 }',
    '  - domain: plain',
    '    descriptors:',
    '      - key: remote_address',
    '        rate_limit: { unit: minute, requests_per_unit: 200 }',
    'envoyOptions:',
    // The counting below must not depend on a busy host answering within 50 ms.
    '  leased: { leaseMs: 5000, timeoutMs: 5000 }',
    '  strict: { failureMode: closed }',
  ];

  it('leases: two replicas admit exactly the window’s limit, most of it without Redis', async () => {
    const path = writePoliciesFile(lines);
    const own = manualClock(T0);
    const apps = [
      await buildTestApp({ clock: own, env: { RATELIMIT_POLICIES_FILE: path } }),
      await buildTestApp({ clock: own, env: { RATELIMIT_POLICIES_FILE: path } }),
    ];
    try {
      const { auth } = await newTenant(apps[0]!.deps, ['ratelimit:check']);
      const req = { domain: 'leased', descriptors: [desc(['remote_address', addr()])] };
      const send = (i: number) =>
        apps[i % 2]!.app.inject({ method: 'POST', url: URL, headers: auth, payload: req });
      // Both replicas, 4 calls in flight, until each has denied 20 in a row: by then neither
      // holds a unit of its leases (the clock stands still, so no lease ends unused).
      let allowed = 0;
      const deniedInARow = [0, 0];
      for (let round = 0; deniedInARow.some((n) => n < 20) && round < 200; round++) {
        const answers = await Promise.all([0, 1, 2, 3].map((j) => send(round * 4 + j)));
        answers.forEach((res, j) => {
          expect([200, 429]).toContain(res.statusCode);
          if (res.statusCode === 200) {
            allowed++;
            deniedInARow[j % 2] = 0;
          } else {
            deniedInARow[j % 2]! += 1;
          }
        });
      }
      expect(deniedInARow.every((n) => n >= 20)).toBe(true);
      expect(allowed).toBe(200);
      expect((await leaseUnits(apps)).used).toBeGreaterThan(100);
    } finally {
      await Promise.all(apps.map((a) => a.close()));
    }
  });

  it("a domain's failureMode decides when Redis is not asked; the other domains keep theirs", async () => {
    const path = writePoliciesFile(lines);
    const app = await buildTestApp({ clock, env: { RATELIMIT_POLICIES_FILE: path } });
    try {
      const { auth } = await newTenant(app.deps, ['ratelimit:check']);
      const ask = (domain: string) =>
        app.app.inject({
          method: 'POST',
          url: URL,
          headers: auth,
          payload: { domain, descriptors: [desc(['remote_address', addr()])] },
        });
      // While the replica sheds load, no decision goes to Redis: the failure mode decides.
      app.deps.lifecycle.overloaded = true;
      try {
        expectProblem(await ask('strict'), 503, 'OVERLOADED');
        const open = await ask('plain');
        expect(open.statusCode).toBe(200);
        expect(open.headers['x-ratelimit-degraded']).toBe('true');
      } finally {
        app.deps.lifecycle.overloaded = false;
      }
      expect((await ask('strict')).statusCode).toBe(200);
    } finally {
      await app.close();
    }
  });

  it('refuses a file whose envoyOptions name no domain of its list, and keeps the last good one', async () => {
    const path = writePoliciesFile(lines);
    const app = await buildTestApp({ clock, env: { RATELIMIT_POLICIES_FILE: path } });
    try {
      writeFileSync(path, [...lines, '  stritc: { failureMode: closed }', ''].join('\n'));
      expect(() => app.deps.reloadPoliciesFile()).toThrow(
        /policies\.yaml: envoyOptions\.stritc: no domain 'stritc' in the envoy list/,
      );
      writeFileSync(path, 'envoyOptions:\n  strict: { failureMode: closed }\n');
      expect(() => app.deps.reloadPoliciesFile()).toThrow(/envoyOptions: there is no envoy list/);
      const { auth } = await newTenant(app.deps, ['ratelimit:check']);
      const res = await app.app.inject({
        method: 'POST',
        url: URL,
        headers: auth,
        payload: { domain: 'strict', descriptors: [desc(['remote_address', addr()])] },
      });
      expect(res.statusCode).toBe(200);
    } finally {
      await app.close();
    }
  });
});
