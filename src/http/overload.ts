/**
 * Load shedding (RELIABILITY scenario 17). Every request waits for the event loop, so the loop's
 * delay is the latency floor of the whole process: while its mean over the last sample is above
 * OVERLOAD_MAX_EVENT_LOOP_DELAY_MS, the process has more work than its CPU can do, and each
 * further request only lengthens the wait for all. The gateway then answers new requests at once
 * with 503 OVERLOADED + Retry-After (app.ts) and rate-limit decisions by their policy's failure
 * mode, as when Redis cannot answer (service.ts), which costs a fraction of serving them, until a
 * sample is back under the limit. Probes are never shed: a failing liveness probe would restart
 * the pod in the middle of the load.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';

/** How often the delay is sampled (and so how fast shedding starts and stops). */
export const OVERLOAD_SAMPLE_MS = 500;
/** The histogram's timer period; its samples include it, so it is taken off. */
const RESOLUTION_MS = 10;

export interface OverloadMonitorOptions {
  /** Mean event-loop delay above which the process counts as overloaded; 0 turns this off. */
  maxDelayMs: number;
  /** Each sample: its mean delay (ms) and whether that counts as overloaded. */
  onSample(delayMs: number, overloaded: boolean): void;
  /** The mean delay since the last call, in ms (tests); default: perf_hooks' histogram. */
  meanDelayMs?: () => number;
  sampleMs?: number;
}

export function startOverloadMonitor(opts: OverloadMonitorOptions): { stop(): void } {
  if (opts.maxDelayMs <= 0) return { stop: () => {} };
  const histogram = opts.meanDelayMs
    ? undefined
    : monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  histogram?.enable();
  const mean =
    opts.meanDelayMs ??
    (() => {
      const h = histogram as NonNullable<typeof histogram>;
      const ms = h.count === 0 ? 0 : Math.max(0, h.mean / 1e6 - RESOLUTION_MS);
      h.reset();
      return ms;
    });
  const timer = setInterval(() => {
    const delayMs = mean();
    opts.onSample(delayMs, delayMs > opts.maxDelayMs);
  }, opts.sampleMs ?? OVERLOAD_SAMPLE_MS).unref();
  return {
    stop() {
      clearInterval(timer);
      histogram?.disable();
    },
  };
}
