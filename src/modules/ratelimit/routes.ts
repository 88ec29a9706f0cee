/**
 * HTTP surface of rate limiting: decisions (/v1/ratelimit/check, /_check), the hook API gateways
 * call (/v1/ratelimit/hook/{policy}/...), and the per-tenant policies of the admin API
 * (/v1/admin/tenants/{tenant}/policies).
 */
import { hash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { AppError } from '../../errors.js';
import { authorizeAll, authorizeResource, principalOf } from '../../http/auth.js';
import { emptyResponse, jsonResponse, problemResponses } from '../../http/openapi.js';
import { rateLimitHeaders } from './headers.js';
import { type Policy, type PolicyDefinition, compilePolicy } from './policy.js';
import {
  Check,
  DecisionSchema,
  HookParams,
  HookPolicyParams,
  HookQuery,
  MultiCheck,
  MultiDecision,
  PolicyList,
  PolicyParams,
  PolicySummarySchema,
  Reset,
  ResetResult,
  TenantPolicyParams,
} from './schemas.js';
import type { Decision, RatelimitService } from './service.js';
import type { PolicyStore } from './store.js';

export interface RatelimitRoutesOptions {
  service: RatelimitService;
  store: PolicyStore;
  legacyHeaders: boolean;
}

export const SCOPE = 'ratelimit:check';
const RESET_SCOPE = 'ratelimit:reset';
export const TAGS = ['ratelimit'];
export const JSON_TYPE = 'application/json; charset=utf-8';

export const RATE_HEADERS = {
  RateLimit: {
    type: 'string',
    description:
      'draft-ietf-httpapi-ratelimit-headers-11: `"<policy>";r=<remaining>;t=<seconds to reset>`.',
  },
  'RateLimit-Policy': {
    type: 'string',
    description: 'draft-11: `"<policy>";q=<quota>;w=<window seconds>`.',
  },
  'X-RateLimit-Limit': {
    type: 'integer',
    description: 'Legacy (RATELIMIT_LEGACY_HEADERS): the quota.',
  },
  'X-RateLimit-Remaining': { type: 'integer', description: 'Legacy: units remaining.' },
  'X-RateLimit-Reset': {
    type: 'integer',
    description: 'Legacy: seconds (from now) until the quota is restored.',
  },
  'Retry-After': {
    type: 'integer',
    description: 'On a denial: seconds until this request could be allowed.',
  },
  'X-RateLimit-Degraded': {
    type: 'string',
    description: '`true` when Redis could not decide in time and the policy fails open.',
  },
} as const;

/** The decision as JSON, built without a serializer pass (the hot path). */
function renderDecision(d: Decision): string {
  return (
    `{"allowed":${d.allowed},"limit":${d.limit},"remaining":${d.remaining},"resetMs":${d.resetMs},` +
    `"retryAfterMs":${d.retryAfterMs},"policy":${JSON.stringify(d.policy)}` +
    (d.degraded ? ',"degraded":true' : '') +
    (d.shadowDenied ? ',"shadowDenied":true' : '') +
    '}'
  );
}

const INLINE_CACHE_MAX = 1000;

/**
 * The identity the hook limits for a header value: hashed, so credentials in headers never
 * reach Redis keys in clear.
 */
const headerIdentity = (value: string): string =>
  `h:${hash('sha256', value, 'base64url').slice(0, 22)}`;

export const ratelimitRoutes: FastifyPluginAsyncZod<RatelimitRoutesOptions> = async (
  app,
  { service, store, legacyHeaders },
) => {
  const headerOptions = { legacy: legacyHeaders };
  // Inline definitions are compiled once per distinct text (bounded; oldest dropped first).
  const inline = new Map<string, Policy>();

  /** The policy a request names or defines; synchronous unless the tenant's policies are loading. */
  function policyOf(
    request: FastifyRequest,
    spec: string | PolicyDefinition,
    field: string,
    scope = SCOPE,
  ): Policy | Promise<Policy> {
    const principal = principalOf(request);
    if (typeof spec !== 'string') {
      authorizeAll(principal, scope, 'An inline policy');
      const text = JSON.stringify(spec);
      let p = inline.get(text);
      if (p === undefined) {
        if (inline.size >= INLINE_CACHE_MAX) inline.delete(inline.keys().next().value as string);
        p = compilePolicy('inline', 'inline', spec);
        inline.set(text, p);
      }
      return p;
    }
    authorizeResource(principal, scope, spec, field);
    const found = store.resolve(principal.tenant, spec);
    return found instanceof Promise
      ? found.then((p) => known(p, spec, field))
      : known(found, spec, field);
  }

  function known(p: Policy | undefined, name: string, field: string): Policy {
    if (p === undefined) {
      throw new AppError('POLICY_NOT_FOUND', `No rate-limit policy "${name}" for this tenant.`, {
        errors: [{ field, message: 'no such policy' }],
      });
    }
    return p;
  }

  app.post(
    '/check',
    {
      config: { scope: SCOPE, module: 'ratelimit', shed: false },
      schema: {
        operationId: 'ratelimitCheck',
        tags: TAGS,
        summary: 'Decide one rate limit',
        description:
          "Consumes `cost` units of the limit `policy` sets for `key` if that is allowed, and says so. A denial is a 200 with `allowed: false` (and Retry-After), not an error. Headers: RateLimit-Policy and RateLimit (draft-11), X-RateLimit-* (legacy). Named policies may be restricted by the key's scope glob (`ratelimit:check:public*`); inline definitions need `ratelimit:check` without a glob.",
        body: Check,
        response: {
          200: jsonResponse('The decision.', DecisionSchema, RATE_HEADERS),
          ...problemResponses(400, 401, 403, 404, 415),
        },
      },
    },
    async (request, reply) => {
      const { policy: spec, key, cost } = request.body;
      const p = policyOf(request, spec, 'body.policy');
      const policy = p instanceof Promise ? await p : p;
      const d = await service.check(principalOf(request).tenant, {
        policy,
        identifier: key,
        cost: cost ?? 1,
      });
      return reply
        .headers(rateLimitHeaders([d], headerOptions))
        .type(JSON_TYPE)
        .send(renderDecision(d));
    },
  );

  app.post(
    '/_check',
    {
      config: { scope: SCOPE, module: 'ratelimit', shed: false },
      schema: {
        operationId: 'ratelimitCheckMany',
        tags: TAGS,
        summary: 'Decide several rate limits at once',
        description: `Up to 20 checks in one Redis round trip; \`allowed\` is true only if every check allows. By default (\`atomic: true\`) nothing is consumed unless every check allows, so a request denied by one limit does not use up the others. The headers list each policy once, with its most restrictive result.`,
        body: MultiCheck,
        response: {
          200: jsonResponse('One decision per check.', MultiDecision, RATE_HEADERS),
          ...problemResponses(400, 401, 403, 404, 415),
        },
      },
    },
    async (request, reply) => {
      const { checks, atomic } = request.body;
      const inputs = [];
      for (const [i, c] of checks.entries()) {
        inputs.push({
          policy: await policyOf(request, c.policy, `body.checks[${i}].policy`),
          identifier: c.key,
          cost: c.cost ?? 1,
        });
      }
      const ds = await service.checkMany(principalOf(request).tenant, inputs, atomic ?? true);
      const allowed = ds.every((d) => d.allowed);
      return reply
        .headers(rateLimitHeaders(ds, headerOptions))
        .type(JSON_TYPE)
        .send(`{"allowed":${allowed},"results":[${ds.map(renderDecision).join(',')}]}`);
    },
  );

  app.post(
    '/reset',
    {
      config: { scope: RESET_SCOPE, module: 'ratelimit' },
      schema: {
        operationId: 'ratelimitReset',
        tags: TAGS,
        summary: "Reset one identifier's limit",
        description:
          'Deletes what `policy` has counted for `key` (or, for a hook policy that identifies clients by a header, for `headerValue`), so its next check starts from a full quota: to unblock a customer, or after a plan upgrade. Every gateway replica forgets a remembered denial of it at once (pub/sub; a replica cut off from pub/sub at that moment forgets all remembered denials when it reconnects). Needs the `ratelimit:reset` scope (a glob restricts the policy names, as for checks; inline definitions need it without a glob), so the keys that only check cannot reset. A 503 (Redis could not answer) leaves it unknown whether the reset happened; resets are idempotent, so retry.',
        body: Reset,
        response: {
          200: jsonResponse("The identifier's limit starts afresh.", ResetResult),
          ...problemResponses(400, 401, 403, 404, 415),
        },
      },
    },
    async (request) => {
      const { policy: spec, key, headerValue } = request.body;
      const policy = await policyOf(request, spec, 'body.policy', RESET_SCOPE);
      const identifier = key ?? headerIdentity(headerValue as string);
      const principal = principalOf(request);
      const cleared = await service.reset(principal.tenant, policy, identifier);
      request.log.info(
        {
          tenant: principal.tenant,
          apiKey: principal.keyId,
          policy: policy.name,
          key: identifier,
          cleared,
        },
        'rate-limit state reset',
      );
      return { policy: policy.name, key: identifier, cleared };
    },
  );

  // The hook: any method, any sub-path, no body needed; a body of any type is read and ignored.
  await app.register(async (hooks) => {
    hooks.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, _body, done) =>
      done(null, undefined),
    );

    const identify = (request: FastifyRequest, policy: Policy): string => {
      if (policy.identifyBy !== 'ip') {
        const v = request.headers[policy.identifyBy.header];
        const value = Array.isArray(v) ? v.join(',') : v;
        if (value !== undefined && value !== '') return headerIdentity(value);
      }
      return `ip:${request.ip}`;
    };

    async function hook(request: FastifyRequest, reply: FastifyReply) {
      const { policy: name } = request.params as { policy: string };
      const { compat } = request.query as { compat?: 'nginx' };
      const principal = principalOf(request);
      const p = policyOf(request, name, 'path.policy');
      const policy = p instanceof Promise ? await p : p;
      const identifier = identify(request, policy);
      const d = await service.check(principal.tenant, { policy, identifier, cost: 1 });
      const headers = rateLimitHeaders([d], headerOptions);
      if (!d.allowed) {
        throw new AppError(
          compat === 'nginx' ? 'QUOTA_EXCEEDED_COMPAT' : 'QUOTA_EXCEEDED',
          `Rate limit "${policy.name}" exceeded; retry in ${headers['retry-after'] ?? '1'} s.`,
          { headers, extensions: { 'violated-policies': [policy.name] } },
        );
      }
      return reply
        .headers(headers)
        .header('x-tenant-id', principal.tenant)
        .header(
          'x-ratelimit-identity',
          identifier.startsWith('h:') && policy.identifyBy !== 'ip'
            ? `header:${policy.identifyBy.header}`
            : identifier,
        )
        .type(JSON_TYPE)
        .send(renderDecision(d));
    }

    const hookConfig = {
      scope: SCOPE,
      module: 'ratelimit',
      credentialHeader: 'x-gateway-key',
      // While overloaded the hook still answers, by the policy's failure mode: a 503 would be a
      // 403 to Envoy's ext_authz and a 500 to NGINX.
      shed: false,
    } as const;
    hooks.get(
      '/hook/:policy',
      {
        config: hookConfig,
        schema: {
          operationId: 'ratelimitHook',
          tags: TAGS,
          summary: 'Rate-limit hook for API gateways',
          description: [
            "For NGINX `auth_request`, Envoy `ext_authz` (HTTP service) and Traefik `forwardAuth`: any method (GET documented here; POST, PUT, DELETE, PATCH, OPTIONS and HEAD answer the same) and any sub-path after the policy name (`/v1/ratelimit/hook/public/api/orders/7`). The hook authenticates with an API key in `X-Gateway-Key` (configured in the proxy), so the end user's Authorization header is free to identify the user.",
            'The identity limited is the client address (X-Forwarded-For from proxies in TRUSTED_PROXIES, else the peer), or a header the policy names (`identifyBy`). Allowed: 200 with the rate-limit headers, `X-Tenant-Id` and `X-RateLimit-Identity` for the upstream. Denied: 429 problem (`quota-exceeded`, `violated-policies`) with Retry-After; 403 with `?compat=nginx`. Redis unavailable: 200 with `X-RateLimit-Degraded: true` (failureMode open) or 503 with Retry-After (closed). Never a 5xx for a denial.',
          ].join('\n\n'),
          params: HookPolicyParams,
          querystring: HookQuery,
          // The key in X-Gateway-Key is the operation's security scheme (gatewayKey).
          headers: z.looseObject({
            'x-forwarded-for': z
              .string()
              .optional()
              .describe('Client address chain, believed from TRUSTED_PROXIES.'),
          }),
          response: {
            200: jsonResponse('Allowed.', DecisionSchema, {
              ...RATE_HEADERS,
              'X-Tenant-Id': {
                type: 'string',
                description: 'Tenant of the hook key (for the upstream).',
              },
              'X-RateLimit-Identity': {
                type: 'string',
                description: 'What was limited: `ip:<address>` or `header:<name>`.',
              },
            }),
            ...problemResponses(400, 401, 403, 404, 429),
          },
        },
      },
      hook,
    );
    const others = ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const;
    hooks.route({
      method: [...others],
      url: '/hook/:policy',
      config: hookConfig,
      schema: { hide: true, params: HookParams, querystring: HookQuery },
      handler: hook,
    });
    hooks.route({
      method: ['GET', ...others],
      url: '/hook/:policy/*',
      config: hookConfig,
      schema: { hide: true, params: HookParams, querystring: HookQuery },
      handler: hook,
    });
  });
};

export interface RatelimitAdminRoutesOptions {
  store: PolicyStore;
}

/** A tenant admin acting on another tenant gets the answer for a tenant that does not exist. */
function requireTenantAccess(request: FastifyRequest, tenant: string): void {
  const p = principalOf(request);
  if (p.kind !== 'operator' && p.tenant !== tenant)
    throw new AppError('TENANT_NOT_FOUND', `No tenant "${tenant}".`);
}

/** /v1/admin/tenants/{tenant}/policies: a tenant's named policies (operator or tenant admin). */
export const ratelimitAdminRoutes: FastifyPluginAsyncZod<RatelimitAdminRoutesOptions> = async (
  app,
  { store },
) => {
  const config = { auth: 'admin', module: 'ratelimit' } as const;
  const tags = ['ratelimit', 'admin'];

  app.get(
    '/:tenant/policies',
    {
      config,
      schema: {
        operationId: 'adminListPolicies',
        tags,
        summary: "List a tenant's rate-limit policies",
        description:
          'Every policy the tenant can name, with where its definition comes from: the admin API, the policies file (for this tenant, or global), or the built-in defaults.',
        params: TenantPolicyParams,
        response: {
          200: jsonResponse('The effective policies.', PolicyList),
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request) => {
      requireTenantAccess(request, request.params.tenant);
      return { shadowAll: store.shadowAll(), policies: await store.list(request.params.tenant) };
    },
  );

  app.put(
    '/:tenant/policies/:name',
    {
      config,
      schema: {
        operationId: 'adminPutPolicy',
        tags,
        summary: 'Create or replace a rate-limit policy',
        description:
          'Stored in Redis and in effect on every replica within a moment (pub/sub; at the latest after AUTH_CACHE_TTL_MS). It takes precedence over a file or built-in policy of the same name for this tenant. Limit state is kept when only options change; changing the algorithm starts from a fresh state.',
        params: PolicyParams,
        body: PolicySummarySchema.shape.definition,
        response: {
          200: jsonResponse('Replaced.', PolicySummarySchema),
          201: jsonResponse('Created.', PolicySummarySchema),
          ...problemResponses(400, 401, 403, 404, 409, 415),
        },
      },
    },
    async (request, reply) => {
      const { tenant, name } = request.params;
      requireTenantAccess(request, tenant);
      const created = await store.put(tenant, name, request.body);
      return reply
        .code(created ? 201 : 200)
        .send({ name, source: 'api', definition: request.body });
    },
  );

  app.delete(
    '/:tenant/policies/:name',
    {
      config,
      schema: {
        operationId: 'adminDeletePolicy',
        tags,
        summary: 'Delete an API-managed rate-limit policy',
        description: 'The file or built-in policy of the same name, if any, applies again.',
        params: PolicyParams,
        response: { 204: emptyResponse('Deleted.'), ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      const { tenant, name } = request.params;
      requireTenantAccess(request, tenant);
      if (!(await store.delete(tenant, name))) {
        throw new AppError(
          'POLICY_NOT_FOUND',
          `Tenant "${tenant}" has no API-managed policy "${name}".`,
        );
      }
      return reply.code(204).send();
    },
  );
};
