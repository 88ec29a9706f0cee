/**
 * The gRPC rate limit service (RLS_GRPC_PORT) under load, as Envoy's ratelimit filter calls it:
 * one HTTP/2 connection, `concurrency` calls in flight, a different remote address each call (1000
 * in turn), for `seconds`; or the same against the lease twin's domain. autocannon speaks HTTP/1.1 only, so this is a closed loop of its own.
 */
import { rlsClient } from '../../test/harness/rls.js';
import type { OneShotResult } from './invalidate.js';
import { envoyRequest } from './ratelimit.js';

const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? 0;

export async function benchRls(opts: {
  port: number;
  apiKey: string;
  seconds: number;
  concurrency: number;
  /** The lease twin: the `bench-lease` domain (the same limit, with envoyOptions leases). */
  leases: boolean;
  /** CPU µs the gateway process has used so far. */
  gatewayCpu(): number;
}): Promise<OneShotResult[]> {
  const client = rlsClient(opts.port);
  const meta = { 'x-gateway-key': opts.apiKey };
  const domain = opts.leases ? 'bench-lease' : 'bench';
  let n = 0;
  const one = async () => {
    const { response, error } = await client.call(envoyRequest(n++ % 1000, domain), meta);
    if (error || response?.overallCode !== 'OK') throw error ?? new Error(JSON.stringify(response));
  };
  const loop = async (until: number, latencies: number[] | undefined) => {
    while (performance.now() < until) {
      const t0 = performance.now();
      await one();
      latencies?.push(performance.now() - t0);
    }
  };
  const workers = (until: number, latencies?: number[]) =>
    Promise.all(Array.from({ length: opts.concurrency }, () => loop(until, latencies)));
  try {
    await workers(performance.now() + 2000); // warm-up, not measured
    const latencies: number[] = [];
    const cpu0 = opts.gatewayCpu();
    const started = performance.now();
    await workers(started + opts.seconds * 1000, latencies);
    const elapsed = (performance.now() - started) / 1000;
    const cpu = opts.gatewayCpu() - cpu0;
    latencies.sort((a, b) => a - b);
    return [
      {
        name: `gRPC rate limit service, ShouldRateLimit (1 connection, ${opts.concurrency} in flight, 1k addresses)${opts.leases ? ', leases' : ''}`,
        id: opts.leases ? 'ratelimit-rls-lease' : 'ratelimit-rls',
        'calls/s': Math.round(latencies.length / elapsed),
        'p50 ms': Number(pct(latencies, 50).toFixed(2)),
        'p99 ms': Number(pct(latencies, 99).toFixed(2)),
        'CPU µs/call': Math.round(cpu / Math.max(1, latencies.length)),
      },
    ];
  } finally {
    client.close();
  }
}
