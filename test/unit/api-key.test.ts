import { describe, expect, it } from 'vitest';
import { generateKey, hashKey, keyIdOf, keyMatches } from '../../src/modules/admin/api-key.js';
import { parseKeysFile } from '../../src/modules/admin/keys-file.js';

describe('API key format', () => {
  it('generates cgk_<16-char id>_<256-bit secret> keys whose id parses back', () => {
    const { id, key } = generateKey();
    expect(key).toMatch(/^cgk_[a-z0-9]{16}_[A-Za-z0-9_-]{43}$/);
    expect(keyIdOf(key)).toBe(id);
    expect(generateKey().key).not.toBe(key);
  });

  it('rejects anything else', () => {
    for (const bad of [
      '',
      'cgk_',
      'cgk_id',
      'cgk__secretsecretsecret',
      'xyz_abc_secretsecretsecret',
      'cgk_a-b_secretsecretsecret',
      'cgk_abc_short',
    ]) {
      expect(keyIdOf(bad), bad).toBeUndefined();
    }
  });

  it('matches only the exact key', () => {
    const { key } = generateKey();
    const digest = hashKey(key);
    expect(keyMatches(key, digest)).toBe(true);
    expect(keyMatches(key + 'x', digest)).toBe(false);
    expect(keyMatches(key, '')).toBe(false);
    expect(
      keyMatches(
        key,
        digest.replace(/.$/, (c) => (c === '0' ? '1' : '0')),
      ),
    ).toBe(false);
  });
});

describe('API_KEYS_FILE', () => {
  const { id, key } = generateKey();
  const other = generateKey();

  it('accepts plaintext and sha256 entries', () => {
    const text = JSON.stringify({
      keys: [
        { tenant: 'acme', scopes: ['cache:read'], key },
        {
          tenant: 'acme',
          scopes: ['cache:write:ef:*'],
          id: other.id,
          sha256: hashKey(other.key).toUpperCase(),
          name: 'ci',
        },
      ],
    });
    const map = parseKeysFile(text, 'keys.json');
    expect(map.get(id)?.digest).toBe(hashKey(key));
    expect(map.get(other.id)?.digest).toBe(hashKey(other.key));
    expect(map.get(other.id)?.name).toBe('ci');
    expect(map.get(other.id)?.scopes).toEqual(['cache:write:ef:*']);
  });

  it('names every bad entry and never echoes a secret', () => {
    const text = JSON.stringify({
      keys: [
        { tenant: 'Bad Tenant', scopes: ['cache:read'], key },
        { tenant: 'acme', scopes: ['nope:read'], key: other.key },
        { tenant: 'acme', scopes: ['cache:read'], id: 'abc' },
        { tenant: 'acme', scopes: ['cache:read'], key: 'not-a-key-' + 'z'.repeat(30) },
      ],
    });
    let message = '';
    try {
      parseKeysFile(text, 'keys.json');
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/keys\.0\.tenant/);
    expect(message).toMatch(/unknown capability "nope"/);
    expect(message).toMatch(/needs either key, or id and sha256/);
    expect(message).toMatch(/keys\.3\.key: is not a cgk_/);
    expect(message).not.toContain(key);
    expect(message).not.toContain(other.key);
  });

  it('refuses invalid JSON and duplicate ids', () => {
    expect(() => parseKeysFile('{', 'k.json')).toThrow(/not valid JSON/);
    const dup = JSON.stringify({
      keys: [
        { tenant: 'a', scopes: ['cache:read'], key },
        { tenant: 'b', scopes: ['cache:read'], key },
      ],
    });
    expect(() => parseKeysFile(dup, 'k.json')).toThrow(/duplicate key id/);
  });
});
