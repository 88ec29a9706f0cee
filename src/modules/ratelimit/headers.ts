/**
 * Rate-limit response headers: `RateLimit-Policy` and `RateLimit` as
 * draft-ietf-httpapi-ratelimit-headers-11 defines them (Structured Field lists), the legacy
 * `X-RateLimit-Limit/-Remaining/-Reset` trio (Reset in seconds from now, as @fastify/rate-limit
 * and envoy send it; not an epoch time), `Retry-After` (seconds) on denials, and
 * `X-RateLimit-Degraded: true` when Redis could not decide and the policy failed open.
 */
import type { Decision } from './service.js';

export interface HeaderOptions {
  legacy: boolean;
}

const seconds = (ms: number): number => Math.ceil(ms / 1000);

/**
 * The headers for one or more decisions (a `_check` call lists each policy once, with its most
 * restrictive result). Unlimited policies add nothing.
 */
export function rateLimitHeaders(
  decisions: readonly Decision[],
  options: HeaderOptions,
): Record<string, string> {
  if (decisions.length === 1) return single(decisions[0] as Decision, options);
  const byPolicy = new Map<string, Decision>();
  for (const d of decisions) {
    if (d.limit === null || d.remaining === null) continue;
    const seen = byPolicy.get(d.policy);
    if (seen === undefined || (seen.remaining ?? 0) > d.remaining) byPolicy.set(d.policy, d);
  }
  const out: Record<string, string> = {};
  if (byPolicy.size > 0) {
    const list = [...byPolicy.values()];
    out['ratelimit-policy'] = list
      .map((d) => `${d.sfName};q=${d.limiter.quota};w=${d.limiter.windowSeconds}`)
      .join(', ');
    out.ratelimit = list
      .map((d) => `${d.sfName};r=${d.remaining};t=${seconds(d.resetMs)}`)
      .join(', ');
    if (options.legacy) {
      // The trio has room for one limit: the most restrictive.
      const tightest = list.reduce((a, b) => ((b.remaining ?? 0) < (a.remaining ?? 0) ? b : a));
      out['x-ratelimit-limit'] = String(tightest.limit);
      out['x-ratelimit-remaining'] = String(tightest.remaining);
      out['x-ratelimit-reset'] = String(seconds(tightest.resetMs));
    }
  }
  const retry = Math.max(0, ...decisions.filter((d) => !d.allowed).map((d) => d.retryAfterMs));
  if (retry > 0) out['retry-after'] = String(Math.max(1, seconds(retry)));
  if (decisions.some((d) => d.degraded)) out['x-ratelimit-degraded'] = 'true';
  return out;
}

/** The common case, one decision: no intermediate collections. */
function single(d: Decision, options: HeaderOptions): Record<string, string> {
  const out: Record<string, string> = {};
  if (d.limit !== null && d.remaining !== null) {
    const t = seconds(d.resetMs);
    out['ratelimit-policy'] = `${d.sfName};q=${d.limiter.quota};w=${d.limiter.windowSeconds}`;
    out.ratelimit = `${d.sfName};r=${d.remaining};t=${t}`;
    if (options.legacy) {
      out['x-ratelimit-limit'] = String(d.limit);
      out['x-ratelimit-remaining'] = String(d.remaining);
      out['x-ratelimit-reset'] = String(t);
    }
  }
  if (!d.allowed && d.retryAfterMs > 0)
    out['retry-after'] = String(Math.max(1, seconds(d.retryAfterMs)));
  if (d.degraded) out['x-ratelimit-degraded'] = 'true';
  return out;
}
