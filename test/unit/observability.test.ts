import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { lazyChildLoggerFactory } from '../../src/http/logging.js';
import { FastCounter, FastHistogram } from '../../src/observability/fast-metrics.js';

describe('FastHistogram', () => {
  it('renders exactly what prom-client renders for the same observations', async () => {
    const buckets = [0.001, 0.01, 0.1, 1];
    const ours = new Registry();
    const theirs = new Registry();
    const fast = new FastHistogram(
      'h_seconds',
      'help',
      ['route', 'code'] as const,
      buckets,
    ).register(ours);
    const ref = new Histogram({
      name: 'h_seconds',
      help: 'help',
      labelNames: ['route', 'code'],
      buckets,
      registers: [theirs],
    });
    const samples: [string, string, number][] = [
      ['/a', '200', 0.0005],
      ['/a', '200', 0.001],
      ['/a', '200', 0.05],
      ['/a', '500', 2],
      ['/b', '200', 0.2],
    ];
    const child = fast.child({ route: '/a', code: '200' });
    for (const [route, code, v] of samples) {
      if (route === '/a' && code === '200') fast.observeSeries(child, v);
      else fast.observe({ route, code }, v);
      ref.observe({ route, code }, v);
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
  });
});

describe('FastCounter', () => {
  it('counts per label set and renders as a counter', async () => {
    const reg = new Registry();
    const c = new FastCounter('c_total', 'help', ['op'] as const).register(reg);
    const get = c.child({ op: 'get' });
    get.inc();
    get.inc(2);
    c.child({ op: 'put' }).inc();
    const text = await reg.metrics();
    expect(text).toContain('# TYPE c_total counter');
    expect(text).toContain('c_total{op="get"} 3');
    expect(text).toContain('c_total{op="put"} 1');
    expect(c.child({ op: 'get' })).toBe(get);
  });
});

describe('lazy request logger', () => {
  function capture(level: string) {
    const lines: Record<string, unknown>[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        cb();
      },
    });
    return { logger: pino({ level }, stream), lines };
  }

  it('writes with the request bindings when the level is enabled, nothing otherwise', async () => {
    const { logger, lines } = capture('info');
    const child = lazyChildLoggerFactory.call(
      undefined as never,
      logger,
      { reqId: 'r-1' },
      {},
      undefined as never,
    );
    child.debug('hidden');
    child.info({ a: 1 }, 'shown');
    child.error('failed');
    await new Promise((r) => setImmediate(r));
    expect(lines.map((l) => [l.msg, l.reqId])).toEqual([
      ['shown', 'r-1'],
      ['failed', 'r-1'],
    ]);
    expect(lines[0]?.a).toBe(1);
    expect(child.level).toBe('info');
    expect(child.child({ x: 2 }).level).toBe('info');
  });
});
