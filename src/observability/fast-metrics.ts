/**
 * Prometheus metrics for the per-request hot path, rendered through prom-client's registry.
 *
 * prom-client hashes the label set on every observe()/inc(), even through a bound child. Here a
 * label set's series is a plain object found once (callers keep it), so an observation is a few
 * number updates. The metrics render through prom-client's Registry like any other.
 */
import type { Registry } from 'prom-client';

interface MetricValue {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

/** Series bookkeeping and registry plumbing shared by the fast metric types. */
abstract class FastMetric<L extends string, S extends { labels: Record<string, string> }> {
  abstract readonly type: 'counter' | 'histogram';
  readonly aggregator = 'sum';
  protected readonly series = new Map<string, S>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly L[],
  ) {}

  protected abstract newSeries(labels: Record<string, string>): S;
  protected abstract values(): MetricValue[];

  /** The series for a label set; keep it to skip even this lookup on the hot path. */
  child(labels: Record<L, string>): S {
    const key = this.labelNames.map((l) => labels[l]).join('\u0000');
    let s = this.series.get(key);
    if (s === undefined) {
      s = this.newSeries({ ...labels });
      this.series.set(key, s);
    }
    return s;
  }

  /** prom-client's metric contract, used by Registry#metrics(). */
  get(): Promise<{
    name: string;
    help: string;
    type: string;
    aggregator: string;
    values: MetricValue[];
  }> {
    return Promise.resolve({
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values: this.values(),
    });
  }

  reset(): void {
    this.series.clear();
  }

  register(registry: Registry): this {
    registry.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
    return this;
  }
}

export interface HistogramSeries {
  readonly labels: Record<string, string>;
  /** Per bucket, not cumulative; the last slot is +Inf. */
  readonly counts: number[];
  sum: number;
  count: number;
}

export class FastHistogram<L extends string> extends FastMetric<L, HistogramSeries> {
  readonly type = 'histogram';

  constructor(
    name: string,
    help: string,
    labelNames: readonly L[],
    private readonly buckets: readonly number[],
  ) {
    super(name, help, labelNames);
  }

  protected newSeries(labels: Record<string, string>): HistogramSeries {
    return { labels, counts: new Array<number>(this.buckets.length + 1).fill(0), sum: 0, count: 0 };
  }

  observeSeries(s: HistogramSeries, value: number): void {
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

  protected values(): MetricValue[] {
    const out: MetricValue[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.series.values()) {
      let cumulative = 0;
      this.buckets.forEach((le, i) => {
        cumulative += s.counts[i] as number;
        out.push({ labels: { le, ...s.labels }, value: cumulative, metricName: bucket });
      });
      out.push({ labels: { le: '+Inf', ...s.labels }, value: s.count, metricName: bucket });
      out.push({ labels: s.labels, value: s.sum, metricName: `${this.name}_sum` });
      out.push({ labels: s.labels, value: s.count, metricName: `${this.name}_count` });
    }
    return out;
  }
}

/** One label set of a FastCounter. */
export interface CounterSeries {
  readonly labels: Record<string, string>;
  value: number;
  inc(n?: number): void;
}

export class FastCounter<L extends string> extends FastMetric<L, CounterSeries> {
  readonly type = 'counter';

  protected newSeries(labels: Record<string, string>): CounterSeries {
    return {
      labels,
      value: 0,
      inc(n = 1) {
        this.value += n;
      },
    };
  }

  protected values(): MetricValue[] {
    return [...this.series.values()].map((s) => ({ labels: s.labels, value: s.value }));
  }
}
