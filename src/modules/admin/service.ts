/**
 * Tenants and API keys: issue, list, revoke, and verify on every request.
 *
 * Verification is served from an in-process cache (bounded, AUTH_CACHE_TTL_MS), so the hot path
 * makes no Redis round trip; a revocation is published on a channel every replica listens to and
 * drops the key at once (a replica that missed the message while disconnected clears its whole
 * cache on reconnect, and in the worst case an entry lives AUTH_CACHE_TTL_MS). Keys from
 * API_KEYS_FILE are held in memory beside the Redis-backed ones and answer the same way.
 */
import type { Clock } from '../../clock.js';
import { AppError } from '../../errors.js';
import type { AuthFailure, Principal } from '../../http/auth.js';
import { type Scope, parseScope, parseScopes } from '../../http/scopes.js';
import type { RedisAccess } from '../../redis/client.js';
import { escapeGlob, keys } from '../../redis/keys.js';
import type { SentinelMasterView } from '../../redis/sentinel-probe.js';
import { constantTimeEqual, generateKey, hashKey, keyIdOf, keyMatches } from './api-key.js';
import type { FileKey } from './keys-file.js';

export interface Tenant {
  id: string;
  name: string;
  createdAt: string;
  source: 'api' | 'file';
  /** Set while DELETE /v1/admin/tenants/{tenant} has not finished erasing the tenant's data. */
  deletingAt?: string;
}

export interface TenantDeletion {
  tenant: string;
  state: 'deleting' | 'deleted';
  apiKeysDeleted: number;
  erased: number;
  cursor: string | null;
}

export interface ApiKeyInfo {
  id: string;
  tenant: string;
  name: string;
  scopes: string[];
  createdAt: string | null;
  expiresAt: string | null;
  revokedAt: string | null;
  source: 'api' | 'file';
}

export interface AdminServiceOptions {
  redis: RedisAccess;
  clock: Clock;
  adminToken: string | undefined;
  cacheTtlMs: number;
  cacheMaxEntries: number;
  onCacheLookup?(hit: boolean): void;
  /**
   * Behind sentinels: what each sentinel says of the master now. A tenant is only called deleted
   * on a master that a majority of them name, with no fewer replicas than they hold to be up.
   */
  sentinelViews?(): Promise<readonly SentinelMasterView[]>;
}

interface CachedKey {
  readonly fetchedAt: number;
  /** undefined: no such key (negative entry). */
  readonly principal: Principal | undefined;
  /** SHA-256 hex of the whole key. */
  readonly digest: string | undefined;
  readonly expiresAtMs: number | undefined;
  readonly revoked: boolean;
}

/** Unknown key ids are remembered this long at most, so floods of random keys stay off Redis. */
const NEGATIVE_TTL_MS = 5000;
/** How long one DELETE of a tenant may erase before it answers with a cursor. */
const ERASE_BUDGET_MS = 1000;
const ERASE_COUNT = 1000;
/**
 * A deletion cursor: the SCAN cursor, whether the current pass erased anything (1) or not (0),
 * and the first 12 characters of the master's run_id (a SCAN cursor means nothing on another
 * server: after a failover the pass starts over).
 */
const ERASE_CURSOR = /^(\d{1,20})\.([01])\.([0-9a-f]{12})$/;

const iso = (ms: number | undefined): string | null =>
  ms === undefined || Number.isNaN(ms) ? null : new Date(ms).toISOString();
const num = (v: string | undefined): number | undefined =>
  v === undefined || v === '' ? undefined : Number(v);

function scopesOf(raw: readonly string[]): Scope[] {
  // Stored scopes were validated when the key was made; skip any a newer version no longer knows.
  const out: Scope[] = [];
  for (const r of raw) {
    const s = parseScope(r);
    if (typeof s !== 'string') out.push(s);
  }
  return out;
}

export function createAdminService(opts: AdminServiceOptions) {
  const { clock } = opts;
  const cache = new Map<string, CachedKey>();
  /** Per cache entry, the presented key that matched its digest (dies with the entry). */
  const verified = new WeakMap<object, string>();
  const inflight = new Map<string, Promise<CachedKey>>();
  let fileKeys = new Map<string, FileKey & { principal: Principal }>();
  const adminDigest = opts.adminToken === undefined ? undefined : hashKey(opts.adminToken);

  const { redis } = opts;

  function remember(id: string, entry: CachedKey): CachedKey {
    cache.delete(id);
    cache.set(id, entry);
    while (cache.size > opts.cacheMaxEntries) {
      const oldest = cache.keys().next().value;
      if (oldest === undefined) break;
      cache.delete(oldest);
    }
    return entry;
  }

  async function fetchKey(id: string): Promise<CachedKey> {
    const h = await redis.onMaster((r) => r.hgetall(keys.gw.apiKey(id)));
    const fetchedAt = clock.nowMs();
    if (h.tenant === undefined || h.sha256 === undefined) {
      return remember(id, {
        fetchedAt,
        principal: undefined,
        digest: undefined,
        expiresAtMs: undefined,
        revoked: false,
      });
    }
    const principal: Principal = {
      kind: 'apiKey',
      tenant: h.tenant,
      keyId: id,
      scopes: scopesOf(JSON.parse(h.scopes ?? '[]') as string[]),
    };
    return remember(id, {
      fetchedAt,
      principal,
      digest: h.sha256.toLowerCase(),
      expiresAtMs: num(h.expiresAt),
      revoked: h.revokedAt !== undefined,
    });
  }

  function judge(
    presented: string,
    entry: CachedKey | (FileKey & { principal: Principal }),
    now: number,
  ): Principal | AuthFailure {
    const digest = entry.digest;
    if (entry.principal === undefined || digest === undefined) return 'unknown';
    // The key that last matched this entry's digest is compared in constant time first, so a
    // key in steady use costs no SHA-256 per request; anything else is hashed and compared.
    const known = verified.get(entry);
    if (known === undefined || !constantTimeEqual(presented, known)) {
      if (!keyMatches(presented, digest)) return 'unknown';
      verified.set(entry, presented);
    }
    if ('revoked' in entry && entry.revoked) return 'revoked';
    if (entry.expiresAtMs !== undefined && now >= entry.expiresAtMs) return 'expired';
    return entry.principal;
  }

  function fresh(entry: CachedKey, now: number): boolean {
    const ttl =
      entry.principal === undefined ? Math.min(NEGATIVE_TTL_MS, opts.cacheTtlMs) : opts.cacheTtlMs;
    return now - entry.fetchedAt < ttl;
  }

  /** HGETALL of many hashes in one round trip, in order. */
  async function hashes(redisKeys: string[]): Promise<Record<string, string>[]> {
    const rows =
      (await redis.onMaster((r) => {
        const pipeline = r.pipeline();
        for (const k of redisKeys) pipeline.hgetall(k);
        return pipeline.exec();
      })) ?? [];
    return rows.map(([err, h]) => {
      if (err) throw err;
      return h as Record<string, string>;
    });
  }

  function tenantOf(id: string, rec: Record<string, string>): Tenant {
    const deletingAt = iso(num(rec.deletingAt));
    return {
      id,
      name: rec.name ?? id,
      createdAt: iso(num(rec.createdAt)) ?? '',
      source: 'api',
      ...(deletingAt === null ? {} : { deletingAt }),
    };
  }

  async function requireTenant(id: string): Promise<void> {
    const exists = await redis.onMaster((r) => r.exists(keys.gw.tenant(id)));
    if (exists === 0 && ![...fileKeys.values()].some((k) => k.tenant === id)) {
      throw new AppError('TENANT_NOT_FOUND', `No tenant "${id}".`);
    }
  }

  return {
    /** Verifies a presented key; synchronous on a cache hit. */
    verifyApiKey(presented: string): Principal | AuthFailure | Promise<Principal | AuthFailure> {
      const id = keyIdOf(presented);
      if (id === undefined) return 'malformed';
      const now = clock.nowMs();
      const fileKey = fileKeys.get(id);
      if (fileKey !== undefined) return judge(presented, fileKey, now);
      const cached = cache.get(id);
      if (cached !== undefined && fresh(cached, now)) {
        opts.onCacheLookup?.(true);
        return judge(presented, cached, now);
      }
      opts.onCacheLookup?.(false);
      let pending = inflight.get(id);
      if (pending === undefined) {
        pending = fetchKey(id).finally(() => inflight.delete(id));
        inflight.set(id, pending);
      }
      return pending.then((entry) => judge(presented, entry, clock.nowMs()));
    },

    /** Constant-time check of the operator token. */
    isAdminToken(token: string): boolean {
      if (adminDigest === undefined) return false;
      return constantTimeEqual(hashKey(token), adminDigest);
    },

    /** Drops one key from the cache (a revocation message from any replica). */
    forget(keyId: string): void {
      cache.delete(keyId);
    },

    /** Drops every cached key (after missing revocation messages while disconnected). */
    forgetAll(): void {
      cache.clear();
    },

    /** Replaces the keys from API_KEYS_FILE. */
    setFileKeys(map: ReadonlyMap<string, FileKey>): void {
      const next = new Map<string, FileKey & { principal: Principal }>();
      for (const [id, k] of map) {
        next.set(id, {
          ...k,
          principal: { kind: 'apiKey', tenant: k.tenant, keyId: id, scopes: parseScopes(k.scopes) },
        });
      }
      fileKeys = next;
    },

    async createTenant(id: string, name: string | undefined): Promise<Tenant> {
      const now = clock.nowMs();
      const created = await redis.onMaster((r) =>
        r.tenantCreate(keys.gw.tenant(id), keys.gw.tenants(), id, name ?? id, now),
      );
      if (created === 0) {
        const deleting = await redis.onMaster((r) => r.hexists(keys.gw.tenant(id), 'deletingAt'));
        if (deleting === 1) {
          throw new AppError(
            'TENANT_DELETING',
            `Tenant "${id}" is being deleted; call DELETE /v1/admin/tenants/${id} until it answers 200, then create it again.`,
          );
        }
        throw new AppError('TENANT_EXISTS', `Tenant "${id}" already exists.`);
      }
      return { id, name: name ?? id, createdAt: new Date(now).toISOString(), source: 'api' };
    },

    async listTenants(): Promise<Tenant[]> {
      const ids = (await redis.onMaster((r) => r.smembers(keys.gw.tenants()))).sort();
      const rows = await hashes(ids.map((id) => keys.gw.tenant(id)));
      const out: Tenant[] = [];
      rows.forEach((rec, i) => {
        if (rec.id !== undefined) {
          out.push(tenantOf(rec.id, rec));
        } else {
          out.push({ id: ids[i] as string, name: ids[i] as string, createdAt: '', source: 'api' });
        }
      });
      const known = new Set(ids);
      for (const k of fileKeys.values()) {
        if (!known.has(k.tenant)) {
          known.add(k.tenant);
          out.push({ id: k.tenant, name: k.tenant, createdAt: '', source: 'file' });
        }
      }
      return out;
    },

    async getTenant(id: string): Promise<Tenant> {
      const rec = await redis.onMaster((r) => r.hgetall(keys.gw.tenant(id)));
      if (rec.id !== undefined) return tenantOf(id, rec);
      if ([...fileKeys.values()].some((k) => k.tenant === id))
        return { id, name: id, createdAt: '', source: 'file' };
      throw new AppError('TENANT_NOT_FOUND', `No tenant "${id}".`);
    },

    /** Issues a key. The plaintext key is returned once and never stored. */
    async createKey(
      tenant: string,
      input: { name?: string | undefined; scopes: string[]; expiresAt?: string | undefined },
    ): Promise<{ info: ApiKeyInfo; key: string }> {
      const now = clock.nowMs();
      const expiresAtMs = input.expiresAt === undefined ? undefined : Date.parse(input.expiresAt);
      if (expiresAtMs !== undefined && expiresAtMs <= now) {
        throw new AppError('VALIDATION_FAILED', 'expiresAt must be in the future.', {
          errors: [{ field: 'body.expiresAt', message: 'must be in the future' }],
        });
      }
      const { id, key } = generateKey();
      const name = input.name ?? id;
      const fields = [
        'id',
        id,
        'tenant',
        tenant,
        'name',
        name,
        'sha256',
        hashKey(key),
        'scopes',
        JSON.stringify(input.scopes),
        'createdAt',
        String(now),
      ];
      if (expiresAtMs !== undefined) fields.push('expiresAt', String(expiresAtMs));
      const res = await redis.onMaster((r) =>
        r.apiKeyCreate(
          keys.gw.tenant(tenant),
          keys.gw.apiKey(id),
          keys.gw.tenantApiKeys(tenant),
          id,
          ...fields,
        ),
      );
      if (res === -1)
        throw new AppError(
          'TENANT_NOT_FOUND',
          `No tenant "${tenant}"; create it first (POST /v1/admin/tenants).`,
        );
      if (res !== 1) throw new Error(`apiKeyCreate returned ${res}`);
      cache.delete(id); // drop a negative entry, if any
      return {
        key,
        info: {
          id,
          tenant,
          name,
          scopes: input.scopes,
          createdAt: iso(now),
          expiresAt: iso(expiresAtMs),
          revokedAt: null,
          source: 'api',
        },
      };
    },

    /** Lists a tenant's keys, without secrets or digests. */
    async listKeys(tenant: string): Promise<ApiKeyInfo[]> {
      await requireTenant(tenant);
      const ids = (await redis.onMaster((r) => r.smembers(keys.gw.tenantApiKeys(tenant)))).sort();
      const rows = await hashes(ids.map((id) => keys.gw.apiKey(id)));
      const out: ApiKeyInfo[] = [];
      for (const rec of rows) {
        if (rec.id === undefined) continue;
        out.push({
          id: rec.id,
          tenant,
          name: rec.name ?? rec.id,
          scopes: JSON.parse(rec.scopes ?? '[]') as string[],
          createdAt: iso(num(rec.createdAt)),
          expiresAt: iso(num(rec.expiresAt)),
          revokedAt: iso(num(rec.revokedAt)),
          source: 'api',
        });
      }
      for (const k of fileKeys.values()) {
        if (k.tenant !== tenant) continue;
        out.push({
          id: k.id,
          tenant,
          name: k.name,
          scopes: [...k.scopes],
          createdAt: null,
          expiresAt: iso(k.expiresAtMs),
          revokedAt: null,
          source: 'file',
        });
      }
      return out;
    },

    /**
     * Deletes a tenant: at once its API keys (on every replica) and rate-limit policies, then its
     * data (`<tenant>:*`, SCAN + UNLINK) for up to ERASE_BUDGET_MS or about `maxKeys` keys per
     * call. Answers `deleting` with a cursor to call again with, or `deleted` once a whole pass
     * over one master's keyspace found none of its keys left (a pass that erased some is followed
     * by another, for writes in flight when the keys went; a failover starts the pass over, as
     * erasures not yet replicated may be back). The tenant record goes last, so the id cannot be
     * reused before.
     */
    async deleteTenant(
      id: string,
      cursorText: string | undefined,
      maxKeys: number,
    ): Promise<TenantDeletion> {
      if ([...fileKeys.values()].some((k) => k.tenant === id)) {
        throw new AppError(
          'TENANT_MANAGED_BY_FILE',
          `API_KEYS_FILE has keys for tenant "${id}"; remove them there first.`,
        );
      }
      let scan = '0';
      let dirty = false;
      let cursorMaster: string | undefined;
      if (cursorText !== undefined) {
        const m = ERASE_CURSOR.exec(cursorText);
        if (m === null) {
          throw new AppError('VALIDATION_FAILED', 'query.cursor is not a deletion cursor.', {
            errors: [{ field: 'query.cursor', message: 'is not a cursor returned by this call' }],
          });
        }
        scan = m[1] as string;
        dirty = m[2] === '1';
        cursorMaster = m[3];
      }
      const apiKeysDeleted = await redis.onMaster((r) =>
        r.tenantDeleteBegin(
          keys.gw.tenant(id),
          keys.gw.tenantApiKeys(id),
          keys.gw.ratelimitPolicies(id),
          clock.nowMs(),
          keys.gw.apiKeyPrefix(),
          keys.channels.apiKeyRevoked(),
          keys.channels.policiesChanged(),
          id,
        ),
      );
      if (apiKeysDeleted === -1) throw new AppError('TENANT_NOT_FOUND', `No tenant "${id}".`);
      for (const [keyId, entry] of cache) if (entry.principal?.tenant === id) cache.delete(keyId);

      const masterId = async () => {
        const info = await redis.onMaster((r) => r.info('server'));
        return /run_id:([0-9a-f]{12})/.exec(info)?.[1] ?? '000000000000';
      };
      const replicasConnected = async () =>
        Number(
          /connected_slaves:(\d+)/.exec(await redis.onMaster((r) => r.info('replication')))?.[1] ??
            0,
        );
      /**
       * Whether a majority of the sentinels name this master (by run id) and hold no more of its
       * replicas to be up than it has connected: right after a promotion the sentinels still name
       * the old master, but the promoted replica has left it. True when there are no sentinels.
       */
      const confirmedMaster = async (runId: string): Promise<boolean> => {
        if (opts.sentinelViews === undefined) return true;
        const views = await opts.sentinelViews();
        const said = views.filter((v) => v.runId !== undefined);
        if (said.length * 2 <= views.length) {
          throw new AppError(
            'BACKEND_UNAVAILABLE',
            `Only ${said.length} of ${views.length} sentinels answered, too few to confirm that this master holds the tenant's data (${
              views.find((v) => v.detail !== undefined)?.detail ?? 'no answer'
            }); the deletion is not finished. Call again with the same cursor.`,
            { retryAfter: 1 },
          );
        }
        const connected = await replicasConnected();
        const agree = said.filter(
          (v) => v.runId?.startsWith(runId) === true && (v.replicas ?? 0) <= connected,
        );
        return agree.length * 2 > views.length;
      };
      const master = await masterId();
      // Each erasure waits for every replica the master has now: after a failover one of them is
      // the master, and an erasure it never got would bring the data back under a tenant called
      // deleted.
      const replicas = await replicasConnected();
      if (cursorMaster !== undefined && cursorMaster !== master) {
        scan = '0';
        dirty = false;
      }
      const match = `${escapeGlob(keys.tenantData(id))}*`;
      const start = Date.now();
      let erased = 0;
      for (;;) {
        const [next, found] = await redis.onMaster((r) =>
          r.scan(scan, 'MATCH', match, 'COUNT', Math.min(ERASE_COUNT, Math.max(10, maxKeys))),
        );
        if (found.length > 0) {
          erased += await redis.onMasterDurable((r) => r.unlink(...found), 'admin', replicas);
          dirty = true;
        }
        scan = next;
        const passDone = scan === '0';
        if (passDone && !dirty) {
          // A clean pass, if it ran on one master from start to end, and that master is still the
          // master: one that has not learnt yet that a replica was promoted in its place goes on
          // answering (and erasing), but the promoted replica never gets its erasures. Else the
          // pass starts over, on the master the gateway finds next.
          if ((await masterId()) === master && (await confirmedMaster(master))) break;
          return { tenant: id, state: 'deleting', apiKeysDeleted, erased, cursor: '0.0.' + master };
        }
        if (passDone) dirty = false; // erased some in this pass: one more, for writes in flight
        if (Date.now() - start >= ERASE_BUDGET_MS || erased >= maxKeys) {
          return {
            tenant: id,
            state: 'deleting',
            apiKeysDeleted,
            erased,
            cursor: `${scan}.${dirty ? 1 : 0}.${master}`,
          };
        }
      }
      // The policies message again: replicas drop denials remembered from requests in flight.
      await redis.onMaster((r) =>
        r
          .multi()
          .unlink(keys.gw.tenant(id))
          .srem(keys.gw.tenants(), id)
          .publish(keys.channels.policiesChanged(), id)
          .exec(),
      );
      return { tenant: id, state: 'deleted', apiKeysDeleted, erased, cursor: null };
    },

    /**
     * Changes a key's name, scopes or expiry (null: never); every replica drops its cached copy at
     * once. A key of another tenant answers 404 exactly like a missing one.
     */
    async updateKey(
      tenant: string,
      keyId: string,
      changes: {
        name?: string | undefined;
        scopes?: string[] | undefined;
        expiresAt?: string | null | undefined;
      },
    ): Promise<ApiKeyInfo> {
      const fileKey = fileKeys.get(keyId);
      if (fileKey !== undefined && fileKey.tenant === tenant) {
        throw new AppError(
          'API_KEY_MANAGED_BY_FILE',
          'This key comes from API_KEYS_FILE; change it there.',
        );
      }
      const fields: string[] = [];
      if (changes.name !== undefined) fields.push('name', changes.name);
      if (changes.scopes !== undefined) fields.push('scopes', JSON.stringify(changes.scopes));
      if (typeof changes.expiresAt === 'string') {
        const at = Date.parse(changes.expiresAt);
        if (at <= clock.nowMs()) {
          throw new AppError('VALIDATION_FAILED', 'expiresAt must be in the future.', {
            errors: [{ field: 'body.expiresAt', message: 'must be in the future' }],
          });
        }
        fields.push('expiresAt', String(at));
      }
      const res = await redis.onMaster((r) =>
        r.apiKeyUpdate(
          keys.gw.apiKey(keyId),
          tenant,
          keys.channels.apiKeyRevoked(),
          keyId,
          changes.expiresAt === null ? '1' : '',
          ...fields,
        ),
      );
      if (res === -1)
        throw new AppError('API_KEY_NOT_FOUND', `No API key "${keyId}" in tenant "${tenant}".`);
      if (res === -2)
        throw new AppError('API_KEY_REVOKED', `API key "${keyId}" is revoked; issue a new one.`);
      cache.delete(keyId);
      const rec = await redis.onMaster((r) => r.hgetall(keys.gw.apiKey(keyId)));
      return {
        id: keyId,
        tenant,
        name: rec.name ?? keyId,
        scopes: JSON.parse(rec.scopes ?? '[]') as string[],
        createdAt: iso(num(rec.createdAt)),
        expiresAt: iso(num(rec.expiresAt)),
        revokedAt: iso(num(rec.revokedAt)),
        source: 'api',
      };
    },

    /** Revokes a key of `tenant`; a key of another tenant answers 404 exactly like a missing one. */
    async revokeKey(tenant: string, keyId: string): Promise<void> {
      const fileKey = fileKeys.get(keyId);
      if (fileKey !== undefined && fileKey.tenant === tenant) {
        throw new AppError(
          'API_KEY_MANAGED_BY_FILE',
          'This key comes from API_KEYS_FILE; remove it there to revoke it.',
        );
      }
      const res = await redis.onMaster((r) =>
        r.apiKeyRevoke(
          keys.gw.apiKey(keyId),
          tenant,
          clock.nowMs(),
          keys.channels.apiKeyRevoked(),
          keyId,
        ),
      );
      if (res === -1)
        throw new AppError('API_KEY_NOT_FOUND', `No API key "${keyId}" in tenant "${tenant}".`);
      cache.delete(keyId);
    },
  };
}

export type AdminService = ReturnType<typeof createAdminService>;
