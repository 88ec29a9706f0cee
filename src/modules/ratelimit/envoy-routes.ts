/**
 * `POST /v1/ratelimit/envoy`: envoyproxy/ratelimit's HTTP `/json` call, answered from the policies
 * file's `envoy` domains (envoy.ts). Same request, same response body, same status codes (200, or
 * 429 when any descriptor is over its limit), plus the gateway's rate-limit headers.
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { Clock } from '../../clock.js';
import { AppError } from '../../errors.js';
import { authorizeAll, principalOf } from '../../http/auth.js';
import { HEADERS, ProblemSchema, jsonResponse, problemResponses } from '../../http/openapi.js';
import { MAX_KEY_BYTES } from '../../redis/keys.js';
import {
  type EnvoyEntry,
  type EnvoyLimit,
  applyReplaces,
  createDynamicLimits,
  envoyIdentifier,
  findLimit,
  secondsUntilReset,
  unitOf,
} from './envoy.js';
import { rateLimitHeaders } from './headers.js';
import type { Policy } from './policy.js';
import { JSON_TYPE, RATE_HEADERS, SCOPE, TAGS } from './routes.js';
import { EnvoyRequest, EnvoyResponse } from './schemas.js';
import type { Decision, RatelimitService } from './service.js';
import type { PolicyStore } from './store.js';

export interface EnvoyRoutesOptions {
  service: RatelimitService;
  store: PolicyStore;
  clock: Clock;
  legacyHeaders: boolean;
}

type Status = EnvoyResponse['statuses'][number];
type Limited = EnvoyLimit & { policy: Policy };

/**
 * A cost larger than the limit can never fit: over the limit without asking Redis (as
 * envoyproxy/ratelimit, which would count it and find it over).
 */
function neverFits(limit: Limited, nowMs: number): Decision {
  const { policy } = limit;
  const untilReset = secondsUntilReset(limit.unit, nowMs) * 1000;
  return {
    allowed: policy.shadow,
    limit: limit.requestsPerUnit,
    remaining: 0,
    resetMs: untilReset,
    retryAfterMs: policy.shadow ? 0 : untilReset,
    policy: policy.name,
    sfName: policy.sfName,
    limiter: policy,
    ...(policy.shadow ? { shadowDenied: true as const } : {}),
  };
}

function statusOf(limit: Limited, d: Decision, nowMs: number): Status {
  const status: Status = {
    code: d.allowed ? 'OK' : 'OVER_LIMIT',
    // protojson leaves out fields with zero values.
    currentLimit:
      limit.requestsPerUnit > 0
        ? { requestsPerUnit: limit.requestsPerUnit, unit: limit.unit }
        : { unit: limit.unit },
  };
  if (d.remaining !== null && d.remaining > 0) status.limitRemaining = d.remaining;
  status.durationUntilReset = `${secondsUntilReset(limit.unit, nowMs)}s`;
  return status;
}

export const ratelimitEnvoyRoutes: FastifyPluginAsyncZod<EnvoyRoutesOptions> = async (
  app,
  { service, store, clock, legacyHeaders },
) => {
  const headerOptions = { legacy: legacyHeaders };
  const dynamic = createDynamicLimits();

  app.post(
    '/envoy',
    {
      config: { scope: SCOPE, module: 'ratelimit' },
      schema: {
        operationId: 'ratelimitEnvoy',
        tags: TAGS,
        summary: 'Decide rate limits as envoyproxy/ratelimit does (its /json call)',
        description: [
          "For callers of envoyproxy/ratelimit's HTTP `/json` endpoint (Envoy Lua filters, services): the same RateLimitRequest, the same RateLimitResponse body, 200 when every descriptor is within its limit and 429 when any is over, answered from the policies file's `envoy` list, which holds envoyproxy/ratelimit config files as they are.",
          'Each descriptor is looked up as envoyproxy/ratelimit looks it up (`key_value`, then a `value` ending in `*` as a prefix, then the bare `key`; the limit applies where the descriptor ends) and counted on its own, in a fixed window of the unit aligned to the epoch, per tenant. A descriptor no limit matches, an unknown domain or an `unlimited` limit is `OK`. `shadow_mode` limits answer `OK` and count what they would have denied (`gateway_ratelimit_decisions_total{decision="shadow_denied"}`); `replaces` drops the named limit; a descriptor `limit` overrides the configuration in a configured domain.',
          "Differences: a denied request is not counted (envoyproxy/ratelimit counts past the limit); when Redis cannot answer within 50 ms the descriptor is `OK` with `X-RateLimit-Degraded: true` (fail open, like Envoy with `failure_mode_deny: false`); errors are problem+json. Needs the `ratelimit:check` scope without a policy glob. The gateway's own request quota answers 429 as a problem, not a RateLimitResponse.",
        ].join('\n\n'),
        body: EnvoyRequest,
        response: {
          200: jsonResponse('Every descriptor is within its limit.', EnvoyResponse, RATE_HEADERS),
          429: {
            description:
              'A descriptor is over its limit (a RateLimitResponse), or the API key exceeded its request quota (a problem).',
            content: {
              'application/json': { schema: EnvoyResponse },
              'application/problem+json': { schema: ProblemSchema },
            },
            headers: { 'X-Request-Id': HEADERS.requestId, ...RATE_HEADERS },
          },
          ...problemResponses(400, 401, 403, 404, 415),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      authorizeAll(principal, SCOPE, 'The envoyproxy/ratelimit endpoint');
      const domains = store.envoyDomains();
      if (domains === undefined) {
        throw new AppError(
          'POLICY_NOT_FOUND',
          'No envoyproxy/ratelimit configuration: the policies file (RATELIMIT_POLICIES_FILE) has no `envoy` list.',
        );
      }
      const { domain, descriptors } = request.body;
      const requestHits = request.body.hitsAddend ?? request.body.hits_addend ?? 0;
      const configured = domains.has(domain);
      const entriesOf = (i: number): EnvoyEntry[] =>
        (descriptors[i]?.entries ?? []).map((e) => ({ key: e.key, value: e.value ?? '' }));
      const limits = applyReplaces(
        descriptors.map((d, i) => {
          if (d.limit !== undefined && configured) {
            return dynamic(domain, {
              requestsPerUnit: d.limit.requestsPerUnit ?? d.limit.requests_per_unit ?? 0,
              unit: unitOf(d.limit.unit),
            });
          }
          return findLimit(domains, domain, entriesOf(i));
        }),
      );
      const nowMs = clock.nowMs();
      // Every descriptor checked before any is counted: a bad one must not leave others counted.
      const plans = descriptors.map((d, i) => {
        const limit = limits[i];
        if (limit?.policy === undefined) return undefined;
        const identifier = envoyIdentifier(domain, entriesOf(i));
        if (Buffer.byteLength(identifier, 'utf8') > MAX_KEY_BYTES) {
          const field = `body.descriptors[${i}].entries`;
          throw new AppError(
            'VALIDATION_FAILED',
            `Descriptor ${i} is too long: its domain, keys and values take more than ${MAX_KEY_BYTES} bytes.`,
            { errors: [{ field, message: `must take at most ${MAX_KEY_BYTES} bytes in all` }] },
          );
        }
        const cost = Math.max(1, d.hitsAddend ?? d.hits_addend ?? requestHits);
        return { limit: limit as Limited, identifier, cost };
      });
      const pending = plans.map((plan): Decision | Promise<Decision> | undefined => {
        if (plan === undefined) return undefined;
        const { limit, identifier, cost } = plan;
        if (cost > limit.requestsPerUnit) return neverFits(limit, nowMs);
        return service.check(principal.tenant, { policy: limit.policy, identifier, cost });
      });
      // Every check has started (one script call carries those of this turn). All at once: a
      // check failing closed must not leave the others' rejections unhandled.
      const decisions = await Promise.all(pending.map((p) => Promise.resolve(p)));
      const statuses: Status[] = decisions.map((d, i) =>
        d === undefined ? { code: 'OK' } : statusOf(limits[i] as Limited, d, nowMs),
      );
      const over = statuses.some((s) => s.code === 'OVER_LIMIT');
      const made = decisions.filter((d) => d !== undefined);
      const body: EnvoyResponse = { overallCode: over ? 'OVER_LIMIT' : 'OK', statuses };
      return reply
        .code(over ? 429 : 200)
        .headers(made.length > 0 ? rateLimitHeaders(made, headerOptions) : {})
        .type(JSON_TYPE)
        .send(JSON.stringify(body));
    },
  );
};
