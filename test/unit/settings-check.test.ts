/**
 * checkRedisSettings reads a master's durability settings from its INFO text: the settings of
 * deploy/redis/redis.conf pass, each one missing is named with what it risks.
 */
import { describe, expect, it } from 'vitest';
import { checkRedisSettings } from '../../src/redis/settings-check.js';

const info = (fields: Record<string, string>) =>
  `# Persistence\r\nloading:0\r\n${Object.entries(fields)
    .map(([k, v]) => `${k}:${v}\r\n`)
    .join('')}# Stats\r\ntotal_connections_received:1\r\n`;

const recommended = {
  aof_enabled: '1',
  maxmemory: '268435456',
  maxmemory_policy: 'noeviction',
  role: 'master',
  min_slaves_good_slaves: '2',
};

describe('checkRedisSettings', () => {
  it('passes the settings of deploy/redis/redis.conf', () => {
    expect(checkRedisSettings(info(recommended))).toEqual([
      { setting: 'persistence', ok: true, detail: 'appendonly yes' },
      { setting: 'eviction', ok: true, detail: 'maxmemory-policy noeviction' },
      { setting: 'min_replicas', ok: true, detail: 'min-replicas-to-write set' },
    ]);
  });

  it('names each risky setting and what it risks', () => {
    const { min_slaves_good_slaves: _, ...withoutMinReplicas } = recommended;
    const checks = checkRedisSettings(
      info({ ...withoutMinReplicas, aof_enabled: '0', maxmemory_policy: 'allkeys-lru' }),
    );
    expect(checks.map((c) => [c.setting, c.ok])).toEqual([
      ['persistence', false],
      ['eviction', false],
      ['min_replicas', false],
    ]);
    expect(checks[0]!.detail).toMatch(/appendonly is off: a master restarted/);
    expect(checks[1]!.detail).toMatch(/^maxmemory-policy is allkeys-lru: .*sessions/);
    expect(checks[2]!.detail).toMatch(/min-replicas-to-write is off/);
  });

  it('takes any policy as safe without a memory limit (nothing is ever evicted)', () => {
    const c = checkRedisSettings(
      info({ ...recommended, maxmemory: '0', maxmemory_policy: 'allkeys-lru' }),
    );
    expect(c[1]).toEqual({ setting: 'eviction', ok: true, detail: 'no maxmemory' });
  });

  it('reads a field only at the start of a line (no prefix or suffix matches)', () => {
    const c = checkRedisSettings(
      info({ ...recommended, aof_enabled: '0', x_aof_enabled: '1', maxmemory_policy_x: 'y' }),
    );
    expect(c[0]!.ok).toBe(false);
    expect(c[1]!.ok).toBe(true);
  });
});
