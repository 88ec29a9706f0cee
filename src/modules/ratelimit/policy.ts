/**
 * Rate-limit policies: the definition format (shared by inline checks, the policies file and the
 * admin API), its compilation into what the check script takes, the built-in defaults, and the
 * policies file.
 *
 * A definition names an algorithm and its parameters, plus options any of them may carry:
 * `failureMode` (`open` allows, flagged, when Redis cannot answer within `timeoutMs`; `closed`
 * answers 503), `shadow` (always allow, record what would have been denied), `identifyBy` (what
 * the API-gateway hook limits: the client address or a request header) and `overrides` (another
 * definition for identifiers matching a glob; the first match wins).
 */
import { hash } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

/** Largest `limit` of a sliding log: the log holds one sorted-set member per unit. */
export const MAX_LOG_LIMIT = 1000;
/** Longest window or period: one year. */
const MAX_WINDOW_MS = 365 * 24 * 3600 * 1000;
const MAX_QUOTA = 1_000_000_000;
export const MAX_OVERRIDES = 100;
/** Bounds of `leaseMs`. */
export const MIN_LEASE_MS = 100;
export const MAX_LEASE_MS = 10_000;
/**
 * A lease holds at most this fraction of the quota, and a quota below LEASE_MIN_QUOTA is never
 * leased: units a replica holds and does not use are lost, which a small limit would feel.
 */
const LEASE_QUOTA_SHARE = 16;
export const LEASE_MIN_QUOTA = LEASE_QUOTA_SHARE;

export const POLICY_NAME_PATTERN = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
export const PolicyName = z
  .string()
  .regex(POLICY_NAME_PATTERN, 'must be 1..64 of a-z 0-9 _ . - (starting with a letter or digit)')
  .describe('A policy name: 1..64 of a-z 0-9 _ . - (starting with a letter or digit).');

const IdentifyBy = z
  .string()
  .regex(/^(ip|header:[A-Za-z0-9-]{1,64})$/, 'must be "ip" or "header:<Header-Name>"')
  .describe(
    'What the API-gateway hook limits: `ip` (the client address, default) or `header:<Name>` (e.g. `header:X-Api-Key`; hashed before use; a request without it is limited by address).',
  );

const options = {
  failureMode: z
    .enum(['open', 'closed'])
    .optional()
    .describe(
      'When Redis cannot answer within timeoutMs: `open` (default) allows and flags the answer degraded; `closed` answers 503.',
    ),
  timeoutMs: z
    .number()
    .int()
    .min(1)
    .max(5000)
    .optional()
    .describe('How long a decision may wait for Redis (default 50).'),
  shadow: z
    .boolean()
    .optional()
    .describe('Always allow, but count and report what would have been denied (default false).'),
  identifyBy: IdentifyBy.optional(),
};

const limit = (max: number) => z.number().int().min(1).max(max);
const windowMs = z.number().int().min(1).max(MAX_WINDOW_MS);
const leaseMs = z
  .number()
  .int()
  .min(MIN_LEASE_MS)
  .max(MAX_LEASE_MS)
  .optional()
  .describe(
    `Lets each gateway replica reserve units of a busy identifier in Redis and give them out itself for up to this long (${MIN_LEASE_MS}..${MAX_LEASE_MS} ms; default: off). Far fewer Redis calls for identifiers that make many requests, and never more admitted than the limit; units a replica reserved but did not use count as used until its next check of that identifier gives them back (if their window, or the bucket's lease generation, still counts), and a replica's \`remaining\` does not see what the others used meanwhile. A quota (capacity, burst or limit) under ${LEASE_MIN_QUOTA} is never leased, nor is sliding_log. Overrides without their own leaseMs take the policy's.`,
  );

function algorithms<O extends z.ZodRawShape>(extra: O) {
  return [
    z.strictObject({
      algorithm: z.literal('token_bucket'),
      capacity: limit(MAX_QUOTA).describe('Most tokens the bucket holds (the burst).'),
      refillPerSecond: z
        .number()
        .positive()
        .max(MAX_QUOTA)
        .describe('Tokens added per second, continuously (may be fractional: 1.67).'),
      leaseMs,
      ...options,
      ...extra,
    }),
    z.strictObject({
      algorithm: z.literal('gcra'),
      limit: limit(MAX_QUOTA).describe('Requests per period, evenly spaced.'),
      periodMs: windowMs,
      burst: limit(MAX_QUOTA)
        .optional()
        .describe('How many may arrive back to back (default 1: perfectly smooth).'),
      leaseMs,
      ...options,
      ...extra,
    }),
    z.strictObject({
      algorithm: z.literal('sliding_log'),
      limit: limit(MAX_LOG_LIMIT).describe(
        `Most units in any window (at most ${MAX_LOG_LIMIT}: the log keeps one entry per unit; use sliding_window beyond).`,
      ),
      windowMs,
      ...options,
      ...extra,
    }),
    z.strictObject({
      algorithm: z.literal('sliding_window'),
      limit: limit(MAX_QUOTA),
      windowMs,
      leaseMs,
      ...options,
      ...extra,
    }),
    z.strictObject({
      algorithm: z.literal('fixed_window'),
      limit: limit(MAX_QUOTA),
      windowMs,
      calendar: z
        .boolean()
        .optional()
        .describe(
          'Align windows to the epoch (UTC minute/hour/day boundaries) instead of starting one at the first request after the last ended (default false).',
        ),
      leaseMs,
      ...options,
      ...extra,
    }),
    z.strictObject({ algorithm: z.literal('unlimited'), ...options, ...extra }),
  ] as const;
}

const BaseDefinition = z.discriminatedUnion('algorithm', algorithms({})).meta({
  id: 'PolicyLimit',
  description: 'An algorithm with its parameters and options (as a policy, without overrides).',
});

const Override = z.strictObject({
  match: z
    .string()
    .min(1)
    .max(256)
    .describe('Identifiers this applies to: a literal, or a glob with * and ?.'),
  policy: BaseDefinition,
});

export const PolicyDefinition = z
  .discriminatedUnion(
    'algorithm',
    algorithms({
      overrides: z
        .array(Override)
        .max(MAX_OVERRIDES)
        .optional()
        .describe('Other limits for some identifiers; the first match wins.'),
    }),
  )
  .meta({
    id: 'PolicyDefinition',
    description:
      'A rate-limit policy: an algorithm with its parameters, plus failureMode, timeoutMs, shadow, identifyBy and overrides.',
    examples: [
      { algorithm: 'token_bucket', capacity: 100, refillPerSecond: 1.67 },
      { algorithm: 'gcra', limit: 100, periodMs: 60000, burst: 10 },
      { algorithm: 'sliding_window', limit: 100, windowMs: 60000, failureMode: 'closed' },
      { algorithm: 'token_bucket', capacity: 20000, refillPerSecond: 1000, leaseMs: 1000 },
    ],
  });
export type PolicyDefinition = z.infer<typeof PolicyDefinition>;
type BaseDefinition = z.infer<typeof BaseDefinition>;

export type AlgorithmCode = 'tb' | 'gcra' | 'slog' | 'swin' | 'fwin';

/** What a check needs: the script's arguments and what the headers say. */
export interface Limiter {
  readonly algorithm: PolicyDefinition['algorithm'];
  /** undefined for `unlimited` (no Redis call). */
  readonly code: AlgorithmCode | undefined;
  readonly p1: number;
  readonly p2: number;
  readonly p3: string;
  /** The quota `q` and window `w` (seconds) of RateLimit-Policy; `limit` of the answer. */
  readonly quota: number;
  readonly windowSeconds: number;
  /** Stable id of the parameters, part of the state key of inline policies. */
  readonly fingerprint: string;
  /** The script's per-check arguments but the cost: code, p1, p2, p3 (as text, once). */
  readonly args: readonly [string, string, string, string];
  /** How long a replica may hold a lease of this limit's units, ms; 0: no leases. */
  readonly leaseMs: number;
  /** Most units one lease may hold (a share of the quota). */
  readonly leaseMax: number;
}

export interface Policy extends Limiter {
  /** The policy's name, or 'inline'. */
  readonly name: string;
  /** Where it came from. */
  readonly source: 'builtin' | 'file' | 'tenant-file' | 'api' | 'inline';
  /** The name in Redis keys: the policy name, or `~<fingerprint>` for inline definitions. */
  readonly stateName: string;
  readonly failureMode: 'open' | 'closed';
  readonly timeoutMs: number;
  readonly shadow: boolean;
  readonly identifyBy: 'ip' | { header: string };
  readonly definition: PolicyDefinition;
  /** The policy name as a Structured Field string, for the rate-limit headers. */
  readonly sfName: string;
  /** The limiter for an identifier (an override's, or the policy's own). */
  limiterFor(identifier: string): Limiter;
}

const DEFAULT_TIMEOUT_MS = 50;

/** `inheritedLeaseMs`: an override's, when its own definition does not say. */
function limiterOf(def: BaseDefinition, inheritedLeaseMs?: number): Limiter {
  const l = limiterParams(def);
  const own = 'leaseMs' in def ? def.leaseMs : undefined;
  const leaseMax = Math.floor(l.quota / LEASE_QUOTA_SHARE);
  const leaseMs = l.code === 'slog' || leaseMax < 1 ? 0 : (own ?? inheritedLeaseMs ?? 0);
  return {
    ...l,
    args: [l.code ?? '', String(l.p1), String(l.p2), l.p3],
    leaseMs,
    leaseMax: leaseMs === 0 ? 0 : leaseMax,
  };
}

function limiterParams(def: BaseDefinition): Omit<Limiter, 'args' | 'leaseMs' | 'leaseMax'> {
  const fp = (...parts: (string | number)[]) =>
    hash('sha256', parts.join('|'), 'base64url').slice(0, 16);
  switch (def.algorithm) {
    case 'token_bucket': {
      const refillPerMs = def.refillPerSecond / 1000;
      return {
        algorithm: def.algorithm,
        code: 'tb',
        p1: def.capacity,
        p2: refillPerMs,
        p3: '',
        quota: def.capacity,
        windowSeconds: Math.max(1, Math.ceil(def.capacity / def.refillPerSecond)),
        fingerprint: fp('tb', def.capacity, def.refillPerSecond),
      };
    }
    case 'gcra': {
      const burst = def.burst ?? 1;
      const interval = def.periodMs / def.limit;
      return {
        algorithm: def.algorithm,
        code: 'gcra',
        p1: interval,
        p2: burst,
        p3: '',
        quota: burst,
        windowSeconds: Math.max(1, Math.ceil((interval * burst) / 1000)),
        fingerprint: fp('gcra', def.limit, def.periodMs, burst),
      };
    }
    case 'sliding_log':
    case 'sliding_window':
    case 'fixed_window': {
      const code =
        def.algorithm === 'sliding_log'
          ? 'slog'
          : def.algorithm === 'sliding_window'
            ? 'swin'
            : 'fwin';
      const calendar = def.algorithm === 'fixed_window' && def.calendar === true;
      return {
        algorithm: def.algorithm,
        code,
        p1: def.limit,
        p2: def.windowMs,
        p3: calendar ? '1' : '0',
        quota: def.limit,
        windowSeconds: Math.max(1, Math.ceil(def.windowMs / 1000)),
        fingerprint: fp(code, def.limit, def.windowMs, calendar ? 1 : 0),
      };
    }
    case 'unlimited':
      return {
        algorithm: def.algorithm,
        code: undefined,
        p1: 0,
        p2: 0,
        p3: '',
        quota: 0,
        windowSeconds: 0,
        fingerprint: 'unlimited',
      };
  }
}

/** Glob with * and ? to a predicate (literal strings compare equal). */
export function globMatcher(glob: string): (s: string) => boolean {
  if (!/[*?]/.test(glob)) return (s) => s === glob;
  const re = new RegExp(
    '^' +
      glob
        .split('')
        .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
        .join('') +
      '$',
    's',
  );
  return (s) => re.test(s);
}

/**
 * Compiles a validated definition. `stateName` replaces the name in Redis keys (envoy
 * descriptors, whose keys name the descriptor, not the limit).
 */
export function compilePolicy(
  name: string,
  source: Policy['source'],
  definition: PolicyDefinition,
  stateName?: string,
): Policy {
  const own = limiterOf(definition);
  const overrides = (definition.overrides ?? []).map((o) => ({
    matches: globMatcher(o.match),
    limiter: limiterOf(o.policy, 'leaseMs' in definition ? definition.leaseMs : undefined),
  }));
  const identifyBy = definition.identifyBy ?? 'ip';
  return {
    ...own,
    name,
    source,
    stateName: stateName ?? (source === 'inline' ? `~${own.fingerprint}` : name),
    failureMode: definition.failureMode ?? 'open',
    timeoutMs: definition.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    shadow: definition.shadow ?? false,
    sfName: `"${name.replace(/[\\"]/g, (c) => `\\${c}`)}"`,
    identifyBy:
      identifyBy === 'ip' ? 'ip' : { header: identifyBy.slice('header:'.length).toLowerCase() },
    definition,
    limiterFor:
      overrides.length === 0
        ? () => own
        : (identifier) => overrides.find((o) => o.matches(identifier))?.limiter ?? own,
  };
}

/** Shipped defaults: every tenant has these unless the policies file or the admin API says otherwise. */
export const BUILTIN_POLICIES: Readonly<Record<string, PolicyDefinition>> = {
  public: { algorithm: 'token_bucket', capacity: 100, refillPerSecond: 100 / 60 },
  authenticated: { algorithm: 'token_bucket', capacity: 1000, refillPerSecond: 1000 / 60 },
  bulk: { algorithm: 'fixed_window', limit: 10, windowMs: 60_000 },
  // 10000/min exceeds what a sliding log may hold (MAX_LOG_LIMIT): the O(1) approximation instead.
  webhooks: { algorithm: 'sliding_window', limit: 10_000, windowMs: 60_000 },
  internal: { algorithm: 'unlimited' },
};

/*
 * The `envoy` list: envoyproxy/ratelimit config files as they stand (compiled and checked further
 * in envoy.ts).
 */
// YAML scalars: envoyproxy/ratelimit reads keys and values into strings, so `value: 500` is "500".
const Scalar = z.union([z.string(), z.number(), z.boolean()]).transform(String);

const YamlRateLimit = z.strictObject({
  requests_per_unit: z.number().int().min(0).max(MAX_QUOTA).optional(),
  unit: z.string().optional(),
  unlimited: z.boolean().optional(),
  name: z.string().optional(),
  replaces: z.array(z.strictObject({ name: z.string() })).optional(),
});

export interface YamlDescriptor {
  key: string;
  value?: string | undefined;
  rate_limit?: z.infer<typeof YamlRateLimit> | undefined;
  descriptors?: YamlDescriptor[] | undefined;
  shadow_mode?: boolean | undefined;
  detailed_metric?: boolean | undefined;
}

const YamlDescriptorSchema: z.ZodType<YamlDescriptor, unknown> = z.lazy(() =>
  z.strictObject({
    key: Scalar,
    value: Scalar.optional(),
    rate_limit: YamlRateLimit.optional(),
    descriptors: z.array(YamlDescriptorSchema).optional(),
    shadow_mode: z.boolean().optional(),
    detailed_metric: z.boolean().optional(),
  }),
);

/**
 * What the gateway adds to one `envoy` domain, beside the file (which stays as envoyproxy/ratelimit
 * reads it): every limit of the domain, its descriptors' and the requests' own, takes these.
 */
export const EnvoyDomainOptions = z.strictObject({
  leaseMs,
  failureMode: options.failureMode,
  timeoutMs: options.timeoutMs.describe(
    "How long a decision may wait for Redis (default 50). Envoy's ratelimit filter waits 20 ms by default (its `timeout`) and then applies its own `failure_mode_deny`: set this below that for this side's failure mode to decide.",
  ),
});
export type EnvoyDomainOptions = z.infer<typeof EnvoyDomainOptions>;

/** One envoyproxy/ratelimit config file: a domain and its descriptors. */
export const EnvoyDomainConfig = z.strictObject({
  domain: Scalar,
  descriptors: z.array(YamlDescriptorSchema).optional(),
});
export type EnvoyDomainConfig = z.infer<typeof EnvoyDomainConfig>;

const PoliciesMap = z.record(PolicyName, PolicyDefinition);
const TenantId = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'must be a tenant id');

export const PoliciesFile = z.strictObject({
  shadow: z
    .boolean()
    .optional()
    .describe(
      'true: every limit, of every tenant and source (built-in, file, admin API, inline, envoy), is in shadow mode: nothing is denied, what would have been is counted as shadow_denied. A switch for rolling rate limiting out, or for an incident; hot-reloaded with the file.',
    ),
  policies: PoliciesMap.optional(),
  tenants: z.record(TenantId, PoliciesMap).optional(),
  quotas: z
    .record(TenantId, z.number().int().min(0).max(MAX_QUOTA))
    .optional()
    .describe('Requests per minute each API key of the tenant may make (0: no quota).'),
  envoy: z
    .array(EnvoyDomainConfig)
    .optional()
    .describe(
      'envoyproxy/ratelimit config files (domain and descriptors), for /v1/ratelimit/envoy and the gRPC rate limit service.',
    ),
  envoyOptions: z
    .record(z.string(), EnvoyDomainOptions)
    .optional()
    .describe(
      'Per `envoy` domain (by name): leaseMs, failureMode and timeoutMs for every limit of that domain. Kept apart from the envoy list, so its items stay files envoyproxy/ratelimit reads.',
    ),
});
export type PoliciesFile = z.infer<typeof PoliciesFile>;

/** Parses a policies file (JSON or YAML); throws an Error naming every problem. */
export function parsePoliciesFile(text: string, path: string): PoliciesFile {
  let raw: unknown;
  try {
    raw = /\.json$/i.test(path) ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new Error(
      `${path}: not valid ${/\.json$/i.test(path) ? 'JSON' : 'YAML'}: ${(err as Error).message}`,
    );
  }
  const parsed = PoliciesFile.safeParse(raw ?? {});
  if (!parsed.success) {
    const problems = parsed.error.issues.map(
      (i) => `${i.path.join('.') || '(root)'}: ${i.message}`,
    );
    throw new Error(`${path}: ${problems.join('; ')}`);
  }
  return parsed.data;
}
