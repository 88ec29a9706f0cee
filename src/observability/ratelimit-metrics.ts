/**
 * Rate-limit metrics: decisions by policy and outcome, denials answered from the in-process
 * cache, and the gateway's own request quota. The policy label is bounded: names of built-in and
 * policies-file policies (operator-controlled), `tenant` for tenant-specific ones, `inline` for
 * definitions sent with a check.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { type CounterSeries, FastCounter } from './fast-metrics.js';

export interface RatelimitMetrics {
  /** outcome: allowed, denied, shadow_denied, degraded_allowed, degraded_denied. */
  decision(policyLabel: string, outcome: string): void;
  localDenial(): void;
  /** Units reserved by leases (`granted`), or given out from one without Redis (`used`). */
  lease(event: 'granted' | 'used' | 'returned', units: number): void;
  /** Units refunded: consumed by checks that Redis ran after they were answered 503. */
  refund(units: number): void;
  /** An identifier's state was reset through the API; cleared: stored state was deleted. */
  reset(policyLabel: string, cleared: boolean): void;
  /** Single checks sent in one script call. */
  batch(checks: number): void;
  quotaExceeded(): void;
  quotaFlushError(): void;
  /** A call of the gRPC rate limit service: its status code name and duration. */
  rlsCall(code: string, seconds: number): void;
  /** An envoy descriptor no limit applied to: `unknown_domain` or `no_limit`. */
  envoyUnmatched(reason: 'unknown_domain' | 'no_limit'): void;
  /** The RLS port's TLS certificates now served, and when they expire (ms since the epoch). */
  rlsTlsLoaded(expiry: { server: number; clientCa?: number }): void;
  /** Renewed RLS TLS files that could not be read or loaded (the old certificate stays). */
  rlsTlsReloadFailed(): void;
  /** Whether the policies file puts every limit in shadow mode. */
  shadowAll(on: boolean): void;
}

export function createRatelimitMetrics(registry: Registry): RatelimitMetrics {
  const decisions = new FastCounter(
    'gateway_ratelimit_decisions_total',
    'Rate-limit decisions by policy (built-in and file policy names; "tenant" for tenant-specific, "inline" for inline definitions) and outcome: allowed, denied, shadow_denied (a shadow policy would have denied), degraded_allowed (Redis could not decide, the policy fails open), degraded_denied (fails closed: 503).',
    ['policy', 'outcome'] as const,
  ).register(registry);
  const series = new Map<string, CounterSeries>();
  const localDenials = new FastCounter(
    'gateway_ratelimit_local_denials_total',
    'Denials answered from the in-process cache of identifiers known to be over their limit (no Redis call; also counted as denied).',
    [] as const,
  ).register(registry);
  const localSeries = localDenials.child({});
  const leaseUnits = new FastCounter(
    'gateway_ratelimit_lease_units_total',
    'Rate-limit units on lease (policies with leaseMs): event="granted" units a replica reserved in Redis for itself, event="used" units it gave out from a lease without a Redis call (those checks are also counted as allowed), event="returned" units of a lease it did not give out and sent back with its next check of that identifier (uncounted if their window, or the bucket\'s lease generation, still counts). granted - used - returned: units that expired unused, or are still held; they count as used.',
    ['event'] as const,
  ).register(registry);
  const leaseGranted = leaseUnits.child({ event: 'granted' });
  const leaseUsed = leaseUnits.child({ event: 'used' });
  const leaseReturned = leaseUnits.child({ event: 'returned' });
  const refunds = new FastCounter(
    'gateway_ratelimit_refunded_units_total',
    'Rate-limit units sent back to Redis because a check of a policy that fails closed was answered 503 (Redis too slow) and Redis ran it after all: uncounted as far as the algorithm can be sure (for a slow limit nearly all of them; README, "Slow answers").',
    [] as const,
  ).register(registry);
  const refundSeries = refunds.child({});
  const resets = new Counter({
    name: 'gateway_ratelimit_resets_total',
    help: 'Identifiers whose rate-limit state was reset through POST /v1/ratelimit/reset, by policy (labelled as for decisions) and whether stored state was deleted (cleared: true/false).',
    labelNames: ['policy', 'cleared'] as const,
    registers: [registry],
  });
  const batches = new Histogram({
    name: 'gateway_ratelimit_batch_checks',
    help: 'Single rate-limit checks sent to Redis in one script call (those that arrived in one event-loop turn, at most RATELIMIT_BATCH_MAX).',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
    registers: [registry],
  });
  const quotaExceeded = new Counter({
    name: 'gateway_quota_exceeded_total',
    help: 'Requests refused because their API key used up its per-minute request quota (REQUEST_QUOTA_PER_MINUTE).',
    registers: [registry],
  });
  const quotaErrors = new Counter({
    name: 'gateway_quota_flush_errors_total',
    help: 'Failed flushes of locally counted requests to the shared quota counters (retried; each replica keeps enforcing its own count).',
    registers: [registry],
  });
  const rlsCalls = new Histogram({
    name: 'gateway_rls_request_duration_seconds',
    help: 'Calls of the gRPC rate limit service (RLS_GRPC_PORT) by gRPC status code: OK (allowed or over the limit alike), UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE, INTERNAL.',
    labelNames: ['code'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  const unmatched = new Counter({
    name: 'gateway_ratelimit_envoy_unmatched_total',
    help: 'envoyproxy/ratelimit descriptors (/v1/ratelimit/envoy, gRPC) answered OK because no limit applied: unknown_domain (the domain is not in the envoy list) or no_limit (no descriptor of the domain matched). A steady rate often means a misspelt domain or key.',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const tlsExpiry = new Gauge({
    name: 'gateway_rls_tls_certificate_expiry_timestamp_seconds',
    help: 'When the certificates the gRPC rate limit service serves with TLS expire (Unix time): certificate="server" (RLS_GRPC_TLS_CERT_FILE) and "client_ca" (RLS_GRPC_TLS_CLIENT_CA_FILE). Follows renewals; no series without TLS.',
    labelNames: ['certificate'] as const,
    registers: [registry],
  });
  const tlsReloads = new Counter({
    name: 'gateway_rls_tls_reloads_total',
    help: 'Changes of the gRPC rate limit service TLS files by result: loaded (served to new connections from then on) or failed (unreadable, or a certificate and key that do not match: the previous certificate stays; the log says why).',
    labelNames: ['result'] as const,
    registers: [registry],
  });
  const shadowAll = new Gauge({
    name: 'gateway_ratelimit_shadow_all',
    help: '1 while the policies file sets shadow: true: every limit only records what it would deny (shadow_denied), nothing is denied.',
    registers: [registry],
  });
  let tlsStarted = false;
  return {
    decision(policy, outcome) {
      const id = `${policy}|${outcome}`;
      let s = series.get(id);
      if (s === undefined) {
        s = decisions.child({ policy, outcome });
        series.set(id, s);
      }
      s.inc();
    },
    localDenial: () => localSeries.inc(),
    lease: (event, units) =>
      (event === 'used' ? leaseUsed : event === 'granted' ? leaseGranted : leaseReturned).inc(
        units,
      ),
    refund: (units) => refundSeries.inc(units),
    batch: (checks) => batches.observe(checks),
    reset: (policy, cleared) => resets.inc({ policy, cleared: String(cleared) }),
    quotaExceeded: () => quotaExceeded.inc(),
    quotaFlushError: () => quotaErrors.inc(),
    rlsCall: (code, seconds) => rlsCalls.observe({ code }, seconds),
    envoyUnmatched: (reason) => unmatched.inc({ reason }),
    rlsTlsLoaded(expiry) {
      tlsExpiry.set({ certificate: 'server' }, expiry.server / 1000);
      if (expiry.clientCa !== undefined)
        tlsExpiry.set({ certificate: 'client_ca' }, expiry.clientCa / 1000);
      // The first load is the start, not a renewal.
      if (tlsStarted) tlsReloads.inc({ result: 'loaded' });
      tlsStarted = true;
    },
    rlsTlsReloadFailed: () => tlsReloads.inc({ result: 'failed' }),
    shadowAll: (on) => shadowAll.set(on ? 1 : 0),
  };
}
