/**
 * The master's settings that decide whether acknowledged writes survive, read from its INFO each
 * time the gateway connects to a master (the gateway's ACL user may run INFO, not CONFIG GET).
 * deploy/redis/redis.conf sets each of them; a Redis set up otherwise serves just the same, and
 * loses data only on the day of a restart, a partition or a full memory. So the gateway says so
 * up front: a log line, `gateway_redis_setting_ok{setting}` and /readyz?verbose. The gateway
 * user's permissions are reported the same way (setting `acl`).
 */
import type { AclCheckResult } from './acl-check.js';

export type RedisSetting = 'persistence' | 'eviction' | 'min_replicas' | 'acl';

export interface RedisSettingCheck {
  readonly setting: RedisSetting;
  readonly ok: boolean;
  /** What is set, and what it risks when not ok. */
  readonly detail: string;
}

function field(info: string, name: string): string | undefined {
  return new RegExp(`^${name}:(.*?)\\r?$`, 'm').exec(info)?.[1];
}

/** Checks the INFO text of a master (sections persistence, memory and replication). */
export function checkRedisSettings(info: string): RedisSettingCheck[] {
  const aof = field(info, 'aof_enabled');
  const policy = field(info, 'maxmemory_policy');
  const maxmemory = field(info, 'maxmemory');
  const minReplicas = field(info, 'min_slaves_good_slaves');
  return [
    aof === '1'
      ? { setting: 'persistence', ok: true, detail: 'appendonly yes' }
      : {
          setting: 'persistence',
          ok: false,
          detail:
            'appendonly is off: a master restarted before a failover comes back with at most its last RDB snapshot, and its replicas resync to that (set appendonly yes)',
        },
    policy === 'noeviction' || maxmemory === '0'
      ? {
          setting: 'eviction',
          ok: true,
          detail: policy === 'noeviction' ? 'maxmemory-policy noeviction' : 'no maxmemory',
        }
      : {
          setting: 'eviction',
          ok: false,
          detail: `maxmemory-policy is ${policy ?? 'unknown'}: with memory full Redis deletes keys of its choosing, sessions, queue messages and idempotency records among them (set noeviction: writes then get 503 BACKEND_OUT_OF_MEMORY)`,
        },
    minReplicas !== undefined
      ? { setting: 'min_replicas', ok: true, detail: 'min-replicas-to-write set' }
      : {
          setting: 'min_replicas',
          ok: false,
          detail:
            'min-replicas-to-write is off: a master cut off from its replicas goes on acknowledging writes, all lost when the partition heals (set min-replicas-to-write 1, min-replicas-max-lag 10)',
        },
  ];
}

/**
 * The gateway user's permissions as a setting (redis/acl-check.ts): ok when Redis grants every
 * command, key pattern and channel of deploy/redis/users.acl's gateway line. undefined: this Redis
 * cannot tell (before 7.0), nothing to report.
 */
export function aclSetting(result: AclCheckResult | undefined): RedisSettingCheck | undefined {
  if (result === undefined) return undefined;
  if (result.refused.length === 0 && result.unknown.length === 0)
    return { setting: 'acl', ok: true, detail: 'the gateway user has every permission it needs' };
  const parts: string[] = [];
  if (result.refused.length > 0)
    parts.push(
      `the gateway's Redis user lacks ${result.refused.join(' ')}: the features that need them answer 500 (apply the gateway line of deploy/redis/users.acl)`,
    );
  if (result.unknown.length > 0)
    parts.push(
      `this Redis does not know ${result.unknown.join(' ')} (the gateway needs Redis 7.0 or later)`,
    );
  return { setting: 'acl', ok: false, detail: parts.join('; ') };
}
