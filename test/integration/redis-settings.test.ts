/**
 * The master's durability settings, read from INFO at each connection (src/redis/settings-check.ts):
 * the integration topology runs deploy/redis/redis.conf and passes every check; a Redis started
 * without AOF, with an evicting policy and no min-replicas-to-write is reported, setting by
 * setting, in the metrics, /readyz?verbose and the log, and still served.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { body, buildTestApp, newTenant, seriesBy, useTestApp } from '../harness/app.js';
import { HOST, freePort, programPath, rawCommand } from '../harness/topology.js';

const t = useTestApp();

const settingsGauge = (app: { deps: typeof t.deps }) =>
  seriesBy(app.deps.metrics.redisSettingOk, 'setting');

describe('durability settings of the master', () => {
  it('pass with deploy/redis/redis.conf', async () => {
    await expect
      .poll(() => settingsGauge(t))
      .toEqual({
        persistence: 1,
        eviction: 1,
        min_replicas: 1,
        acl: 1,
      });
    const res = await t.app.inject({ method: 'GET', url: '/readyz?verbose' });
    const checks = body<{ checks: Record<string, string> }>(res).checks;
    expect(checks['redis.setting.persistence']).toBe('ok, appendonly yes');
    expect(checks['redis.setting.eviction']).toBe('ok, maxmemory-policy noeviction');
    expect(checks['redis.setting.min_replicas']).toBe('ok, min-replicas-to-write set');
    // deploy/redis/users.acl's gateway line grants every command the gateway needs.
    expect(checks['redis.setting.acl']).toBe('ok, the gateway user has every permission it needs');
  });

  describe('a Redis without AOF, evicting, without min-replicas-to-write', () => {
    let server: ChildProcess;
    let port: number;
    beforeAll(async () => {
      port = await freePort();
      server = spawn(
        programPath('redis-server')!,
        [
          '--port',
          String(port),
          '--bind',
          HOST,
          '--save',
          '',
          '--appendonly',
          'no',
          '--maxmemory',
          '64mb',
          '--maxmemory-policy',
          'allkeys-lru',
        ],
        { stdio: 'ignore' },
      );
      for (
        let i = 0;
        i < 100 && (await rawCommand(port, 'PING').catch(() => 'down')) !== 'PONG';
        i++
      ) {
        await new Promise((r) => setTimeout(r, 50));
      }
    });
    afterAll(() => {
      server?.kill('SIGKILL');
    });

    it('is reported setting by setting, logged, and served all the same', async () => {
      const warnings: Record<string, unknown>[] = [];
      const gw = await buildTestApp({
        env: {
          REDIS_SENTINELS: '',
          REDIS_URL: `redis://${HOST}:${port}`,
          REDIS_USERNAME: '',
          REDIS_PASSWORD: '',
        },
        onLog: (line) => {
          if (line.msg === 'redis setting risks data loss') warnings.push(line);
        },
      });
      try {
        await expect
          .poll(() => settingsGauge(gw))
          .toEqual({
            persistence: 0,
            eviction: 0,
            min_replicas: 0,
            acl: 1, // the default user: every permission
          });
        const res = await gw.app.inject({ method: 'GET', url: '/readyz?verbose' });
        expect(res.statusCode).toBe(200);
        const checks = body<{ checks: Record<string, string> }>(res).checks;
        expect(checks['redis.setting.persistence']).toMatch(/^appendonly is off/);
        expect(checks['redis.setting.eviction']).toMatch(/^maxmemory-policy is allkeys-lru/);
        expect(checks['redis.setting.min_replicas']).toMatch(/^min-replicas-to-write is off/);
        expect(warnings.map((w) => w.setting)).toEqual(['persistence', 'eviction', 'min_replicas']);
        const { key } = await newTenant(gw.deps, ['cache:read', 'cache:write']);
        const put = await gw.app.inject({
          method: 'PUT',
          url: '/v1/cache/k',
          headers: { authorization: `Bearer ${key}` },
          payload: { value: 1 },
        });
        expect(put.statusCode).toBe(201);
      } finally {
        await gw.close();
      }
    });
  });
});
