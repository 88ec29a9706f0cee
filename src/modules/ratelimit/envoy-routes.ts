/**
 * `POST /v1/ratelimit/envoy`: envoyproxy/ratelimit's HTTP `/json` call, answered from the policies
 * file's `envoy` domains (envoy.ts). Same request, same response body, same status codes (200, or
 * 429 when any descriptor is over its limit), plus the gateway's rate-limit headers.
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { authorizeAll, principalOf } from '../../http/auth.js';
import { HEADERS, ProblemSchema, jsonResponse, problemResponses } from '../../http/openapi.js';
import { type EnvoyService, type EnvoyStatus, callOf } from './envoy-service.js';
import { rateLimitHeaders } from './headers.js';
import { JSON_TYPE, RATE_HEADERS, SCOPE, TAGS } from './routes.js';
import { EnvoyRequest, EnvoyResponse } from './schemas.js';

export interface EnvoyRoutesOptions {
  envoy: EnvoyService;
  legacyHeaders: boolean;
}

/** A DescriptorStatus as protojson writes it: fields with zero values left out. */
function render(s: EnvoyStatus): EnvoyResponse['statuses'][number] {
  if (s.limit === undefined) {
    return s.remaining > 0 ? { code: s.code, limitRemaining: s.remaining } : { code: s.code };
  }
  const { requestsPerUnit, unit } = s.limit;
  return {
    code: s.code,
    currentLimit: requestsPerUnit > 0 ? { requestsPerUnit, unit } : { unit },
    ...(s.remaining > 0 ? { limitRemaining: s.remaining } : {}),
    durationUntilReset: `${s.resetSeconds}s`,
  };
}

export const ratelimitEnvoyRoutes: FastifyPluginAsyncZod<EnvoyRoutesOptions> = async (
  app,
  { envoy, legacyHeaders },
) => {
  const headerOptions = { legacy: legacyHeaders };

  app.post(
    '/envoy',
    {
      config: { scope: SCOPE, module: 'ratelimit', shed: false },
      schema: {
        operationId: 'ratelimitEnvoy',
        tags: TAGS,
        summary: 'Decide rate limits as envoyproxy/ratelimit does (its /json call)',
        description: [
          "For callers of envoyproxy/ratelimit's HTTP `/json` endpoint (Envoy Lua filters, services): the same RateLimitRequest, the same RateLimitResponse body, 200 when every descriptor is within its limit and 429 when any is over, answered from the policies file's `envoy` list, which holds envoyproxy/ratelimit config files as they are.",
          'Each descriptor is looked up as envoyproxy/ratelimit looks it up (`key_value`, then a `value` ending in `*` as a prefix, then the bare `key`; the limit applies where the descriptor ends) and counted on its own, in a fixed window of the unit aligned to the epoch, per tenant. A descriptor no limit matches, an unknown domain or an `unlimited` limit is `OK`. `shadow_mode` limits answer `OK` and count what they would have denied (`gateway_ratelimit_decisions_total{outcome="shadow_denied"}`); `replaces` drops the named limit; a descriptor `limit` overrides the configuration in a configured domain.',
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
      const out = await envoy.decide(principal.tenant, callOf(request.body));
      const body: EnvoyResponse = {
        overallCode: out.overLimit ? 'OVER_LIMIT' : 'OK',
        statuses: out.statuses.map(render),
      };
      return reply
        .code(out.overLimit ? 429 : 200)
        .headers(out.decisions.length > 0 ? rateLimitHeaders(out.decisions, headerOptions) : {})
        .type(JSON_TYPE)
        .send(JSON.stringify(body));
    },
  );
};
