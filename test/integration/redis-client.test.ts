/**
 * The request-path client writes the commands of one event-loop turn in one socket write, and
 * `atEndOfTurn` tasks send theirs in that same write, against real Redis.
 */
import { describe, expect, it } from 'vitest';
import { useTestApp } from '../harness/app.js';

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
