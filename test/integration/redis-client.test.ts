/**
 * The request-path client writes the commands of one event-loop turn in one socket write, and
 * `atEndOfTurn` tasks send theirs in that same write; script calls send the script's text once per
 * connection and survive a flushed script cache; against real Redis.
 */
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { type LoadedScript, defineScripts } from '../../src/redis/scripts.js';
import { adminRedis, buildTestApp, newTenant, useTestApp } from '../harness/app.js';

const t = useTestApp();

/** Counts the socket's underlying writes (one per write or writev syscall request). */
function countWrites(): { writes: () => number; restore: () => void } {
  const stream = t.deps.redis.primary.stream as unknown as {
    _write: (...a: unknown[]) => void;
    _writev: ((...a: unknown[]) => void) | undefined;
  };
  const { _write, _writev } = stream;
  let n = 0;
  stream._write = function (this: unknown, ...a: unknown[]) {
    n++;
    return _write.apply(this, a);
  };
  if (_writev !== undefined) {
    stream._writev = function (this: unknown, ...a: unknown[]) {
      n++;
      return _writev.apply(this, a);
    };
  }
  return {
    writes: () => n,
    restore: () => {
      stream._write = _write;
      stream._writev = _writev;
    },
  };
}

describe('request-path client', () => {
  it('sends the commands of one turn in one write, and answers each', async () => {
    const { redis } = t.deps;
    await redis.onMaster((c) => c.ping()); // ready, and nothing pending
    const w = countWrites();
    try {
      const replies = await Promise.all(
        Array.from({ length: 20 }, (_, i) => redis.onMaster((c) => c.ping(`m${i}`))),
      );
      expect(replies).toEqual(Array.from({ length: 20 }, (_, i) => `m${i}`));
      expect(w.writes()).toBe(1);
      // The next turn's commands go out in a write of their own.
      await Promise.all([redis.onMaster((c) => c.ping('a')), redis.onMaster((c) => c.ping('b'))]);
      expect(w.writes()).toBe(2);
    } finally {
      w.restore();
    }
  });

  it('runs atEndOfTurn tasks after the turn, their commands in the same write', async () => {
    const { redis } = t.deps;
    await redis.onMaster((c) => c.ping());
    const w = countWrites();
    try {
      const order: string[] = [];
      let fromTask: Promise<string> | undefined;
      redis.atEndOfTurn(() => {
        order.push('task');
        fromTask = redis.onMaster((c) => c.ping('task'));
      });
      const direct = redis.onMaster((c) => c.ping('direct'));
      order.push('turn');
      expect(fromTask).toBeUndefined();
      expect(await direct).toBe('direct');
      expect(await fromTask).toBe('task');
      expect(order).toEqual(['turn', 'task']);
      expect(w.writes()).toBe(1);
    } finally {
      w.restore();
    }
  });

  it('still runs the other tasks and writes when one task throws', async () => {
    const { redis } = t.deps;
    await redis.onMaster((c) => c.ping());
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown) => uncaught.push(err);
    const listeners = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException');
    process.on('uncaughtException', onUncaught);
    try {
      let second: Promise<string> | undefined;
      redis.atEndOfTurn(() => {
        throw new Error('task failed');
      });
      redis.atEndOfTurn(() => {
        second = redis.onMaster((c) => c.ping('second'));
      });
      await new Promise((r) => setImmediate(r));
      expect(await second).toBe('second');
      await new Promise((r) => setImmediate(r));
      expect(uncaught).toEqual([expect.objectContaining({ message: 'task failed' })]);
    } finally {
      process.off('uncaughtException', onUncaught);
      for (const l of listeners) process.on('uncaughtException', l);
    }
  });
});

const ECHO = 'return {KEYS[1], #KEYS, #ARGV, ARGV[1], ARGV[2], ARGV[3]}';
const TEST_SCRIPTS: LoadedScript[] = [
  { name: 'testEcho', file: 'test/echo-1.lua', numberOfKeys: 1, lua: `-- echo\n${ECHO}` },
  { name: 'testEchoN', file: 'test/echo-n.lua', numberOfKeys: undefined, lua: `-- n\n${ECHO}` },
  {
    name: 'testFail',
    file: 'test/fail-1.lua',
    numberOfKeys: 1,
    lua: "return redis.error_reply('ERR boom ' .. ARGV[1])",
  },
];
type Call = (...args: (string | number | Buffer)[]) => Promise<unknown>;
const call = (c: Redis, name: string): Call => (c as unknown as Record<string, Call>)[name] as Call;

/** What the client writes to its socket, as text, while `fn` runs. */
async function written(c: Redis, fn: () => Promise<unknown>): Promise<string> {
  const stream = c.stream as unknown as { write: (...a: unknown[]) => boolean };
  const write = stream.write;
  let out = '';
  stream.write = function (this: unknown, chunk: unknown, ...rest: unknown[]) {
    out += Buffer.isBuffer(chunk) ? chunk.toString('latin1') : String(chunk);
    return write.call(this, chunk, ...rest);
  };
  try {
    await fn();
  } finally {
    stream.write = write;
  }
  return out;
}

describe('script calls', () => {
  it('pass keys and arguments (numbers and Buffers too), fixed or variadic key counts', async () => {
    const c = await adminRedis(t);
    try {
      defineScripts([c], TEST_SCRIPTS);
      expect(await call(c, 'testEcho')('sc:k', 42, Buffer.from('bytes'), 'x')).toEqual([
        'sc:k',
        1,
        3,
        '42',
        'bytes',
        'x',
      ]);
      expect(await call(c, 'testEchoN')(2, 'sc:a', 'sc:b', 1.5)).toEqual(['sc:a', 2, 1, '1.5']);
      // A script's own error is the caller's, sent once.
      const w = await written(c, () =>
        expect(call(c, 'testFail')('sc:k', 'now')).rejects.toThrow('ERR boom now'),
      );
      expect(w.match(/\r\neval(sha)?\r\n/g)).toHaveLength(1);
    } finally {
      c.disconnect();
    }
  });

  it('send the text once per connection, then the digest, and survive a flushed script cache', async () => {
    const c = await adminRedis(t);
    try {
      defineScripts([c], TEST_SCRIPTS);
      const echo = call(c, 'testEcho');
      const first = await written(c, () => echo('sc:k', 1));
      expect(first).toContain('\r\neval\r\n');
      expect(first).toContain(ECHO);
      const second = await written(c, () => echo('sc:k', 2));
      expect(second).toContain('\r\nevalsha\r\n');
      expect(second).not.toContain(ECHO);

      // The server forgets every script (a restart or a failover to a fresh master does too):
      // the digest gets NOSCRIPT, and the call is sent again with the text, once.
      await c.call('SCRIPT', 'FLUSH');
      let answer: unknown;
      const third = await written(c, async () => {
        answer = await echo('sc:k', 3);
      });
      expect(answer).toEqual(['sc:k', 1, 1, '3']);
      expect(third.match(/\r\nevalsha\r\n/g)).toHaveLength(1);
      expect(third.match(/\r\neval\r\n/g)).toHaveLength(1);
      const fourth = await written(c, () => echo('sc:k', 4));
      expect(fourth).toContain('\r\nevalsha\r\n');
      expect(fourth).not.toContain(ECHO);
    } finally {
      c.disconnect();
    }
  });
});

describe('script calls in a MULTI or a pipeline', () => {
  it('are queued in it, not sent on their own, and answer in its result', async () => {
    const c = await adminRedis(t);
    try {
      defineScripts([c], TEST_SCRIPTS);
      type Tx = ReturnType<Redis['multi']> & Record<string, Call>;
      for (const make of [() => c.multi() as Tx, () => c.pipeline() as Tx]) {
        const tx = make();
        void (tx.testEcho as Call).call(tx, 'sc:k', 1);
        void (tx.testEchoN as Call).call(tx, 2, 'sc:a', 'sc:b', 'x');
        void (tx.testFail as Call).call(tx, 'sc:k', 'in tx');
        const res = await tx.exec();
        expect(res?.map(([err, value]) => (err ? err.message : value))).toEqual([
          ['sc:k', 1, 1, '1'],
          ['sc:a', 2, 1, 'x'],
          'ERR boom in tx',
        ]);
      }
    } finally {
      c.disconnect();
    }
  });

  it('_mset stores through one MULTI: a failing item fails the request, never a 200', async () => {
    const a = await newTenant(t.deps, ['cache:read', 'cache:write']);
    const admin = await adminRedis(t);
    try {
      // A key of another type where an entry should be: its put fails inside the transaction.
      await admin.sadd(`${a.tenant}:cache:bad`, 'x');
      const res = await t.app.inject({
        method: 'POST',
        url: '/v1/cache/_mset',
        headers: a.auth,
        payload: {
          items: [
            { key: 'good', value: 1 },
            { key: 'bad', value: 2 },
          ],
        },
      });
      expect(res.statusCode, res.body).toBe(500);
    } finally {
      admin.disconnect();
    }
  });
});

describe('a client that ioredis gives up', () => {
  it('is started again: a failover detector cutting a reconnect short does not leave the gateway down', async () => {
    const { redis } = t.deps;
    const { primary } = redis;
    await redis.onMaster((c) => c.ping());
    // What ioredis's failover detector does on +switch-master: it disconnects the connector. If
    // the client is at that moment asking the sentinels for the master (after a lost
    // connection), ioredis fails the connect with "Connection is closed." and ends the client.
    const connector = (primary as unknown as { connector: { disconnect(): void } }).connector;
    let ended = 0;
    const onEnd = () => ended++;
    primary.on('end', onEnd);
    primary.once('connecting', () => connector.disconnect());
    try {
      primary.disconnect(true);
      const deadline = Date.now() + 5000;
      while ((ended === 0 || primary.status !== 'ready') && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(ended).toBe(1);
      expect(primary.status).toBe('ready');
      expect(await redis.onMaster((c) => c.ping())).toBe('PONG');
      expect((await t.app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
    } finally {
      primary.off('end', onEnd);
    }
  });
});

describe('command deadline (REDIS_COMMAND_TIMEOUT_MS)', () => {
  it('fails each pending command at its own deadline; late replies are ignored; the connection stays', async () => {
    const app = await buildTestApp({ env: { REDIS_COMMAND_TIMEOUT_MS: '100' } });
    try {
      const { redis } = app.deps;
      const { primary } = redis;
      // A blocking read holds this connection only (not the shared server): every command behind
      // it waits for its answer too.
      const started = performance.now();
      const settle = (p: Promise<unknown>) =>
        p.then(
          (v) => ({ value: v, at: performance.now() - started }),
          (e: Error) => ({ error: e.message, at: performance.now() - started }),
        );
      const blocked = settle(
        redis.onMaster((c) => c.xread('BLOCK', 400, 'STREAMS', `deadline:${started}`, '$')),
      );
      await new Promise((r) => setTimeout(r, 50));
      const behind = settle(redis.onMaster((c) => c.ping('behind')));
      const [a, b] = await Promise.all([blocked, behind]);
      // Timed out rather than answered: the reply (nil after 400 ms) would have settled them with
      // a value. Only lower bounds on time: a loaded machine can only make the timers later.
      expect(a).toMatchObject({ error: 'Command timed out' });
      expect(a.at).toBeGreaterThanOrEqual(95);
      expect(b).toMatchObject({ error: 'Command timed out' });
      expect(b.at).toBeGreaterThanOrEqual(145);
      // The late replies (nil, PONG) arrive and are dropped; the same connection serves on.
      const stream = primary.stream;
      await new Promise((r) => setTimeout(r, 450 - (performance.now() - started)));
      expect(await redis.onMaster((c) => c.ping('after'))).toBe('after');
      expect(primary.stream).toBe(stream);
      expect(primary.status).toBe('ready');
    } finally {
      await app.close();
    }
  });
});
