import { describe, expect, it } from 'vitest';
import { ERRORS, classifyRedisError, problemType, redisErrorToAppError } from '../../src/errors.js';

class ReplyError extends Error {
  override name = 'ReplyError';
}

describe('classifyRedisError', () => {
  it('recognises each failure kind', () => {
    const cases: [Error, string | null][] = [
      [new Error('Command timed out'), 'timeout'],
      [new ReplyError("READONLY You can't write against a read only replica."), 'readonly'],
      [new ReplyError('NOREPLICAS Not enough good replicas to write.'), 'noreplicas'],
      [new ReplyError("OOM command not allowed when used memory > 'maxmemory'."), 'oom'],
      [new ReplyError('NOPERM this user has no permissions to run the command'), 'noperm'],
      [new ReplyError('LOADING Redis is loading the dataset in memory'), 'unavailable'],
      [new Error('Connection is closed.'), 'unavailable'],
      [new Error("Stream isn't writeable and enableOfflineQueue options is false"), 'unavailable'],
      [
        Object.assign(new Error('Reached the max retries per request limit'), {
          name: 'MaxRetriesPerRequestError',
        }),
        'unavailable',
      ],
      [new Error('connect ECONNREFUSED 127.0.0.1:6379'), 'unavailable'],
      [new ReplyError('ERR wrong number of arguments'), 'other'],
      [new Error('something else entirely'), null],
    ];
    for (const [err, kind] of cases) expect(classifyRedisError(err), err.message).toBe(kind);
  });

  it('maps outages to 503 with Retry-After and bugs to 500', () => {
    for (const kind of ['timeout', 'readonly', 'noreplicas', 'oom', 'unavailable'] as const) {
      const e = redisErrorToAppError(kind, new Error('x'));
      expect(e.status).toBe(503);
      expect(e.options.retryAfter).toBeGreaterThan(0);
    }
    expect(redisErrorToAppError('other', new Error('x')).status).toBe(500);
    expect(redisErrorToAppError('noperm', new Error('x')).status).toBe(500);
  });
});

describe('error table', () => {
  it('has a unique type URI per code (but the NGINX variant of the same problem) and valid statuses', () => {
    const types = Object.keys(ERRORS)
      .filter((c) => c !== 'QUOTA_EXCEEDED_COMPAT')
      .map((c) => problemType(c as keyof typeof ERRORS));
    expect(new Set(types).size).toBe(types.length);
    expect(problemType('QUOTA_EXCEEDED_COMPAT')).toBe(problemType('QUOTA_EXCEEDED'));
    for (const t of types) expect(t).toMatch(/^https:\/\//);
    for (const spec of Object.values(ERRORS)) expect(spec.status).toBeGreaterThanOrEqual(400);
    expect(problemType('QUOTA_EXCEEDED')).toBe(
      'https://iana.org/assignments/http-problem-types#quota-exceeded',
    );
  });
});

describe('docs/problems.md', () => {
  it('documents every code with its status and type', async () => {
    const { readFileSync } = await import('node:fs');
    const doc = readFileSync(new URL('../../docs/problems.md', import.meta.url), 'utf8');
    const rows = doc
      .split('\n')
      .filter((l) => l.startsWith('|'))
      .map((l) => l.split('|').map((c) => c.trim()));
    for (const [code, spec] of Object.entries(ERRORS)) {
      const row = rows.find((cells) => cells[1] === `\`${code}\``);
      expect(row, `docs/problems.md has no row for ${code}`).toBeDefined();
      expect(row?.[2]).toBe(String(spec.status));
      expect(row?.[3]).toContain(spec.type);
    }
  });
});
