/**
 * What the gateway's Redis user must be allowed: the `gateway` line of deploy/redis/users.acl, as
 * commands to ask Redis about. At each connection to a master one script (lua/acl-check-0.lua)
 * asks `redis.acl_check_cmd` about every one, so a user set up from an older ACL line (an upgrade
 * that skipped the ACL step) is named at once, instead of surfacing later as NOPERM errors in
 * whichever feature needs the missing command. A unit test keeps this list and users.acl in step.
 */
import { keys } from './keys.js';
import { INVALIDATE_CHANNEL } from './tracking.js';

export interface AclRequirement {
  /** The users.acl token that grants it: `+getrange`, `~_gw:*`, `&_gw:events:*`. */
  readonly grant: string;
  /** A command with arguments (sample keys and channels the grant must cover). */
  readonly argv: readonly string[];
}

// Sample keys and channel, as the gateway builds them (nothing is read or written).
const K = keys.cache('aclcheck', 'k');
const K2 = keys.cache('aclcheck', 'k2');
const CH = keys.channels.policiesChanged();

const cmd = (grant: string, ...argv: string[]): AclRequirement => ({ grant, argv });
/** A command whose only argument before the rest is one key. */
const onKey = (name: string, ...rest: string[]) => cmd(`+${name}`, name, K, ...rest);

export const ACL_REQUIREMENTS: readonly AclRequirement[] = [
  cmd('+hello', 'hello'),
  cmd('+auth', 'auth', 'user', 'password'),
  cmd('+ping', 'ping'),
  cmd('+info', 'info'),
  cmd('+select', 'select', '0'),
  cmd('+quit', 'quit'),
  cmd('+client|setname', 'client', 'setname', 'gateway'),
  cmd('+client|id', 'client', 'id'),
  cmd('+client|tracking', 'client', 'tracking', 'on'),
  cmd('+client|trackinginfo', 'client', 'trackinginfo'),
  cmd('+evalsha', 'evalsha', '0'.repeat(40), '0'),
  cmd('+eval', 'eval', 'return 1', '0'),
  cmd('+script|load', 'script', 'load', 'return 1'),
  cmd('+script|exists', 'script', 'exists', '0'.repeat(40)),
  cmd('+multi', 'multi'),
  cmd('+exec', 'exec'),
  cmd('+discard', 'discard'),
  onKey('get'),
  onKey('getrange', '0', '1'),
  onKey('set', 'v'),
  cmd('+mget', 'mget', K, K2),
  onKey('exists'),
  onKey('unlink'),
  onKey('del'),
  onKey('pttl'),
  onKey('pexpireat', '1'),
  onKey('pexpiretime'),
  onKey('persist'),
  cmd('+scan', 'scan', '0'),
  onKey('sadd', 'm'),
  onKey('srem', 'm'),
  onKey('scard'),
  onKey('smembers'),
  onKey('srandmember'),
  onKey('hgetall'),
  onKey('hset', 'f', 'v'),
  onKey('hget', 'f'),
  onKey('hmget', 'f'),
  onKey('hstrlen', 'f'),
  onKey('hexists', 'f'),
  onKey('hdel', 'f'),
  onKey('hlen'),
  onKey('zadd', '1', 'm'),
  onKey('zrem', 'm'),
  onKey('zcard'),
  onKey('zcount', '0', '1'),
  onKey('zrange', '0', '1'),
  onKey('zrangebyscore', '0', '1'),
  onKey('zremrangebyscore', '0', '1'),
  onKey('pexpire', '1'),
  cmd('+rename', 'rename', K, K2),
  cmd('+wait', 'wait', '0', '0'),
  onKey('incrby', '1'),
  onKey('xadd', '*', 'f', 'v'),
  cmd('+xread', 'xread', 'STREAMS', K, '0'),
  cmd('+xreadgroup', 'xreadgroup', 'GROUP', 'g', 'c', 'STREAMS', K, '>'),
  onKey('xack', 'g', '1-0'),
  onKey('xclaim', 'g', 'c', '0', '1-0'),
  onKey('xpending', 'g'),
  onKey('xrange', '-', '+'),
  onKey('xrevrange', '+', '-'),
  onKey('xlen'),
  onKey('xtrim', 'MAXLEN', '0'),
  onKey('xdel', '1-0'),
  cmd('+xgroup|create', 'xgroup', 'create', K, 'g', '$'),
  cmd('+xgroup|destroy', 'xgroup', 'destroy', K, 'g'),
  cmd('+xinfo|groups', 'xinfo', 'groups', K),
  cmd('+xinfo|consumers', 'xinfo', 'consumers', K, 'g'),
  cmd('+publish', 'publish', CH, 'x'),
  cmd('+subscribe', 'subscribe', CH),
  cmd('+unsubscribe', 'unsubscribe'),
  // The key and channel patterns: tenant data, the gateway's own keys, its channels.
  cmd('~[a-z0-9]*', 'get', K),
  cmd('~_gw:*', 'get', keys.gw.apiKey('aclcheck')),
  cmd('&_gw:events:*', 'publish', keys.channels.apiKeyRevoked(), 'x'),
  cmd('&__redis__:invalidate', 'subscribe', INVALIDATE_CHANNEL),
];

/** The script's arguments: for each requirement, its word count, then its words. */
export function aclCheckArgs(reqs: readonly AclRequirement[] = ACL_REQUIREMENTS): string[] {
  const out: string[] = [];
  for (const r of reqs) out.push(String(r.argv.length), ...r.argv);
  return out;
}

export interface AclCheckResult {
  /** Grants the user lacks (Redis refuses the command). */
  readonly refused: string[];
  /** Commands this Redis does not know (an older version than the gateway needs). */
  readonly unknown: string[];
}

/** The script's reply read; undefined when this Redis cannot tell (before Redis 7.0). */
export function readAclCheck(
  reply: readonly number[],
  reqs: readonly AclRequirement[] = ACL_REQUIREMENTS,
): AclCheckResult | undefined {
  if (reply[0] === 0) return undefined;
  const grant = (i: number) => reqs[i - 1]?.grant ?? `#${i}`;
  return {
    refused: reply.filter((i) => i > 0).map(grant),
    unknown: reply.filter((i) => i < 0).map((i) => grant(-i)),
  };
}
