/** Request and response schemas of the rate-limit routes. */
import { z } from 'zod';
import { MAX_KEY_BYTES, TENANT_ID_PATTERN, checkUserKey } from '../../redis/keys.js';
import { PolicyDefinition, PolicyName } from './policy.js';
import { MAX_CHECKS } from './service.js';

export const Identifier = z
  .string()
  .min(1)
  .max(MAX_KEY_BYTES)
  .superRefine((k, ctx) => {
    const problem = checkUserKey(k);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
  })
  .describe(
    `What is limited: a user id, an API key id, an address...: 1..${MAX_KEY_BYTES} bytes of UTF-8 without control characters.`,
  );

const Cost = z
  .number()
  .int()
  .min(0)
  .max(1_000_000_000)
  .describe('Units this request consumes (default 1); 0 peeks without consuming.');

const PolicySpec = z
  .union([PolicyName, PolicyDefinition])
  .describe(
    'A policy name (built-in, from the policies file or the admin API) or an inline definition.',
  );

export const Check = z
  .strictObject({
    policy: PolicySpec,
    key: Identifier,
    cost: Cost.optional(),
  })
  .meta({
    id: 'RateLimitCheck',
    examples: [
      { policy: 'public', key: 'user:42' },
      {
        policy: { algorithm: 'gcra', limit: 100, periodMs: 60000, burst: 10 },
        key: 'ip:203.0.113.7',
        cost: 1,
      },
    ],
  });

export const MultiCheck = z
  .strictObject({
    checks: z.array(Check).min(1).max(MAX_CHECKS),
    atomic: z
      .boolean()
      .optional()
      .describe(
        'Default true: nothing is consumed unless every check allows. false: each allowing check consumes on its own.',
      ),
  })
  .meta({
    id: 'RateLimitMultiCheck',
    examples: [
      {
        checks: [
          { policy: 'authenticated', key: 'user:42' },
          { policy: 'bulk', key: 'org:7', cost: 2 },
        ],
      },
    ],
  });

export const Reset = z
  .strictObject({
    policy: PolicySpec,
    key: Identifier.optional().describe(
      'The identifier to reset, as checks name it; for the hook, the `X-RateLimit-Identity` it answered for an address (`ip:203.0.113.7`). Exactly one of `key` and `headerValue`.',
    ),
    headerValue: z
      .string()
      .min(1)
      .max(8192)
      .optional()
      .describe(
        'Instead of `key`, for a hook policy that identifies clients by a header (`identifyBy: "header:..."`): that header\'s value. The gateway derives the identity from it as the hook does (a hash; the value is not stored).',
      ),
  })
  .superRefine((v, ctx) => {
    if ((v.key === undefined) === (v.headerValue === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['key'],
        message: 'give exactly one of key or headerValue',
      });
    }
  })
  .meta({
    id: 'RateLimitReset',
    examples: [
      { policy: 'public', key: 'user:42' },
      { policy: 'partner-api', headerValue: 'Bearer 4f9c...' },
    ],
  });

export const ResetResult = z
  .object({
    policy: z.string().describe('The policy name ("inline" for an inline definition).'),
    key: z
      .string()
      .describe('The identifier reset (for a `headerValue`, the identity derived from it).'),
    cleared: z
      .boolean()
      .describe(
        'true: stored state was deleted; false: there was none (nothing used yet, expired, or an unlimited policy). Either way the next check starts from a full quota.',
      ),
  })
  .meta({
    id: 'RateLimitResetResult',
    examples: [{ policy: 'public', key: 'user:42', cleared: true }],
  });

export const DecisionSchema = z
  .object({
    allowed: z
      .boolean()
      .describe('Whether to serve the request. A denial is a result, not an error.'),
    limit: z
      .number()
      .int()
      .nullable()
      .describe(
        'The quota: capacity (token bucket), burst (GCRA) or limit per window; null when unlimited.',
      ),
    remaining: z
      .number()
      .int()
      .nullable()
      .describe('Units still available now; null when unlimited.'),
    resetMs: z
      .number()
      .int()
      .describe('Until the quota is fully restored if nothing more is consumed.'),
    retryAfterMs: z
      .number()
      .int()
      .describe('0 when allowed; else until this cost would be allowed.'),
    policy: z.string().describe('The policy name ("inline" for an inline definition).'),
    degraded: z
      .boolean()
      .optional()
      .describe('true: Redis could not decide in time and the policy fails open (not counted).'),
    shadowDenied: z
      .boolean()
      .optional()
      .describe('true: a shadow policy would have denied this request (it is allowed).'),
  })
  .meta({
    id: 'RateLimitDecision',
    examples: [
      { allowed: true, limit: 100, remaining: 99, resetMs: 600, retryAfterMs: 0, policy: 'public' },
      {
        allowed: false,
        limit: 100,
        remaining: 0,
        resetMs: 60000,
        retryAfterMs: 600,
        policy: 'public',
      },
    ],
  });

export const MultiDecision = z
  .object({
    allowed: z.boolean().describe('true only when every check allows.'),
    results: z.array(DecisionSchema).describe('One per check, in order.'),
  })
  .meta({
    id: 'RateLimitMultiDecision',
    examples: [
      {
        allowed: false,
        results: [
          {
            allowed: true,
            limit: 1000,
            remaining: 999,
            resetMs: 60,
            retryAfterMs: 0,
            policy: 'authenticated',
          },
          {
            allowed: false,
            limit: 10,
            remaining: 1,
            resetMs: 41000,
            retryAfterMs: 41000,
            policy: 'bulk',
          },
        ],
      },
    ],
  });

export const HookParams = z.object({ policy: PolicyName, '*': z.string().optional() });
export const HookQuery = z.object({
  compat: z
    .enum(['nginx'])
    .optional()
    .describe(
      'nginx: deny with 403 instead of 429 (NGINX auth_request turns any other status into 500).',
    ),
});

const TenantId = z.string().regex(TENANT_ID_PATTERN, 'must be a tenant id');
export const TenantPolicyParams = z.object({ tenant: TenantId });
export const PolicyParams = z.object({ tenant: TenantId, name: PolicyName });

export const PolicySummarySchema = z
  .object({
    name: z.string(),
    source: z
      .enum(['builtin', 'file', 'tenant-file', 'api', 'inline'])
      .describe('Where the effective definition comes from (api > tenant-file > file > builtin).'),
    definition: PolicyDefinition,
  })
  .meta({
    id: 'RateLimitPolicy',
    examples: [
      {
        name: 'login',
        source: 'api',
        definition: { algorithm: 'fixed_window', limit: 5, windowMs: 60000, failureMode: 'closed' },
      },
    ],
  });

export const PolicyList = z.object({ policies: z.array(PolicySummarySchema) }).meta({
  id: 'RateLimitPolicyList',
  examples: [
    {
      policies: [
        {
          name: 'bulk',
          source: 'builtin',
          definition: { algorithm: 'fixed_window', limit: 10, windowMs: 60000 },
        },
      ],
    },
  ],
});
