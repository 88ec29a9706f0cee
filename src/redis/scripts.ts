/**
 * The table of every Lua script, loaded once and defined on each client with `defineCommand`
 * (EVALSHA, falling back to EVAL on NOSCRIPT, so scripts survive a failover to a fresh master).
 *
 * Files live beside their module as `modules/<m>/lua/<name>-<numKeys>.lua` (`-n`: the caller passes
 * the number of keys); each starts with a header comment giving its KEYS, ARGV (with units) and
 * return shape. A script may splice in library files (`include`) at its `-- @include` line:
 * Redis has no `require`, and this keeps one algorithm per file. A unit test checks that every .lua
 * file is listed here and that the file suffix matches the header's KEYS count.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, type Redis, type Result } from 'ioredis';

export interface ScriptDef {
  /** Command name on the ioredis client. */
  readonly name: string;
  /** Path relative to src/ (and dist/, where the build copies the .lua files). */
  readonly file: string;
  /** undefined: variadic, the caller passes the number of keys first. */
  readonly numberOfKeys: number | undefined;
  /**
   * Passed to ioredis's defineCommand, which only marks the command read-only for its cluster
   * routing: it is still sent as EVALSHA (the ACL has no EVALSHA_RO), so it runs where it is sent.
   */
  readonly readOnly?: boolean;
  /** Library files spliced in, in order, at the script's `-- @include` line. */
  readonly include?: readonly string[];
}

const RATELIMIT_ALGORITHMS = [
  'modules/ratelimit/lua/lent.lua',
  ...['token-bucket', 'gcra', 'sliding-log', 'sliding-window', 'fixed-window'].map(
    (a) => `modules/ratelimit/lua/algorithms/${a}.lua`,
  ),
];

const SESSION_COMMON = 'modules/sessions/lua/common.lua';
const QUEUE_COMMON = 'modules/queues/lua/common.lua';
const IDEMPOTENCY_COMMON = 'modules/idempotency/lua/common.lua';

export const SCRIPTS: readonly ScriptDef[] = [
  { name: 'redisAclCheck', file: 'redis/lua/acl-check-0.lua', numberOfKeys: 0 },
  { name: 'cachePut', file: 'modules/cache/lua/put-2.lua', numberOfKeys: 2 },
  { name: 'cacheDelete', file: 'modules/cache/lua/delete-1.lua', numberOfKeys: 1 },
  { name: 'cacheTouch', file: 'modules/cache/lua/touch-1.lua', numberOfKeys: 1 },
  { name: 'cacheLease', file: 'modules/cache/lua/lease-1.lua', numberOfKeys: 1 },
  {
    name: 'cacheInvalidateTag',
    file: 'modules/cache/lua/invalidate-tag-1.lua',
    numberOfKeys: 1,
  },
  { name: 'tenantCreate', file: 'modules/admin/lua/create-tenant-2.lua', numberOfKeys: 2 },
  { name: 'apiKeyCreate', file: 'modules/admin/lua/create-key-3.lua', numberOfKeys: 3 },
  { name: 'apiKeyRevoke', file: 'modules/admin/lua/revoke-key-1.lua', numberOfKeys: 1 },
  { name: 'apiKeyUpdate', file: 'modules/admin/lua/update-key-1.lua', numberOfKeys: 1 },
  { name: 'tenantDeleteBegin', file: 'modules/admin/lua/delete-tenant-3.lua', numberOfKeys: 3 },
  {
    name: 'ratelimitCheck',
    file: 'modules/ratelimit/lua/check-n.lua',
    numberOfKeys: undefined,
    include: RATELIMIT_ALGORITHMS,
  },
  { name: 'gatewayQuota', file: 'modules/ratelimit/lua/quota-1.lua', numberOfKeys: 1 },
  ...(
    [
      ['sessionCreate', 'create-2.lua', 2, true],
      ['sessionTouch', 'touch-1.lua', 1, true],
      ['sessionUpdate', 'update-1.lua', 1, true],
      ['sessionRotate', 'rotate-2.lua', 2, true],
      ['sessionDelete', 'delete-1.lua', 1, false],
      ['sessionList', 'list-1.lua', 1, true],
      ['sessionRevokeAll', 'revoke-all-1.lua', 1, true],
    ] as const
  ).map(([name, file, numberOfKeys, common]) => ({
    name,
    file: `modules/sessions/lua/${file}`,
    numberOfKeys,
    ...(common ? { include: [SESSION_COMMON] } : {}),
  })),
  ...(
    [
      ['queuePublish', 'publish-n.lua', undefined, true],
      ['queueReceive', 'receive-4.lua', 4, true],
      ['queueLease', 'lease-1.lua', 1, false],
      ['queueAck', 'ack-2.lua', 2, true],
      ['queueRedrive', 'redrive-3.lua', 3, true],
      ['queueDelete', 'delete-6.lua', 6, false],
      ['queuePurge', 'purge-3.lua', 3, false],
    ] as const
  ).map(([name, file, numberOfKeys, common]) => ({
    name,
    file: `modules/queues/lua/${file}`,
    numberOfKeys,
    ...(common ? { include: [QUEUE_COMMON] } : {}),
  })),
  ...(
    [
      ['idempotencyBegin', 'begin-1.lua'],
      ['idempotencyComplete', 'complete-1.lua'],
      ['idempotencyRelease', 'release-1.lua'],
    ] as const
  ).map(([name, file]) => ({
    name,
    file: `modules/idempotency/lua/${file}`,
    numberOfKeys: 1,
    include: [IDEMPOTENCY_COMMON],
  })),
];

declare module 'ioredis' {
  interface RedisCommander<Context> {
    /** See modules/cache/lua/put-2.lua: [status, created, leaseReleased]. */
    cachePut(
      entryKey: string,
      leaseKey: string,
      envelope: Buffer | string,
      expireAtMs: number,
      condition: '' | 'match' | 'absent',
      expectedEtag: string,
      leaseToken: string,
      tagPrefix: string,
      tags: string,
      fillChannel: string,
      fillMessage: string,
    ): Result<[number, number, number], Context>;
    /** See modules/cache/lua/delete-1.lua: 1 deleted, 0 absent, -1 condition failed. */
    cacheDelete(
      entryKey: string,
      condition: '' | 'match',
      expectedEtag: string,
      tagPrefix: string,
    ): Result<number, Context>;
    /** See modules/cache/lua/touch-1.lua: [1, etag] or [0, '']. */
    cacheTouch(
      entryKey: string,
      freshUntilMs: number,
      expiresAtMs: number,
      tagPrefix: string,
    ): Result<[number, string], Context>;
    /** See modules/cache/lua/lease-1.lua: [1, ms] acquired or [0, remaining ms]. */
    cacheLease(leaseKey: string, token: string, ms: number): Result<[number, number], Context>;
    /** See redis/lua/acl-check-0.lua: positions refused (negative: unknown), or [0]. */
    redisAclCheck(...args: string[]): Result<number[], Context>;
    /** See modules/cache/lua/invalidate-tag-1.lua: [taken, deleted entry key, ...]. */
    cacheInvalidateTag(
      tagKey: string,
      tag: string,
      tagPrefix: string,
      entryPrefix: string,
      count: number,
    ): Result<(string | number)[], Context>;
    /** See modules/admin/lua/create-tenant-2.lua. Returns 1 when created, 0 when it existed. */
    tenantCreate(
      tenantKey: string,
      tenantsKey: string,
      id: string,
      name: string,
      createdAtMs: number,
    ): Result<number, Context>;
    /** See modules/admin/lua/create-key-3.lua. 1, or -1 when the tenant does not exist (or is being deleted). */
    apiKeyCreate(
      tenantKey: string,
      apiKeyKey: string,
      tenantKeysKey: string,
      keyId: string,
      ...fieldValuePairs: string[]
    ): Result<number, Context>;
    /** See modules/admin/lua/revoke-key-1.lua. 1 revoked, 0 already revoked, -1 not found/other tenant. */
    apiKeyRevoke(
      apiKeyKey: string,
      tenant: string,
      revokedAtMs: number,
      channel: string,
      keyId: string,
    ): Result<number, Context>;
    /** See modules/admin/lua/update-key-1.lua. 1 changed, -1 not found/other tenant, -2 revoked. */
    apiKeyUpdate(
      apiKeyKey: string,
      tenant: string,
      channel: string,
      keyId: string,
      clearExpiry: string,
      ...fieldValuePairs: string[]
    ): Result<number, Context>;
    /** See modules/admin/lua/delete-tenant-3.lua: API keys deleted, or -1 no such tenant. */
    tenantDeleteBegin(
      tenantKey: string,
      tenantKeysKey: string,
      policiesKey: string,
      nowMs: number,
      apiKeyPrefix: string,
      revokedChannel: string,
      policiesChannel: string,
      tenant: string,
    ): Result<number, Context>;
    /**
     * See modules/ratelimit/lua/check-n.lua: n keys, then now, atomic flag and 6 arguments per
     * check. Returns 5 integers per check: allowed, limit, remaining, resetMs, retryAfterMs.
     */
    ratelimitCheck(numKeys: number, ...args: (string | number)[]): Result<number[], Context>;
    /** See modules/sessions/lua/create-2.lua: [1, evicted] or [-1, 0]. */
    sessionCreate(
      sessionKey: string,
      indexKey: string,
      ...args: (string | number)[]
    ): Result<[number, number], Context>;
    /** See modules/sessions/lua/touch-1.lua: the session as a flat list, or null. */
    sessionTouch(
      sessionKey: string,
      now: number,
      indexPrefix: string,
      id: string,
      all: '0' | '1',
      touchAfterMs: number,
    ): Result<(string | number)[] | null, Context>;
    /** See modules/sessions/lua/update-1.lua: [0], [-1, bytes] or [1, flat hash]. */
    sessionUpdate(
      sessionKey: string,
      ...args: (string | number)[]
    ): Result<[number, ((string | number)[] | number)?], Context>;
    /** See modules/sessions/lua/rotate-2.lua: the new hash as a flat list, [-1], or null. */
    sessionRotate(
      oldKey: string,
      newKey: string,
      now: number,
      indexPrefix: string,
      oldId: string,
      newId: string,
    ): Result<(string | number)[] | null, Context>;
    /** See modules/sessions/lua/delete-1.lua: 1 deleted, 0 absent. */
    sessionDelete(sessionKey: string, indexPrefix: string, id: string): Result<number, Context>;
    /** See modules/sessions/lua/list-1.lua: [total, (id, c, a, e, m)...]. */
    sessionList(
      indexKey: string,
      now: number,
      sessionPrefix: string,
      offset: number,
      limit: number,
    ): Result<(string | number)[], Context>;
    /** See modules/sessions/lua/revoke-all-1.lua: sessions deleted. */
    sessionRevokeAll(
      indexKey: string,
      now: number,
      sessionPrefix: string,
      except: string,
    ): Result<number, Context>;
    /** See modules/queues/lua/publish-n.lua: [id, duplicate, ...]. */
    queuePublish(numKeys: number, ...args: (string | number)[]): Result<string[], Context>;
    /** See modules/queues/lua/receive-4.lua: ['nogroup'] or ['ok', lastId, nextDue, dead, ...]. */
    queueReceive(
      stream: string,
      delayed: string,
      dlq: string,
      settings: string,
      ...args: (string | number)[]
    ): Result<(string | number)[], Context>;
    /** See modules/queues/lua/lease-1.lua: messages changed, -1 no such group. */
    queueLease(stream: string, ...args: (string | number)[]): Result<number, Context>;
    /** See modules/queues/lua/ack-2.lua: messages acknowledged. */
    queueAck(
      stream: string,
      settings: string,
      ...args: (string | number)[]
    ): Result<number, Context>;
    /** See modules/queues/lua/redrive-3.lua: [moved, remaining]. */
    queueRedrive(
      dlq: string,
      stream: string,
      settings: string,
      ...args: (string | number)[]
    ): Result<[number, number], Context>;
    /** See modules/queues/lua/delete-6.lua: [existed, messages, delayed, groups, deadLettered]. */
    queueDelete(
      stream: string,
      delayed: string,
      settings: string,
      dlq: string,
      dlqDelayed: string,
      dlqSettings: string,
    ): Result<[number, number, number, number, number], Context>;
    /** See modules/queues/lua/purge-3.lua: [existed, messages, delayed, groups]. */
    queuePurge(
      stream: string,
      delayed: string,
      settings: string,
    ): Result<[number, number, number, number], Context>;
    /** See modules/idempotency/lua/begin-1.lua. */
    idempotencyBegin(key: string, ...args: (string | number)[]): Result<string[], Context>;
    /** See modules/idempotency/lua/complete-1.lua. */
    idempotencyComplete(key: string, ...args: (string | number)[]): Result<number, Context>;
    /** See modules/idempotency/lua/release-1.lua. */
    idempotencyRelease(key: string, token: string): Result<number, Context>;
    /** See modules/ratelimit/lua/quota-1.lua: the window's total after adding `count`. */
    gatewayQuota(key: string, count: number, ttlMs: number): Result<number, Context>;
  }
}

const srcRoot = new URL('../', import.meta.url);

export interface LoadedScript extends ScriptDef {
  readonly lua: string;
}

const readLua = (file: string): string =>
  readFileSync(fileURLToPath(new URL(file, srcRoot)), 'utf8');

const SPLICE = '-- @include\n';

/** Reads every script file (splicing its includes). Throws at startup when one is missing. */
export function loadScripts(defs: readonly ScriptDef[] = SCRIPTS): LoadedScript[] {
  return defs.map((d) => {
    let lua = readLua(d.file);
    if (d.include !== undefined) {
      if (!lua.includes(SPLICE)) throw new Error(`${d.file} has no ${SPLICE.trim()} line`);
      const library = d.include.map(readLua).join('\n');
      lua = lua.replace(SPLICE, () => library); // a function: no `$` patterns in Lua text
    }
    return { ...d, lua };
  });
}

const NO_ARGS: never[] = [];

/** What a script call needs at send time; one per script and client. */
interface ScriptState {
  readonly lua: string;
  readonly sha: string;
  /** Connections (sockets) that have already been sent this script: EVALSHA from then on. */
  readonly loadedOn: WeakSet<object>;
}

/**
 * One call of a script, as ioredis's own script command sends it (EVAL with the script text the
 * first time on each connection, EVALSHA after that), but built without ioredis's Command
 * constructor path: that runs `args.flat()` on every command, and V8's Array.prototype.flat reads
 * each element through its generic property path, about 250 ns per argument on the benchmark
 * host (2.4 us for a 9-argument script call, 17 us for a batch of 10 rate-limit checks; see
 * load/RESULTS.md). Our script arguments are never nested arrays, so they are converted in one
 * pass (`stringifyArguments`, numbers to strings, Buffers kept).
 */
class ScriptCommand extends Command {
  constructor(
    private readonly script: ScriptState,
    args: (string | number | Buffer)[],
  ) {
    super('evalsha', NO_ARGS, { replyEncoding: 'utf8' });
    this.args = args;
    this.stringifyArguments();
  }

  override toWritable(socket: object): string | Buffer {
    const { loadedOn } = this.script;
    const reject = this.reject;
    this.reject = (err) => {
      // The server lost its script cache (a restart, SCRIPT FLUSH): send the text again next time.
      if (err.message.includes('NOSCRIPT')) loadedOn.delete(socket);
      reject.call(this, err);
    };
    if (!loadedOn.has(socket)) {
      loadedOn.add(socket);
      this.name = 'eval';
      this.args[0] = this.script.lua;
    } else if (this.name === 'eval') {
      // A resend on a connection that has the script by now.
      this.name = 'evalsha';
      this.args[0] = this.script.sha;
    } else {
      this.args[0] = this.script.sha;
    }
    return super.toWritable(socket);
  }
}

type Method = (this: unknown, ...args: (string | number | Buffer)[]) => Promise<unknown>;

/**
 * The client method of one script: EVALSHA, sent once more (as EVAL) on NOSCRIPT. A pipeline or
 * MULTI copies the client's methods when it is made, so this one is called there too, with the
 * pipeline as `this`: it then hands over to ioredis's own (`viaPipeline`, from defineCommand),
 * which queues the call in the pipeline instead of sending it on its own.
 */
function scriptMethod(
  client: Redis,
  script: ScriptState,
  numberOfKeys: number | undefined,
  viaPipeline: Method,
): Method {
  const send = (args: (string | number | Buffer)[]): Promise<unknown> =>
    client.sendCommand(
      new ScriptCommand(
        script,
        numberOfKeys === undefined ? ['', ...args] : ['', numberOfKeys, ...args],
      ),
    ) as Promise<unknown>;
  return function (this: unknown, ...args) {
    if (this !== undefined && this !== client) return viaPipeline.apply(this, args);
    return send(args).catch((err: unknown) => {
      if (!(err instanceof Error) || !err.message.includes('NOSCRIPT')) throw err;
      return send(args);
    });
  };
}

/**
 * Defines every script as a command on each client: `defineCommand` (for pipelines, MULTI and the
 * `…Buffer` variants), then the client's own method replaced by a cheaper equivalent (above).
 */
export function defineScripts(clients: readonly Redis[], scripts: readonly LoadedScript[]): void {
  for (const client of clients) {
    for (const s of scripts) {
      client.defineCommand(s.name, {
        lua: s.lua,
        ...(s.numberOfKeys === undefined ? {} : { numberOfKeys: s.numberOfKeys }),
        readOnly: s.readOnly ?? false,
      });
      const state: ScriptState = {
        lua: s.lua,
        sha: createHash('sha1').update(s.lua).digest('hex'),
        loadedOn: new WeakSet(),
      };
      const methods = client as unknown as Record<string, Method>;
      methods[s.name] = scriptMethod(client, state, s.numberOfKeys, methods[s.name] as Method);
    }
  }
}

/** Absolute path of a script file, for tests. */
export function scriptPath(file: string): string {
  return fileURLToPath(new URL(file, srcRoot));
}
