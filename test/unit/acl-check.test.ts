import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ACL_REQUIREMENTS, aclCheckArgs, readAclCheck } from '../../src/redis/acl-check.js';
import { aclSetting } from '../../src/redis/settings-check.js';

const gatewayLine = readFileSync(new URL('../../deploy/redis/users.acl', import.meta.url), 'utf8')
  .split('\n')
  .find((l) => l.startsWith('user gateway '));

describe('the ACL check', () => {
  it("asks about every grant of users.acl's gateway line, and nothing else", () => {
    const grants = (gatewayLine ?? '')
      .split(' ')
      .filter((r) => /^[+~&]/.test(r))
      .sort();
    expect(grants.length).toBeGreaterThan(60);
    expect(ACL_REQUIREMENTS.map((r) => r.grant).sort()).toEqual(grants);
  });

  it('sends each command with its word count and reads refusals and unknown commands back', () => {
    const reqs = [
      { grant: '+get', argv: ['get', 'k'] },
      { grant: '+xgroup|create', argv: ['xgroup', 'create', 'k', 'g', '$'] },
      { grant: '+ping', argv: ['ping'] },
    ];
    expect(aclCheckArgs(reqs)).toEqual([
      '2',
      'get',
      'k',
      '5',
      'xgroup',
      'create',
      'k',
      'g',
      '$',
      '1',
      'ping',
    ]);
    expect(readAclCheck([], reqs)).toEqual({ refused: [], unknown: [] });
    expect(readAclCheck([2, -3], reqs)).toEqual({
      refused: ['+xgroup|create'],
      unknown: ['+ping'],
    });
    expect(readAclCheck([0], reqs)).toBeUndefined();
  });

  it('reports as the setting acl', () => {
    expect(aclSetting(undefined)).toBeUndefined();
    expect(aclSetting({ refused: [], unknown: [] })?.ok).toBe(true);
    const bad = aclSetting({ refused: ['+getrange'], unknown: ['+pexpiretime'] });
    expect(bad?.ok).toBe(false);
    expect(bad?.detail).toMatch(/lacks \+getrange.*does not know \+pexpiretime/);
  });
});
