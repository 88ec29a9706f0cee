/**
 * envoyproxy/ratelimit compatibility: its descriptor configuration and its HTTP `/json` call, so
 * that what calls envoyproxy/ratelimit today (Envoy Lua filters, services, scripts) can call the
 * gateway with the same request, get the same answer, and keep its limits file.
 *
 * Configuration: the policies file's `envoy` list, each item one of envoyproxy/ratelimit's config
 * files as it stands (`domain`, and a tree of `descriptors` with `key`, `value`, `rate_limit`
 * {`requests_per_unit`, `unit`, `unlimited`, `name`, `replaces`}, `shadow_mode`,
 * `detailed_metric`). Loading checks what envoyproxy/ratelimit checks: unknown keys, empty keys,
 * duplicate descriptors and domains, units, `unlimited` with a unit, `replaces`.
 *
 * Lookup follows envoyproxy/ratelimit's `GetLimit`: per request entry, `key_value` first, then a
 * value ending in `*` as a prefix, then the bare `key` (a default for any value); the limit
 * applies when the last entry lands on a descriptor with a `rate_limit`. Each limit is a fixed
 * window of its unit aligned to the epoch, as theirs is, counted per tenant and per request
 * descriptor (domain and every entry), so two tenants never share a counter. The policies file's
 * `envoyOptions` add to a domain's limits what their files have no place for: leases, the failure
 * mode and the Redis timeout.
 */
import { hash } from 'node:crypto';
import { z } from 'zod';
import {
  type EnvoyDomainConfig,
  type EnvoyDomainOptions,
  type Policy,
  type YamlDescriptor,
  compilePolicy,
} from './policy.js';

/** Seconds per unit, as envoyproxy/ratelimit's UnitToDivider has them (a month is 30 days). */
export const UNIT_SECONDS = {
  SECOND: 1,
  MINUTE: 60,
  HOUR: 3600,
  DAY: 86_400,
  WEEK: 604_800,
  MONTH: 2_592_000,
  YEAR: 31_536_000,
} as const;
export type Unit = keyof typeof UNIT_SECONDS;
const UNIT_NAMES = Object.keys(UNIT_SECONDS) as Unit[];
/** The proto enum's numbers (RateLimitResponse.RateLimit.Unit), which protojson also accepts. */
const UNIT_BY_NUMBER: Record<number, Unit> = {
  1: 'SECOND',
  2: 'MINUTE',
  3: 'HOUR',
  4: 'DAY',
  5: 'MONTH',
  6: 'YEAR',
  7: 'WEEK',
};

/** Most descriptors in one request (Envoy sends one per matching rate_limits action). */
export const MAX_ENVOY_DESCRIPTORS = 64;
/** Most entries in one request descriptor. */
export const MAX_ENVOY_ENTRIES = 16;
/** Longest descriptor value, in characters (a header's, a path's). */
export const MAX_ENVOY_VALUE_LENGTH = 8192;
/** Identifiers of more bytes than this are stored as a digest. */
const MAX_PLAIN_IDENTIFIER_BYTES = 512;
/** Most dynamic limits (`limit` in a request descriptor) kept compiled. */
const DYNAMIC_CACHE_MAX = 1000;
/** The name part of the Redis keys of envoy descriptors: no named policy can start with '~'. */
const STATE_NAME = '~envoy';

export interface EnvoyLimit {
  /** `<domain>.<key>_<value>.<key>...` as envoyproxy/ratelimit names it (stats, headers). */
  readonly fullKey: string;
  readonly unit: Unit;
  readonly requestsPerUnit: number;
  readonly unlimited: boolean;
  readonly name: string | undefined;
  readonly replaces: readonly string[];
  /** A fixed window of the unit, aligned to the epoch; undefined when unlimited. */
  readonly policy: Policy | undefined;
}

interface Node {
  readonly children: Map<string, Node>;
  /** Child keys ending in '*', in file order, without the '*'. */
  readonly wildcards: string[];
  readonly limit: EnvoyLimit | undefined;
}

/** A domain's descriptor tree, and the gateway's options for its limits (`envoyOptions`). */
interface Domain extends Node {
  readonly options: EnvoyDomainOptions;
}

export interface EnvoyEntry {
  key: string;
  value: string;
}

export interface EnvoyRequestLimit {
  requestsPerUnit: number;
  unit: Unit;
}

/** A printable-ASCII form of a config key, for metric labels and Structured Field strings. */
const printable = (s: string): string => s.replace(/[^\x20-\x7e]/g, '?');

function fixedWindow(
  name: string,
  requestsPerUnit: number,
  unit: Unit,
  shadow: boolean,
  options: EnvoyDomainOptions,
): Policy {
  return compilePolicy(
    name,
    'file',
    {
      algorithm: 'fixed_window',
      limit: requestsPerUnit,
      windowMs: UNIT_SECONDS[unit] * 1000,
      calendar: true,
      ...(shadow ? { shadow: true } : {}),
      ...options,
    },
    STATE_NAME,
  );
}

function compileLimit(
  d: YamlDescriptor,
  fullKey: string,
  where: string,
  options: EnvoyDomainOptions,
): EnvoyLimit | undefined {
  const rl = d.rate_limit;
  if (rl === undefined) return undefined;
  const upper = rl.unit?.toUpperCase();
  const unit = UNIT_NAMES.find((u) => u === upper);
  const unlimited = rl.unlimited ?? false;
  if (unlimited && unit !== undefined) {
    throw new Error(`${where}: should not specify rate limit unit when unlimited`);
  }
  if (!unlimited && unit === undefined) {
    throw new Error(
      `${where}: invalid rate limit unit '${rl.unit ?? ''}' (one of ${UNIT_NAMES.join(', ').toLowerCase()})`,
    );
  }
  const replaces = (rl.replaces ?? []).map((r) => r.name);
  if (replaces.some((r) => r === '')) {
    throw new Error(`${where}: should not have an empty replaces entry`);
  }
  if (rl.name !== undefined && replaces.includes(rl.name)) {
    throw new Error(`${where}: replaces should not contain name of same descriptor`);
  }
  const requestsPerUnit = rl.requests_per_unit ?? 0;
  const name = printable(fullKey);
  return {
    fullKey,
    unit: unit ?? 'SECOND',
    requestsPerUnit,
    unlimited,
    name: rl.name === '' ? undefined : rl.name,
    replaces,
    policy:
      unlimited || unit === undefined
        ? undefined
        : fixedWindow(name, requestsPerUnit, unit, d.shadow_mode ?? false, options),
  };
}

function compileLevel(
  descriptors: YamlDescriptor[],
  parentKey: string,
  where: string,
  options: EnvoyDomainOptions,
): Node {
  const children = new Map<string, Node>();
  const wildcards: string[] = [];
  descriptors.forEach((d, i) => {
    const at = `${where}.descriptors[${i}]`;
    if (d.key === '') throw new Error(`${at}: descriptor has empty key`);
    const finalKey = d.value === undefined || d.value === '' ? d.key : `${d.key}_${d.value}`;
    const fullKey = parentKey + finalKey;
    if (children.has(finalKey)) {
      throw new Error(`${at}: duplicate descriptor composite key '${fullKey}'`);
    }
    const child = compileLevel(d.descriptors ?? [], `${fullKey}.`, at, options);
    children.set(finalKey, { ...child, limit: compileLimit(d, fullKey, at, options) });
    if (finalKey.endsWith('*')) wildcards.push(finalKey.slice(0, -1));
  });
  return { children, wildcards, limit: undefined };
}

/**
 * The domains of the policies file's `envoy` list, compiled with their `envoyOptions`; throws
 * naming the first problem. Among them: options for a domain the list does not have (a misspelt
 * name would otherwise leave the limits it meant without them, silently).
 */
export function compileEnvoyConfig(
  configs: readonly EnvoyDomainConfig[],
  options: Readonly<Record<string, EnvoyDomainOptions>> = {},
): Map<string, Domain> {
  const domains = new Map<string, Domain>();
  configs.forEach((c, i) => {
    const where = `envoy[${i}]`;
    if (c.domain === '') throw new Error(`${where}: config file cannot have empty domain`);
    if (domains.has(c.domain)) throw new Error(`${where}: duplicate domain '${c.domain}'`);
    const own = Object.hasOwn(options, c.domain) ? (options[c.domain] as EnvoyDomainOptions) : {};
    domains.set(c.domain, {
      ...compileLevel(c.descriptors ?? [], `${c.domain}.`, where, own),
      options: own,
    });
  });
  for (const name of Object.keys(options)) {
    if (!domains.has(name)) {
      throw new Error(`envoyOptions.${name}: no domain '${name}' in the envoy list`);
    }
  }
  return domains;
}

export type EnvoyDomains = ReturnType<typeof compileEnvoyConfig>;

/**
 * The limit that applies to one request descriptor, as envoyproxy/ratelimit's GetLimit finds it,
 * or undefined (no limit: the descriptor is allowed and counted nowhere).
 */
export function findLimit(
  domains: EnvoyDomains,
  domain: string,
  entries: readonly EnvoyEntry[],
): EnvoyLimit | undefined {
  const root = domains.get(domain);
  if (root === undefined) return undefined;
  let level: Node = root;
  let found: EnvoyLimit | undefined;
  for (const [i, entry] of entries.entries()) {
    const keyValue = `${entry.key}_${entry.value}`;
    let next: Node | undefined = level.children.get(keyValue);
    if (next === undefined) {
      const prefix = level.wildcards.find((w) => keyValue.startsWith(w));
      if (prefix !== undefined) next = level.children.get(`${prefix}*`);
    }
    next ??= level.children.get(entry.key);
    if (next === undefined) break;
    // A limit applies only where the request's descriptor ends: a deeper request is not limited
    // by a shallower descriptor.
    if (next.limit !== undefined && i === entries.length - 1) found = next.limit;
    if (next.children.size === 0) break;
    level = next;
  }
  return found;
}

/**
 * Drops the limits another matched limit `replaces` (by `name`), as envoyproxy/ratelimit does:
 * the more specific limit stands in for the general one.
 */
export function applyReplaces(
  limits: readonly (EnvoyLimit | undefined)[],
): (EnvoyLimit | undefined)[] {
  const replaced = new Set(limits.flatMap((l) => l?.replaces ?? []));
  if (replaced.size === 0) return [...limits];
  return limits.map((l) => (l?.name !== undefined && replaced.has(l.name) ? undefined : l));
}

/**
 * Limits a request descriptor carries itself (Envoy's per-route `limit` override), with the
 * options of their domain.
 */
export function createDynamicLimits() {
  const compiled = new Map<string, EnvoyLimit>();
  return (domain: string, limit: EnvoyRequestLimit, options: EnvoyDomainOptions): EnvoyLimit => {
    // The options too: a reload that changes them must not find the limit compiled with the old.
    const id = `${domain}\n${limit.requestsPerUnit}\n${limit.unit}\n${options.leaseMs}\n${options.failureMode}\n${options.timeoutMs}`;
    let l = compiled.get(id);
    if (l === undefined) {
      if (compiled.size >= DYNAMIC_CACHE_MAX)
        compiled.delete(compiled.keys().next().value as string);
      // One metric label per domain, however many request limits its callers send.
      const name = printable(`${domain}.request_limit`);
      l = {
        fullKey: name,
        unit: limit.unit,
        requestsPerUnit: limit.requestsPerUnit,
        unlimited: false,
        name: undefined,
        replaces: [],
        policy: fixedWindow(name, limit.requestsPerUnit, limit.unit, false, options),
      };
      compiled.set(id, l);
    }
    return l;
  };
}

/**
 * The identifier of one request descriptor in Redis keys: the domain and every entry, as a JSON
 * array (envoyproxy/ratelimit joins them with '_' and '.', which two different descriptors can
 * share; JSON cannot). Past MAX_PLAIN_IDENTIFIER_BYTES, `#` and the SHA-256 of that array,
 * so a long header or path value keeps its own counter and a short key: never a refused call,
 * which Envoy would turn into an unlimited request.
 */
export function envoyIdentifier(domain: string, entries: readonly EnvoyEntry[]): string {
  const parts = [domain];
  for (const e of entries) parts.push(e.key, e.value);
  const json = JSON.stringify(parts);
  return Buffer.byteLength(json, 'utf8') <= MAX_PLAIN_IDENTIFIER_BYTES
    ? json
    : `#${hash('sha256', json, 'base64url')}`;
}

/** Seconds until the current window of `unit` ends (their `duration_until_reset`). */
export function secondsUntilReset(unit: Unit, nowMs: number): number {
  const w = UNIT_SECONDS[unit];
  return w - (Math.floor(nowMs / 1000) % w);
}

/**
 * A unit as protojson may send it: the enum's name or its number (no transform, so the request's
 * JSON Schema keeps its examples; `unitOf` maps it).
 */
export const UnitSchema = z
  .union([
    z.enum(UNIT_NAMES as [Unit, ...Unit[]]),
    z.number().int().min(1).max(7).describe('The proto enum number (1 SECOND ... 6 YEAR, 7 WEEK).'),
  ])
  .describe('SECOND, MINUTE, HOUR, DAY, WEEK, MONTH (30 days) or YEAR (365 days).');

export const unitOf = (u: z.infer<typeof UnitSchema>): Unit =>
  typeof u === 'number' ? (UNIT_BY_NUMBER[u] as Unit) : u;
