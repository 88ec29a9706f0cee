/**
 * One envoyproxy/ratelimit `ShouldRateLimit` decision, for both ways in: the HTTP `/json` mirror
 * (envoy-routes.ts) and the gRPC rate limit service Envoy's filter calls (rls-grpc.ts). Limits come
 * from the policies file's `envoy` domains (envoy.ts); every limited descriptor is one check of the
 * rate-limit service, so the checks of one call (and of calls in the same event-loop turn) go to
 * Redis in one script call, and remembered denials are answered without Redis.
 */
import type { Clock } from '../../clock.js';
import { AppError } from '../../errors.js';
import {
  type EnvoyEntry,
  type EnvoyLimit,
  type EnvoyRequestLimit,
  type Unit,
  applyReplaces,
  createDynamicLimits,
  envoyIdentifier,
  findLimit,
  secondsUntilReset,
  unitOf,
} from './envoy.js';
import type { Policy } from './policy.js';
import type { EnvoyRequest } from './schemas.js';
import type { Decision, DecisionOutcome, RatelimitService } from './service.js';
import type { PolicyStore } from './store.js';

/** A RateLimitRequest, read from JSON or protobuf. */
export interface EnvoyCall {
  domain: string;
  descriptors: {
    entries: EnvoyEntry[];
    limit?: EnvoyRequestLimit | undefined;
    /** The descriptor's own hits_addend, when it has one. */
    hitsAddend?: number | undefined;
  }[];
  /** The request's hits_addend (0: 1). */
  hitsAddend: number;
}

/** One DescriptorStatus. */
export interface EnvoyStatus {
  code: 'OK' | 'OVER_LIMIT';
  /** The limit that applied; absent when none did (or it was unlimited). */
  limit?: { requestsPerUnit: number; unit: Unit };
  /** Units left in the window: 0 when no limit applied, UNLIMITED_REMAINING when `unlimited`. */
  remaining: number;
  /** Seconds until the limit's window ends. */
  resetSeconds: number;
}

export interface EnvoyOutcome {
  overLimit: boolean;
  statuses: EnvoyStatus[];
  /** The decisions made (for the rate-limit headers). */
  decisions: Decision[];
}

/** The request as the decision takes it (protojson's two names for a field folded into one). */
export function callOf(body: EnvoyRequest): EnvoyCall {
  return {
    domain: body.domain,
    hitsAddend: body.hitsAddend ?? body.hits_addend ?? 0,
    descriptors: body.descriptors.map((d) => ({
      entries: d.entries.map((e) => ({ key: e.key, value: e.value ?? '' })),
      limit:
        d.limit === undefined
          ? undefined
          : {
              requestsPerUnit: d.limit.requestsPerUnit ?? d.limit.requests_per_unit ?? 0,
              unit: unitOf(d.limit.unit),
            },
      hitsAddend: d.hitsAddend ?? d.hits_addend,
    })),
  };
}

type Limited = EnvoyLimit & { policy: Policy };

/** What envoyproxy/ratelimit reports as an `unlimited` descriptor's remaining (max uint32). */
export const UNLIMITED_REMAINING = 4_294_967_295;

/**
 * A cost larger than the limit can never fit: over the limit without asking Redis (as
 * envoyproxy/ratelimit, which would count it and find it over).
 */
function neverFits(limit: Limited, nowMs: number, shadow: boolean): Decision {
  const { policy } = limit;
  const untilReset = secondsUntilReset(limit.unit, nowMs) * 1000;
  return {
    allowed: shadow,
    limit: limit.requestsPerUnit,
    remaining: 0,
    resetMs: untilReset,
    retryAfterMs: shadow ? 0 : untilReset,
    policy: policy.name,
    sfName: policy.sfName,
    limiter: policy,
    ...(shadow ? { shadowDenied: true as const } : {}),
  };
}

export interface EnvoyServiceOptions {
  service: RatelimitService;
  store: PolicyStore;
  clock: Clock;
  /** A decision made here without the rate-limit service (a cost no window can hold). */
  onDecision?: (policy: Policy, outcome: DecisionOutcome) => void;
  /** A descriptor no limit applied to (replaced and `unlimited` limits are not counted here). */
  onUnmatched?: (reason: 'unknown_domain' | 'no_limit') => void;
}

export function createEnvoyService(opts: EnvoyServiceOptions) {
  const { service, store, clock, onDecision, onUnmatched } = opts;
  const dynamic = createDynamicLimits();

  return {
    /**
     * Decides every descriptor for `tenant`. Throws POLICY_NOT_FOUND, before anything is counted,
     * when the policies file has no `envoy` list.
     */
    async decide(tenant: string, call: EnvoyCall): Promise<EnvoyOutcome> {
      const domains = store.envoyDomains();
      if (domains === undefined) {
        throw new AppError(
          'POLICY_NOT_FOUND',
          'No envoyproxy/ratelimit configuration: the policies file (RATELIMIT_POLICIES_FILE) has no `envoy` list.',
        );
      }
      const { domain, descriptors } = call;
      const configured = domains.get(domain);
      const found = descriptors.map((d) =>
        d.limit !== undefined && configured !== undefined
          ? dynamic(domain, d.limit, configured.options)
          : findLimit(domains, domain, d.entries),
      );
      for (const l of found) {
        if (l === undefined)
          onUnmatched?.(configured !== undefined ? 'no_limit' : 'unknown_domain');
      }
      const limits = applyReplaces(found);
      const nowMs = clock.nowMs();
      const pending = descriptors.map((d, i): Decision | Promise<Decision> | undefined => {
        const limit = limits[i];
        if (limit?.policy === undefined) return undefined;
        const limited = limit as Limited;
        const cost = Math.max(1, d.hitsAddend ?? call.hitsAddend);
        if (cost > limited.requestsPerUnit) {
          const shadow = service.shadowOf(limited.policy);
          onDecision?.(limited.policy, shadow ? 'shadow_denied' : 'denied');
          return neverFits(limited, nowMs, shadow);
        }
        const identifier = envoyIdentifier(domain, d.entries);
        return service.check(tenant, { policy: limited.policy, identifier, cost });
      });
      // Every check has started (one script call carries those of this turn). All at once: a
      // check failing closed must not leave the others' rejections unhandled.
      const made = await Promise.all(pending.map((p) => Promise.resolve(p)));
      const statuses = made.map((d, i): EnvoyStatus => {
        const limit = limits[i];
        if (found[i]?.unlimited)
          return { code: 'OK', remaining: UNLIMITED_REMAINING, resetSeconds: 0 };
        if (d === undefined || limit === undefined)
          return { code: 'OK', remaining: 0, resetSeconds: 0 };
        return {
          code: d.allowed ? 'OK' : 'OVER_LIMIT',
          limit: { requestsPerUnit: limit.requestsPerUnit, unit: limit.unit },
          remaining: d.remaining ?? 0,
          resetSeconds: secondsUntilReset(limit.unit, nowMs),
        };
      });
      return {
        overLimit: statuses.some((s) => s.code === 'OVER_LIMIT'),
        statuses,
        decisions: made.filter((d) => d !== undefined),
      };
    },
  };
}

export type EnvoyService = ReturnType<typeof createEnvoyService>;
