/**
 * Where a tenant's policy of a given name comes from, most specific first: the admin API (a Redis
 * hash per tenant), the policies file's `tenants.<tenant>`, the file's global `policies`, then the
 * built-in defaults. API policies are cached in-process per tenant (refreshed after `cacheTtlMs`,
 * dropped at once when any replica announces a change over pub/sub); lookups on a warm cache are
 * synchronous. When Redis cannot be read, the last known API policies keep serving.
 */
import type { Clock } from '../../clock.js';
import { AppError } from '../../errors.js';
import type { RedisAccess } from '../../redis/client.js';
import { keys } from '../../redis/keys.js';
import { type EnvoyDomains, compileEnvoyConfig } from './envoy.js';
import {
  BUILTIN_POLICIES,
  type PoliciesFile,
  type Policy,
  PolicyDefinition,
  compilePolicy,
} from './policy.js';

/** Most policies one tenant may define through the admin API. */
export const MAX_API_POLICIES = 100;
/** After a failed read of a tenant's API policies, try again this soon. */
const RETRY_AFTER_FAILURE_MS = 1000;

export interface PolicySummary {
  name: string;
  source: Policy['source'];
  definition: PolicyDefinition;
}

interface TenantEntry {
  policies: Map<string, Policy>;
  fetchedAt: number;
  /** Set while a refresh is in flight; concurrent lookups share it. */
  loading?: Promise<TenantEntry> | undefined;
}

export interface PolicyStoreOptions {
  redis: RedisAccess;
  clock: Clock;
  cacheTtlMs: number;
  /**
   * Called whenever effective policies may have changed: one tenant's (its API policies), or
   * any tenant's (a file reload, a resubscribe that may have missed changes).
   */
  onChange?(tenant?: string): void;
  onInvalidEntry?(tenant: string, name: string, message: string): void;
}

function compileMap(
  defs: Record<string, PolicyDefinition> | undefined,
  source: Policy['source'],
): Map<string, Policy> {
  return new Map(Object.entries(defs ?? {}).map(([n, d]) => [n, compilePolicy(n, source, d)]));
}

export function createPolicyStore(opts: PolicyStoreOptions) {
  const { redis, clock } = opts;
  const builtin = compileMap(BUILTIN_POLICIES, 'builtin');
  let fileGlobal = new Map<string, Policy>();
  let fileTenants = new Map<string, Map<string, Policy>>();
  let quotas = new Map<string, number>();
  let shadowAll = false;
  let envoy: EnvoyDomains | undefined;
  const api = new Map<string, TenantEntry>();

  const fromFileOrBuiltin = (tenant: string, name: string): Policy | undefined =>
    fileTenants.get(tenant)?.get(name) ?? fileGlobal.get(name) ?? builtin.get(name);

  async function fetchTenant(
    tenant: string,
    previous: TenantEntry | undefined,
  ): Promise<TenantEntry> {
    try {
      const raw = await redis.onMaster((c) => c.hgetall(keys.gw.ratelimitPolicies(tenant)));
      const policies = new Map<string, Policy>();
      for (const [name, json] of Object.entries(raw)) {
        const parsed = PolicyDefinition.safeParse(JSON.parse(json));
        if (parsed.success) policies.set(name, compilePolicy(name, 'api', parsed.data));
        else opts.onInvalidEntry?.(tenant, name, parsed.error.message);
      }
      const entry = { policies, fetchedAt: clock.nowMs() };
      api.set(tenant, entry);
      return entry;
    } catch {
      // Serve what we knew (or nothing from the API) and try again soon.
      const entry = {
        policies: previous?.policies ?? new Map<string, Policy>(),
        fetchedAt: clock.nowMs() - opts.cacheTtlMs + RETRY_AFTER_FAILURE_MS,
      };
      api.set(tenant, entry);
      return entry;
    }
  }

  function tenantEntry(tenant: string): TenantEntry | Promise<TenantEntry> {
    const entry = api.get(tenant);
    if (entry !== undefined && clock.nowMs() - entry.fetchedAt < opts.cacheTtlMs) return entry;
    if (entry?.loading !== undefined) return entry.loading;
    const loading = fetchTenant(tenant, entry);
    if (entry !== undefined) entry.loading = loading;
    else api.set(tenant, { policies: new Map(), fetchedAt: -Infinity, loading });
    return loading;
  }

  const pick = (tenant: string, name: string, entry: TenantEntry): Policy | undefined =>
    entry.policies.get(name) ?? fromFileOrBuiltin(tenant, name);

  return {
    /** The effective policy, or undefined when no source defines it. Synchronous when cached. */
    resolve(tenant: string, name: string): Policy | undefined | Promise<Policy | undefined> {
      const entry = tenantEntry(tenant);
      if (entry instanceof Promise) return entry.then((e) => pick(tenant, name, e));
      return pick(tenant, name, entry);
    },

    /** Like resolve, but a 404 problem when the name is unknown. */
    async require(tenant: string, name: string): Promise<Policy> {
      const p = await this.resolve(tenant, name);
      if (p === undefined) {
        throw new AppError('POLICY_NOT_FOUND', `No rate-limit policy "${name}" for this tenant.`);
      }
      return p;
    },

    /** Every policy the tenant can use, with where each comes from. */
    async list(tenant: string): Promise<PolicySummary[]> {
      const entry = await fetchTenant(tenant, api.get(tenant));
      const names = new Set([
        ...builtin.keys(),
        ...fileGlobal.keys(),
        ...(fileTenants.get(tenant)?.keys() ?? []),
        ...entry.policies.keys(),
      ]);
      return [...names].sort().map((name) => {
        const p = pick(tenant, name, entry) as Policy;
        return { name, source: p.source, definition: p.definition };
      });
    },

    /** Creates or replaces an API-managed policy; true when it was created. */
    async put(tenant: string, name: string, definition: PolicyDefinition): Promise<boolean> {
      const key = keys.gw.ratelimitPolicies(tenant);
      const created = await redis.onMaster(async (c) => {
        const [exists, count] = await Promise.all([c.hexists(key, name), c.hlen(key)]);
        if (exists === 0 && count >= MAX_API_POLICIES) {
          throw new AppError(
            'CONFLICT',
            `A tenant may define at most ${MAX_API_POLICIES} policies through the API.`,
          );
        }
        await c.hset(key, name, JSON.stringify(definition));
        await c.publish(keys.channels.policiesChanged(), tenant);
        return exists === 0;
      });
      this.forget(tenant);
      return created;
    },

    /** Deletes an API-managed policy; false when the API had none of that name. */
    async delete(tenant: string, name: string): Promise<boolean> {
      const removed = await redis.onMaster(async (c) => {
        const n = await c.hdel(keys.gw.ratelimitPolicies(tenant), name);
        if (n > 0) await c.publish(keys.channels.policiesChanged(), tenant);
        return n > 0;
      });
      this.forget(tenant);
      return removed;
    },

    /** The policies file's envoyproxy/ratelimit domains; undefined when it has no `envoy` list. */
    envoyDomains(): EnvoyDomains | undefined {
      return envoy;
    },

    /** The policies file's `shadow: true`: every limit is in shadow mode. */
    shadowAll(): boolean {
      return shadowAll;
    },

    /** Requests per minute each API key of the tenant may make, when the file sets it. */
    quotaFor(tenant: string): number | undefined {
      return quotas.get(tenant);
    },

    /** Replaces what the policies file defines (at startup and on every change of the file). */
    setFile(file: PoliciesFile): void {
      // Everything that can throw first: a bad file changes nothing.
      if (file.envoyOptions !== undefined && file.envoy === undefined) {
        throw new Error('envoyOptions: there is no envoy list for them to apply to');
      }
      const envoyDomains =
        file.envoy === undefined ? undefined : compileEnvoyConfig(file.envoy, file.envoyOptions);
      envoy = envoyDomains;
      fileGlobal = compileMap(file.policies, 'file');
      fileTenants = new Map(
        Object.entries(file.tenants ?? {}).map(([t, defs]) => [t, compileMap(defs, 'tenant-file')]),
      );
      quotas = new Map(Object.entries(file.quotas ?? {}));
      shadowAll = file.shadow === true;
      opts.onChange?.();
    },

    /** Another replica changed this tenant's API policies (pub/sub). */
    forget(tenant: string): void {
      api.delete(tenant);
      opts.onChange?.(tenant);
    },

    /** Pub/sub reconnected: changes may have been missed. */
    forgetAll(): void {
      api.clear();
      opts.onChange?.();
    },
  };
}

export type PolicyStore = ReturnType<typeof createPolicyStore>;
