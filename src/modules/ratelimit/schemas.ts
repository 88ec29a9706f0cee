/** Request and response schemas of the rate-limit routes. */
import { z } from 'zod';
import { MAX_KEY_BYTES, TENANT_ID_PATTERN, checkUserKey } from '../../redis/keys.js';
import {
  MAX_ENVOY_DESCRIPTORS,
  MAX_ENVOY_ENTRIES,
  MAX_ENVOY_VALUE_LENGTH,
  UNIT_SECONDS,
  type Unit,
  UnitSchema,
} from './envoy.js';
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

/** The documented hook route's path: the sub-path after the policy is its own route (hidden). */
export const HookPolicyParams = z.object({ policy: PolicyName });
export const HookParams = HookPolicyParams.extend({ '*': z.string().optional() });
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

export const PolicyList = z
  .object({
    shadowAll: z
      .boolean()
      .describe(
        "true while the policies file's `shadow: true` puts every limit in shadow mode: none of these denies anything, whatever its own `shadow`.",
      ),
    policies: z.array(PolicySummarySchema),
  })
  .meta({
    id: 'RateLimitPolicyList',
    examples: [
      {
        shadowAll: false,
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

/*
 * envoyproxy/ratelimit's RateLimitRequest and RateLimitResponse as protojson writes and reads them
 * (lowerCamelCase names; the proto's snake_case names are accepted too, as protojson accepts them).
 */
const Uint32 = z.number().int().min(0).max(4_294_967_295);
const HitsAddend = Uint32.describe(
  'Units this request adds (envoyproxy/ratelimit: 0 or absent counts as 1).',
);

/** Exactly one of a field's two protojson names. */
function oneName(v: Record<string, unknown>, ctx: z.RefinementCtx, camel: string, snake: string) {
  if (v[camel] !== undefined && v[snake] !== undefined) {
    ctx.addIssue({ code: 'custom', path: [snake], message: `give ${camel} or ${snake}, not both` });
  }
}

const EnvoyEntrySchema = z.strictObject({
  key: z.string().min(1).max(256),
  value: z
    .string()
    .max(MAX_ENVOY_VALUE_LENGTH)
    .optional()
    .describe('Absent: the empty value. Long values are stored as a digest.'),
});

const EnvoyRequestLimitSchema = z
  .strictObject({
    requestsPerUnit: Uint32.optional(),
    requests_per_unit: Uint32.optional(),
    unit: UnitSchema,
  })
  .superRefine((v, ctx) => oneName(v, ctx, 'requestsPerUnit', 'requests_per_unit'))
  .describe(
    "A limit the caller sets for this descriptor instead of the configuration's (Envoy's per-route override); applies when the domain is configured.",
  );

const EnvoyDescriptorSchema = z
  .strictObject({
    entries: z.array(EnvoyEntrySchema).min(1).max(MAX_ENVOY_ENTRIES),
    limit: EnvoyRequestLimitSchema.optional(),
    hitsAddend: HitsAddend.optional(),
    hits_addend: HitsAddend.optional(),
  })
  .superRefine((v, ctx) => oneName(v, ctx, 'hitsAddend', 'hits_addend'));

export const EnvoyRequest = z
  .strictObject({
    domain: z.string().min(1).max(256),
    descriptors: z.array(EnvoyDescriptorSchema).min(1).max(MAX_ENVOY_DESCRIPTORS),
    hitsAddend: HitsAddend.optional(),
    hits_addend: HitsAddend.optional(),
  })
  .superRefine((v, ctx) => oneName(v, ctx, 'hitsAddend', 'hits_addend'))
  .meta({
    id: 'EnvoyRateLimitRequest',
    description:
      "envoyproxy/ratelimit's RateLimitRequest as JSON: a domain of the policies file's `envoy` list and up to 64 descriptors, each a list of up to 16 key/value entries.",
    examples: [
      {
        domain: 'edge',
        descriptors: [
          { entries: [{ key: 'remote_address', value: '203.0.113.7' }] },
          {
            entries: [
              { key: 'remote_address', value: '203.0.113.7' },
              { key: 'path', value: '/login' },
            ],
          },
        ],
      },
    ],
  });
export type EnvoyRequest = z.infer<typeof EnvoyRequest>;

const EnvoyCode = z.enum(['OK', 'OVER_LIMIT']);

export const EnvoyResponse = z
  .object({
    overallCode: EnvoyCode.describe('OVER_LIMIT when any descriptor is over its limit.'),
    statuses: z
      .array(
        z.object({
          code: EnvoyCode,
          currentLimit: z
            .object({
              requestsPerUnit: Uint32.optional().describe('Absent when 0 (protojson).'),
              unit: z.enum(Object.keys(UNIT_SECONDS) as [Unit, ...Unit[]]),
            })
            .optional()
            .describe('The limit that applied; absent when none did (or it was unlimited).'),
          limitRemaining: Uint32.optional().describe(
            'Units left in the window; absent when 0, 4294967295 for an `unlimited` limit.',
          ),
          durationUntilReset: z
            .string()
            .optional()
            .describe('Until the window ends, as a protobuf Duration ("42s").'),
        }),
      )
      .describe('One per request descriptor, in order.'),
  })
  .meta({
    id: 'EnvoyRateLimitResponse',
    description:
      "envoyproxy/ratelimit's RateLimitResponse as protojson writes it (fields with zero values left out).",
    examples: [
      {
        overallCode: 'OVER_LIMIT',
        statuses: [
          {
            code: 'OK',
            currentLimit: { requestsPerUnit: 100, unit: 'MINUTE' },
            limitRemaining: 42,
            durationUntilReset: '17s',
          },
          {
            code: 'OVER_LIMIT',
            currentLimit: { requestsPerUnit: 5, unit: 'MINUTE' },
            durationUntilReset: '17s',
          },
        ],
      },
    ],
  });
export type EnvoyResponse = z.infer<typeof EnvoyResponse>;
