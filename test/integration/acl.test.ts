/**
 * deploy/redis/users.acl, enforced by real Redis: the gateway user can do its job (every other
 * integration test logs in as it) and nothing more; the other users only theirs. A user without
 * +info, or set up from an older gateway line, stops the gateway at its start.
 */
import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.js';
import { createDeps } from '../../src/deps.js';
import { adminRedis, seriesBy, testEnv, useTestApp } from '../harness/app.js';
import { GATEWAY_USER, HOST, aclPassword } from '../harness/topology.js';

const t = useTestApp();

async function login(port: number, username: string, password: string): Promise<Redis> {
  const c = new Redis({
    host: HOST,
    port,
    username,
    password,
    lazyConnect: true,
    enableOfflineQueue: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  await c.connect();
  return c;
}

function masterPort(): number {
  return (t.deps.redis.primary.stream as { remotePort: number }).remotePort;
}

async function refused(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
  } catch (err) {
    return (err as Error).message;
  }
  return 'allowed';
}

describe('the gateway user', () => {
  it('is refused FLUSHALL, FLUSHDB, CONFIG, KEYS, DEBUG, ACL, MONITOR and SCRIPT FLUSH', async () => {
    const g = await login(masterPort(), GATEWAY_USER.username, GATEWAY_USER.password);
    try {
      for (const args of [
        ['FLUSHALL'],
        ['FLUSHDB'],
        ['CONFIG', 'GET', 'maxmemory'],
        ['KEYS', '*'],
        ['DEBUG', 'SLEEP', '0'],
        ['ACL', 'LIST'],
        ['SCRIPT', 'FLUSH'],
        ['CLIENT', 'KILL', 'ID', '1'],
        ['SLAVEOF', 'NO', 'ONE'],
      ]) {
        // DEBUG is also off server-wide (enable-debug-command no); either refusal will do.
        expect(
          await refused(() => g.call(args[0] as string, ...args.slice(1))),
          args.join(' '),
        ).toMatch(/NOPERM|DEBUG command not allowed/);
      }
    } finally {
      g.disconnect();
    }
  });

  it('reaches tenant keys and _gw: keys only', async () => {
    const g = await login(masterPort(), GATEWAY_USER.username, GATEWAY_USER.password);
    try {
      expect(await g.set('acltest:cache:k', 'v', 'EX', 10)).toBe('OK');
      expect(await g.exists('_gw:tenants')).toBeGreaterThanOrEqual(0);
      for (const key of ['Zupper:x', '_other:x', '{x}', '-x', ':x', '']) {
        expect(await refused(() => g.set(key, 'v')), key).toMatch(/NOPERM/);
      }
      // Scripts are checked command by command.
      expect(
        await refused(() => g.eval("return redis.call('SET', KEYS[1], 'v')", 1, '_other:x')),
      ).toMatch(/NOPERM|No permissions/);
      expect(await refused(() => g.subscribe('other-channel'))).toMatch(/NOPERM/);
    } finally {
      g.disconnect();
    }
  });
});

describe('the other users', () => {
  it('default is off; replica, sentinel and monitor users cannot read keys', async () => {
    const port = masterPort();
    const anonymous = new Redis({
      host: HOST,
      port,
      enableReadyCheck: false,
      lazyConnect: true,
      retryStrategy: () => null,
    });
    anonymous.on('error', () => undefined);
    await anonymous.connect();
    expect(await refused(() => anonymous.ping())).toMatch(/NOAUTH/);
    expect(await refused(() => anonymous.call('AUTH', 'default', 'anything'))).toMatch(/WRONGPASS/);
    anonymous.disconnect();
    for (const user of ['replica', 'sentinel', 'monitor']) {
      const c = await login(port, user, aclPassword(user));
      try {
        expect(await refused(() => c.get('acltest:cache:k')), user).toMatch(/NOPERM/);
        expect(await refused(() => c.call('FLUSHALL')), user).toMatch(/NOPERM/);
      } finally {
        c.disconnect();
      }
    }
    const monitor = await login(port, 'monitor', aclPassword('monitor'));
    expect(await monitor.info('replication')).toContain('role:master');
    monitor.disconnect();
  });
});

describe('a Redis user without +info', () => {
  it('stops the gateway at start instead of running unable to tell a master from a replica', async () => {
    const admin = await adminRedis(t);
    await admin.call(
      'ACL',
      'SETUSER',
      'noinfo',
      'on',
      '>noinfo-password',
      '~*',
      '&*',
      '+@all',
      '-info',
    );
    admin.disconnect();
    const config = parseConfig(
      testEnv({
        REDIS_USERNAME: 'noinfo',
        REDIS_PASSWORD: 'noinfo-password',
        CACHE_LOCAL_MAX_BYTES: '0',
      }),
    );
    let fatal: Error | undefined;
    const deps = createDeps(config, pino({ level: 'silent' }), { onFatal: (err) => (fatal = err) });
    try {
      const deadline = Date.now() + 5000;
      while (fatal === undefined && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      expect(fatal?.message).toMatch(/may not run INFO/);
      expect(deps.redis.everReady()).toBe(false);
    } finally {
      await deps.close();
    }
  });
});

describe('a Redis user set up from an older ACL line', () => {
  it('stops the gateway at its first connection, naming what the user lacks', async () => {
    const admin = await adminRedis(t);
    // The gateway line of users.acl without +getrange (added for exact invalidation by tag).
    const line = readFileSync(new URL('../../deploy/redis/users.acl', import.meta.url), 'utf8')
      .split('\n')
      .find((l) => l.startsWith('user gateway '));
    const rules = (line ?? '')
      .split(' ')
      .slice(2)
      .filter((r) => !r.startsWith('>') && r !== '+getrange');
    expect(rules).toContain('+get');
    await admin.call('ACL', 'SETUSER', 'oldacl', 'reset', '>oldacl-password', ...rules);
    admin.disconnect();
    const config = parseConfig(
      testEnv({
        REDIS_USERNAME: 'oldacl',
        REDIS_PASSWORD: 'oldacl-password',
        CACHE_LOCAL_MAX_BYTES: '0',
      }),
    );
    let fatal: Error | undefined;
    const logs: string[] = [];
    const logger = pino({ level: 'error' }, { write: (line: string) => void logs.push(line) });
    const deps = createDeps(config, logger, { onFatal: (err) => (fatal = err) });
    try {
      const deadline = Date.now() + 5000;
      while (fatal === undefined && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      expect(fatal?.message).toMatch(/lacks \+getrange:/);
      expect(fatal?.message).not.toMatch(/\+get |\+set /);
      expect(logs.some((l) => l.includes('redis user lacks permissions'))).toBe(true);
      expect((await seriesBy(deps.metrics.redisSettingOk, 'setting')).acl).toBe(0);
    } finally {
      await deps.close();
      const cleanup = await adminRedis(t);
      await cleanup.call('ACL', 'DELUSER', 'oldacl');
      cleanup.disconnect();
    }
  });
});
