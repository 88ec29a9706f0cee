/**
 * The only place Redis keys and channels are built.
 *
 * Layout: `<tenant>:<scope>:<caller key>` for tenant data, `_gw:<...>` for the gateway's own data.
 * A tenant id matches TENANT_ID_PATTERN (no ':', '{', glob characters, and never a leading '_'),
 * so `<tenant>:<scope>:` is an unambiguous prefix: whatever the caller's key holds (':', '*', '{',
 * spaces, any UTF-8), the full key stays inside its tenant's scope. No ioredis keyPrefix is used.
 */
import { AppError } from '../errors.js';

/** Tenant ids: lowercase, digits, '-' and '_', 1..63 characters, not starting with '-' or '_'. */
export const TENANT_ID_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/** Caller-supplied keys are 1..MAX_KEY_BYTES bytes of UTF-8. */
export const MAX_KEY_BYTES = 1024;

// C0 controls, DEL and C1 controls. Lone surrogates cannot be encoded as UTF-8 and are refused too.
const CONTROL_OR_LONE_SURROGATE =
  // eslint-disable-next-line no-control-regex
  /[\u0000-\u001f\u007f-\u009f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * Checks a caller-supplied key. Returns undefined when valid, else the reason (for a 400 problem).
 */
export function checkUserKey(key: string): string | undefined {
  if (key.length === 0) return 'must not be empty';
  // A UTF-16 string of n code units is at most 3n bytes of UTF-8; count only when it could matter.
  if (key.length * 3 > MAX_KEY_BYTES && Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) {
    return `must be at most ${MAX_KEY_BYTES} bytes of UTF-8`;
  }
  if (CONTROL_OR_LONE_SURROGATE.test(key)) return 'must not contain control characters';
  return undefined;
}

function tenantId(tenant: string): string {
  if (!TENANT_ID_PATTERN.test(tenant)) {
    // Tenants come from verified credentials or validated admin input; reaching this is a bug.
    throw new Error(`invalid tenant id reached the key builder: ${JSON.stringify(tenant)}`);
  }
  return tenant;
}

/**
 * Queue names as keys see them: A-Z a-z 0-9 . _ - only (no ':', so a name never reaches into
 * another scope). The API allows 1..128 characters; dead-letter queues add `.dlq`.
 */
const QUEUE_KEY_NAME = /^[A-Za-z0-9._-]{1,256}$/;

function queueName(name: string): string {
  if (!QUEUE_KEY_NAME.test(name)) {
    throw new AppError('VALIDATION_FAILED', 'path.name must be 1..128 of A-Z a-z 0-9 . _ -.', {
      errors: [{ field: 'path.name', message: 'must be 1..128 of A-Z a-z 0-9 . _ -' }],
    });
  }
  return name;
}

function tenantPrefix(tenant: string, scope: string): string {
  return `${tenantId(tenant)}:${scope}:`;
}

function userKey(tenant: string, scope: string, field: string, key: string): string {
  const problem = checkUserKey(key);
  if (problem !== undefined) {
    throw new AppError('VALIDATION_FAILED', `${field} ${problem}.`, {
      errors: [{ field, message: problem, limit: 'MAX_KEY_BYTES' }],
    });
  }
  return tenantPrefix(tenant, scope) + key;
}

/** Escapes glob metacharacters so a literal string can be used inside SCAN MATCH / PSUBSCRIBE. */
export function escapeGlob(literal: string): string {
  return literal.replace(/[*?[\]\\]/g, (c) => '\\' + c);
}

export const keys = {
  /**
   * The prefix of every key holding a tenant's data, `<tenant>:` (erasing a deleted tenant). The
   * gateway's own records of a tenant are under `_gw:` below.
   */
  tenantData: (tenant: string): string => `${tenantId(tenant)}:`,
  /** A cached value: `<tenant>:cache:<key>`. */
  cache: (tenant: string, key: string): string => userKey(tenant, 'cache', 'key', key),
  /** The prefix of every cached value of a tenant (listing, invalidation by prefix or pattern). */
  cachePrefix: (tenant: string): string => tenantPrefix(tenant, 'cache'),
  /** The stampede lease of one cache key: `<tenant>:lease:<key>` (outside the listed namespace). */
  cacheLease: (tenant: string, key: string): string => userKey(tenant, 'lease', 'key', key),
  /**
   * The prefix of a tenant's tag sets, `<tenant>:tag:`; a tag set is the prefix plus the tag. The
   * cache scripts append the tag themselves (they read an entry's tags from its header), so this
   * prefix is the one place the layout of tag keys is decided.
   */
  cacheTagPrefix: (tenant: string): string => tenantPrefix(tenant, 'tag'),
  /** One tag set (members: the full keys of the entries carrying the tag). */
  cacheTag: (tenant: string, tag: string): string => tenantPrefix(tenant, 'tag') + tag,

  /**
   * Rate-limit state of one identifier under one policy:
   * `<tenant>:rl:<policy>:<algorithm>:<identifier>`. Policy names (or `~<fingerprint>` for
   * inline definitions) and algorithm codes never contain ':'; the identifier is last.
   */
  ratelimit: (tenant: string, policy: string, algorithm: string, identifier: string): string =>
    userKey(tenant, `rl:${policy}:${algorithm}`, 'key', identifier),
  /** What every rate-limit state key of a tenant starts with (to forget its state in-process). */
  ratelimitPrefix: (tenant: string): string => tenantPrefix(tenant, 'rl'),

  /**
   * One session, a hash: `<tenant>:session:<id>`. Ids are server-generated (43 base64url
   * characters), checked by the sessions module before they reach here.
   */
  session: (tenant: string, id: string): string => tenantPrefix(tenant, 'session') + id,
  /** The prefix of a tenant's session hashes (scripts append ids read from a user's index). */
  sessionPrefix: (tenant: string): string => tenantPrefix(tenant, 'session'),
  /** A user's session index, a sorted set of ids scored by expiry: `<tenant>:usess:<userId>`. */
  userSessions: (tenant: string, userId: string): string =>
    userKey(tenant, 'usess', 'userId', userId),
  /** The prefix of a tenant's user indexes (scripts append the user id stored in a session). */
  userSessionsPrefix: (tenant: string): string => tenantPrefix(tenant, 'usess'),

  /**
   * One idempotency record, a string (modules/idempotency/lua/common.lua; a hash when written by
   * an earlier version): `<tenant>:idem:<owner>:<key>`, where the owner is the API key
   * id (records of one key are invisible to the tenant's other keys) or `*` when the tenant's keys
   * share them (IDEMPOTENCY_KEY_SCOPE=tenant). Key ids never contain ':'.
   */
  idempotency: (tenant: string, owner: string, key: string): string => {
    if (owner.includes(':')) throw new Error(`invalid idempotency owner: ${owner}`);
    return userKey(tenant, `idem:${owner}`, 'key', key);
  },

  /**
   * A queue's stream: `<tenant>:q:<name>`; its dead-letter queue is the queue `<name>.dlq`.
   * Queue names match QUEUE_NAME_PATTERN (checked by the queues module's schemas).
   */
  queue: (tenant: string, name: string): string => tenantPrefix(tenant, 'q') + queueName(name),
  /** The prefix of a tenant's queue streams (listing): `<tenant>:q:`. */
  queuePrefix: (tenant: string): string => tenantPrefix(tenant, 'q'),
  /** Messages published with a delay, a sorted set scored by due time: `<tenant>:qdelay:<name>`. */
  queueDelayed: (tenant: string, name: string): string =>
    tenantPrefix(tenant, 'qdelay') + queueName(name),
  /**
   * A queue's own settings (hash: r max receive count, l retention, e its dedup epoch):
   * `<tenant>:qconf:<name>`.
   */
  queueConfig: (tenant: string, name: string): string =>
    tenantPrefix(tenant, 'qconf') + queueName(name),
  /**
   * A publish dedup id, remembered for the dedup window as `<epoch> <first id>`:
   * `<tenant>:qdedup:<name>:<dedupId>`.
   */
  queueDedup: (tenant: string, name: string, dedupId: string): string =>
    userKey(tenant, `qdedup:${queueName(name)}`, 'dedupId', dedupId),

  /** Gateway-internal keys. Tenant ids cannot start with '_', so these never collide. */
  gw: {
    /** Hash: one tenant's record. */
    tenant: (tenant: string): string => `_gw:tenant:${tenantId(tenant)}`,
    /** Set: every tenant id. */
    tenants: (): string => '_gw:tenants',
    /** Hash: one API key's record (never the secret; its SHA-256). */
    apiKey: (keyId: string): string => `_gw:apikey:${keyId}`,
    /** The prefix of the key records (a script deleting a tenant appends the ids it reads). */
    apiKeyPrefix: (): string => '_gw:apikey:',
    /** Set: the ids of one tenant's API keys. */
    tenantApiKeys: (tenant: string): string => `_gw:tenant-apikeys:${tenantId(tenant)}`,
    /** Hash: a tenant's rate-limit policies set through the admin API (name -> JSON definition). */
    ratelimitPolicies: (tenant: string): string => `_gw:rl-policies:${tenantId(tenant)}`,
    /** String: requests of one API key in one quota window (the gateway's own protection). */
    quota: (keyId: string, windowStartMs: number): string => `_gw:quota:${keyId}:${windowStartMs}`,
  },

  /** Pub/sub channels. */
  channels: {
    /**
     * Every gateway replica listens here and drops the key named (revoked, changed, or of a
     * deleted tenant) from its auth cache; its next use reads it again.
     */
    apiKeyRevoked: (): string => '_gw:events:apikey-revoked',
    /** A leased cache key was filled (message: the entry key); waiting readers answer at once. */
    cacheFilled: (): string => '_gw:events:cache-filled',
    /** A tenant's API-managed policies changed (message: the tenant id). */
    policiesChanged: (): string => '_gw:events:policies-changed',
    /**
     * An identifier's rate-limit state was reset (message: its state key); every replica drops
     * that key from its in-process denial cache.
     */
    ratelimitReset: (): string => '_gw:events:ratelimit-reset',
  },
} as const;
