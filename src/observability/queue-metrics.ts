/**
 * Queue metrics. Queue, group and consumer names are tenant data and never labels: these are
 * totals over every queue, enough to alert on dead-lettering, redelivery storms and an exhausted
 * long-poll pool. Per-queue depth and lag are answered by GET /v1/queues/{name}.
 */
import { Gauge, type Registry } from 'prom-client';
import { type CounterSeries, FastCounter } from './fast-metrics.js';

export interface QueueMetrics {
  /** published, deduplicated, delivered, redelivered, acked, nacked, dead_lettered, redriven. */
  message(event: string, n: number): void;
  /** woken, timeout, degraded (no blocking connection free: answered without waiting). */
  longPoll(result: string): void;
  /** Reports the blocking pool's size and use at scrape time. */
  watchPool(pool: { size: number; inUse(): number }): void;
}

export function createQueueMetrics(registry: Registry): QueueMetrics {
  const messages = new FastCounter(
    'gateway_queue_messages_total',
    'Queue messages by event: published, deduplicated (a repeated dedupId, nothing added), delivered (first receive), redelivered (after a visibility timeout or nack), acked, nacked, dead_lettered (moved to <name>.dlq after QUEUE_MAX_RECEIVE_COUNT receives), redriven.',
    ['event'] as const,
  ).register(registry);
  const polls = new FastCounter(
    'gateway_queue_long_polls_total',
    'Receives that waited: woken (a message arrived), timeout (none within waitMs), degraded (no long-poll connection free: answered at once).',
    ['result'] as const,
  ).register(registry);
  const seriesOf = <L extends string>(c: FastCounter<L>, label: L) => {
    const cache = new Map<string, CounterSeries>();
    return (value: string, n = 1) => {
      let s = cache.get(value);
      if (s === undefined) {
        s = c.child({ [label]: value } as Record<L, string>);
        cache.set(value, s);
      }
      s.inc(n);
    };
  };
  const message = seriesOf(messages, 'event');
  const poll = seriesOf(polls, 'result');
  let pool: { size: number; inUse(): number } | undefined;
  new Gauge({
    name: 'gateway_queue_blocking_connections',
    help: 'Long-poll connections: size (QUEUE_BLOCKING_CONNECTIONS) and in_use (blocked in a wait now).',
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      this.set({ state: 'size' }, pool?.size ?? 0);
      this.set({ state: 'in_use' }, pool?.inUse() ?? 0);
    },
  });
  return {
    message: (event, n) => message(event, n),
    longPoll: (result) => poll(result),
    watchPool(p) {
      pool = p;
    },
  };
}
