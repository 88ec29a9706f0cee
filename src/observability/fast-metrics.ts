/**
 * Prometheus metrics for the per-request hot path, rendered through prom-client's registry.
 *
 * A histogram for the per-request hot path. prom-client's Histogram hashes the label
 * set on every observe(), even through a bound child; this one keeps one array of counts per
 * label set, found by a precomputed string key, so an observation is a bucket search and three
 * increments. It renders through prom-client's registry like any other metric.
 */
import type { Registry } from 'prom-client';

interface Series {
  labels: Record<string, string>;
  counts: number[]; // per bucket, not cumulative; last slot is +Inf
  sum: number;
  count: number;
}

export class FastHistogram<L extends string> {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly series = new Map<string, Series>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly L[],
    private readonly buckets: readonly number[],
  ) {}

  /** The series for a label set; callers keep it to skip even the lookup. */
  child(labels: Record<L, string>): Series {
    const key = this.labelNames.map((l) => labels[l]).join('\u0000');
    let s = this.series.get(key);
    if (s === undefined) {
      s = {
        labels: { ...labels },
        counts: new Array<number>(this.buckets.length + 1).fill(0),
        sum: 0,
        count: 0,
      };
      this.series.set(key, s);
    }
    return s;
  }

  observeSeries(s: Series, value: number): void {
    const b = this.buckets;
    let i = 0;
    while (i < b.length && value > (b[i] as number)) i++;
    s.counts[i] = (s.counts[i] as number) + 1;
    s.sum += value;
    s.count++;
  }

  observe(labels: Record<L, string>, value: number): void {
    this.observeSeries(this.child(labels), value);
  }

  reset(): void {
    this.series.clear();
  }

  /** prom-client's metric contract, used by Registry#metrics(). */
  get(): Promise<{
    name: string;
    help: string;
    type: string;
    aggregator: string;
    values: { labels: Record<string, string | number>; value: number; metricName: string }[];
  }> {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] =
      [];
    for (const s of this.series.values()) {
      let cumulative = 0;
      this.buckets.forEach((le, i) => {
        cumulative += s.counts[i] as number;
        values.push({
          labels: { le, ...s.labels },
          value: cumulative,
          metricName: `${this.name}_bucket`,
        });
      });
      values.push({
        labels: { le: '+Inf', ...s.labels },
        value: s.count,
        metricName: `${this.name}_bucket`,
      });
      values.push({ labels: s.labels, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: s.labels, value: s.count, metricName: `${this.name}_count` });
    }
    return Promise.resolve({
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values,
    });
  }

  register(registry: Registry): this {
    registry.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
    return this;
  }
}

/** One label set of a FastCounter: increment `value` directly, or call inc(). */
export interface CounterSeries {
  readonly labels: Record<string, string>;
  value: number;
  inc(n?: number): void;
}

/**
 * A Prometheus counter whose series are plain objects: the hot path does `series.inc()`, with no
 * label hashing (prom-client's Counter hashes the label set on every inc(), even via labels()).
 */
export class FastCounter<L extends string> {
  readonly type = 'counter';
  readonly aggregator = 'sum';
  private readonly series = new Map<string, CounterSeries>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly L[],
  ) {}

  child(labels: Record<L, string>): CounterSeries {
    const key = this.labelNames.map((l) => labels[l]).join('\u0000');
    let s = this.series.get(key);
    if (s === undefined) {
      s = {
        labels: { ...labels },
        value: 0,
        inc(n = 1) {
          this.value += n;
        },
      };
      this.series.set(key, s);
    }
    return s;
  }

  reset(): void {
    for (const s of this.series.values()) s.value = 0;
  }

  get(): Promise<{
    name: string;
    help: string;
    type: string;
    aggregator: string;
    values: { labels: Record<string, string>; value: number }[];
  }> {
    const values = [...this.series.values()].map((s) => ({ labels: s.labels, value: s.value }));
    return Promise.resolve({
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values,
    });
  }

  register(registry: Registry): this {
    registry.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
    return this;
  }
}
