/**
 * The sentinel probe (src/redis/sentinel-probe.ts) against the real sentinels of the integration
 * topology and fakes for what only a broken deployment answers: a closed port, a sentinel that
 * never replies, one that monitors no such master, one that refuses the login, and a stale one
 * naming a replica. And RELIABILITY.md scenario 6's wrong-role answer: a gateway whose first
 * sentinel names a replica ends up on the master and serves writes.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  type SentinelReport,
  failoverPossible,
  mastersNamed,
  startSentinelProbe,
} from '../../src/redis/sentinel-probe.js';
import { type MockSentinel, startMockSentinel } from '../harness/mock-sentinel.js';
import { body, buildTestApp, newTenant, seriesBy } from '../harness/app.js';
import { HOST, freePort, rawCommand } from '../harness/topology.js';

const { sentinels, masterName } = inject('redis');
const real = sentinels[0]!;
const name = (s: { host: string; port: number }) => `${s.host}:${s.port}`;

let master: string;
let replica: { host: string; port: number };
let closedPort: number;
const mocks: Record<string, MockSentinel> = {};

beforeAll(async () => {
  const m = (await rawCommand(real.port, 'SENTINEL', 'get-master-addr-by-name', masterName)) as [
    string,
    string,
  ];
  master = `${m[0]}:${m[1]}`;
  const replicas = (await rawCommand(real.port, 'SENTINEL', 'replicas', masterName)) as string[][];
  const fields = (r: string[]) =>
    Object.fromEntries(r.flatMap((v, i) => (i % 2 ? [] : [[v, r[i + 1]]])));
  const first = fields(replicas[0]!);
  replica = { host: first.ip!, port: Number(first.port) };
  closedPort = await freePort();
  mocks.stale = await startMockSentinel({ kind: 'master', ...replica });
  mocks.none = await startMockSentinel({ kind: 'none' });
  mocks.refusing = await startMockSentinel({
    kind: 'error',
    message:
      "NOPERM User gateway has no permissions to run the 'sentinel|get-master-addr-by-name' command",
  });
  mocks.silent = await startMockSentinel({ kind: 'silent' });
  mocks.cutOff = await startMockSentinel({
    kind: 'master',
    host: master.split(':')[0]!,
    port: Number(master.split(':')[1]),
    noQuorum: true,
  });
});

afterAll(async () => {
  await Promise.all(Object.values(mocks).map((m) => m.close()));
});

describe('sentinel probe', () => {
  it('reports each sentinel: ok with its master and quorum, unreachable, silent, no such master, refused; and when they disagree', async () => {
    const changes: [string, string, string | undefined][] = [];
    const rounds: (readonly SentinelReport[])[] = [];
    const list = [
      real,
      { host: HOST, port: closedPort },
      mocks.silent!,
      mocks.none!,
      mocks.refusing!,
      mocks.stale!,
      mocks.cutOff!,
    ];
    const probe = startSentinelProbe({
      sentinels: list,
      masterName,
      timeoutMs: 300,
      intervalMs: 60_000,
      onChange: (r, previous) => changes.push([r.sentinel, r.state, previous]),
      onRound: (r) => rounds.push(r),
    });
    try {
      const started = Date.now();
      const reports = await probe.probe();
      // The silent one costs the timeout, not more; the others answer at once.
      expect(Date.now() - started).toBeLessThan(2000);
      expect(reports.map((r) => [r.sentinel, r.state, r.master, r.quorum])).toEqual([
        [name(real), 'ok', master, true],
        [`${HOST}:${closedPort}`, 'unreachable', undefined, undefined],
        [name(mocks.silent!), 'unreachable', undefined, undefined],
        [name(mocks.none!), 'unknown-master', undefined, undefined],
        [name(mocks.refusing!), 'refused', undefined, undefined],
        [name(mocks.stale!), 'ok', name(replica), true],
        [name(mocks.cutOff!), 'ok', master, false],
      ]);
      expect(reports[6]!.detail).toMatch(/^NOQUORUM 1 usable Sentinels/);
      // One sentinel that can get a failover authorized is enough; all that say must say no.
      expect(failoverPossible(reports)).toBe(true);
      expect(failoverPossible(reports.slice(1))).toBe(true);
      expect(failoverPossible([reports[6]!, reports[1]!])).toBe(false);
      expect(failoverPossible(reports.slice(1, 5))).toBeUndefined();
      expect(reports[1]!.detail).toMatch(/ECONNREFUSED/);
      expect(reports[2]!.detail).toMatch(/timed out/i);
      expect(reports[3]!.detail).toContain(`no master named "${masterName}"`);
      expect(reports[4]!.detail).toMatch(/^NOPERM/);
      expect(mastersNamed(reports)).toBe(2);
      expect(probe.last()).toBe(reports);
      // The first round reports every sentinel that is not ok, once; nothing for those that are.
      expect(changes).toEqual([
        [`${HOST}:${closedPort}`, 'unreachable', undefined],
        [name(mocks.silent!), 'unreachable', undefined],
        [name(mocks.none!), 'unknown-master', undefined],
        [name(mocks.refusing!), 'refused', undefined],
      ]);
      // A second round with the same answers reports no change.
      await probe.probe();
      expect(changes).toHaveLength(4);
      expect(rounds).toHaveLength(2);
      // Each probe asked once, on a connection of its own, and let it go.
      expect(mocks.none!.commands.filter((c) => c[0] === 'SENTINEL')).toHaveLength(2);
    } finally {
      probe.stop();
    }
  });

  it('feeds the metrics and /readyz?verbose', async () => {
    const gw = await buildTestApp({
      sentinels: [...sentinels, { host: HOST, port: closedPort }],
      env: { REDIS_SENTINEL_PROBE_INTERVAL_MS: '100' },
    });
    try {
      const closed = `${HOST}:${closedPort}`;
      await expect
        .poll(async () => (await gw.deps.metrics.sentinelUp.get()).values.length, { timeout: 5000 })
        .toBe(sentinels.length + 1);
      expect(await seriesBy(gw.deps.metrics.sentinelUp, 'sentinel')).toEqual({
        ...Object.fromEntries(sentinels.map((s) => [name(s), 1])),
        [closed]: 0,
      });
      expect((await gw.deps.metrics.sentinelMasters.get()).values[0]?.value).toBe(1);
      // The real sentinels can get a failover authorized; the closed port said nothing.
      expect(await seriesBy(gw.deps.metrics.sentinelQuorum, 'sentinel')).toEqual(
        Object.fromEntries(sentinels.map((s) => [name(s), 1])),
      );
      const res = await gw.app.inject({ method: 'GET', url: '/readyz?verbose' });
      expect(res.statusCode).toBe(200);
      const checks = body<{ checks: Record<string, string> }>(res).checks;
      // By position and state only: no address or error text on the unauthenticated port.
      expect(Object.entries(checks).filter(([k]) => k.startsWith('redis.sentinel'))).toEqual([
        ...sentinels.map((_, i) => [`redis.sentinel.${i + 1}`, 'ok']),
        [`redis.sentinel.${sentinels.length + 1}`, 'unreachable'],
      ]);
      expect(res.body).not.toContain(String(closedPort));
    } finally {
      await gw.close();
    }
  });

  it('is off with REDIS_SENTINEL_PROBE_INTERVAL_MS=0', async () => {
    const gw = await buildTestApp({ env: { REDIS_SENTINEL_PROBE_INTERVAL_MS: '0' } });
    try {
      expect(gw.deps.sentinels).toBeUndefined();
      expect((await gw.deps.metrics.sentinelUp.get()).values).toEqual([]);
    } finally {
      await gw.close();
    }
  });
});

describe('a stale sentinel first in REDIS_SENTINELS (RELIABILITY.md scenario 6)', () => {
  it('its replica is refused for the role, the next sentinel names the master, and writes succeed', async () => {
    const asked = () =>
      mocks.stale!.commands.filter((c) => c[0] === 'SENTINEL' && c[1] === 'get-master-addr-by-name')
        .length;
    const before = asked();
    const gw = await buildTestApp({
      sentinels: [mocks.stale!, ...sentinels],
      env: { REDIS_SENTINEL_PROBE_INTERVAL_MS: '0' },
    });
    try {
      expect(asked()).toBeGreaterThan(before);
      const socket = gw.deps.redis.primary.stream;
      expect(`${socket.remoteAddress}:${socket.remotePort}`).toBe(master);
      const { key } = await newTenant(gw.deps, ['cache:read', 'cache:write']);
      const put = await gw.app.inject({
        method: 'PUT',
        url: '/v1/cache/stale-sentinel',
        headers: { authorization: `Bearer ${key}` },
        payload: { value: 'on the master' },
      });
      expect(put.statusCode).toBe(201);
    } finally {
      await gw.close();
    }
  });
});
