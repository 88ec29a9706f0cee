import { describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import {
  MAX_KEY_BYTES,
  TENANT_ID_PATTERN,
  checkUserKey,
  escapeGlob,
  keys,
} from '../../src/redis/keys.js';

describe('tenant ids', () => {
  it('accepts the allow-list and nothing else', () => {
    for (const ok of ['a', 'acme', 'a-b_c', '0', 'x'.repeat(63)])
      expect(TENANT_ID_PATTERN.test(ok), ok).toBe(true);
    for (const bad of [
      '',
      '_gw',
      '-a',
      'A',
      'a:b',
      'a*',
      'a{b}',
      'a b',
      'x'.repeat(64),
      'é',
      'a\n',
    ]) {
      expect(TENANT_ID_PATTERN.test(bad), JSON.stringify(bad)).toBe(false);
    }
  });

  it('the key builders refuse an invalid tenant (a bug, not input)', () => {
    expect(() => keys.cache('_gw', 'k')).toThrow(/invalid tenant/);
    expect(() => keys.cache('a:b', 'k')).toThrow(/invalid tenant/);
    expect(() => keys.gw.tenant('Bad')).toThrow(/invalid tenant/);
  });
});

describe('caller keys', () => {
  it('accepts any UTF-8 without controls, up to 1024 bytes', () => {
    for (const ok of [
      'k',
      'a:b:c',
      '*',
      '{x}',
      '..',
      ' spaced ',
      'é€𝄞',
      'a/b',
      'x'.repeat(MAX_KEY_BYTES),
      '€'.repeat(341),
    ]) {
      expect(checkUserKey(ok), ok.slice(0, 20)).toBeUndefined();
    }
  });

  it('refuses empty, too long, controls and lone surrogates', () => {
    expect(checkUserKey('')).toMatch(/empty/);
    expect(checkUserKey('x'.repeat(MAX_KEY_BYTES + 1))).toMatch(/1024 bytes/);
    expect(checkUserKey('€'.repeat(342))).toMatch(/1024 bytes/); // 1026 bytes
    for (const bad of ['a\u0000b', 'a\nb', '\u007f', '\u0085', '\ud800', 'x\udc00']) {
      expect(checkUserKey(bad), JSON.stringify(bad)).toBeDefined();
    }
  });

  it('stays inside the tenant and scope prefix, whatever it contains', () => {
    expect(keys.cache('acme', 'other:cache:x')).toBe('acme:cache:other:cache:x');
    expect(keys.cache('acme', '*')).toBe('acme:cache:*');
    // No (tenant, key) pair can produce another tenant's key: a tenant id never contains ':', so
    // the text before the first ':' is always the tenant.
    expect(keys.cache('a', 'b:cache:c').split(':')[0]).toBe('a');
    expect(() => keys.cache('a:b', 'c')).toThrow(/invalid tenant/);
  });

  it('turns an invalid key into a 400 naming the limit', () => {
    try {
      keys.cache('acme', 'x'.repeat(2000));
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(AppError);
      expect((e as AppError).status).toBe(400);
      expect((e as AppError).options.errors?.[0]?.limit).toBe('MAX_KEY_BYTES');
    }
  });
});

describe('escapeGlob', () => {
  it('escapes every glob metacharacter', () => {
    expect(escapeGlob('a*b?c[d]e\\f')).toBe('a\\*b\\?c\\[d\\]e\\\\f');
    expect(escapeGlob('plain:key')).toBe('plain:key');
  });
});

describe('gateway-internal keys', () => {
  it('live under _gw:', () => {
    expect(keys.gw.tenant('acme')).toBe('_gw:tenant:acme');
    expect(keys.gw.apiKey('abc')).toBe('_gw:apikey:abc');
    expect(keys.gw.tenantApiKeys('acme')).toBe('_gw:tenant-apikeys:acme');
    expect(keys.channels.apiKeyRevoked().startsWith('_gw:')).toBe(true);
  });
});

describe('session and idempotency keys', () => {
  it('keep sessions, user indexes and idempotency records in their own tenant scopes', () => {
    expect(keys.session('acme', 'abc')).toBe('acme:session:abc');
    expect(keys.sessionPrefix('acme')).toBe('acme:session:');
    expect(keys.userSessions('acme', 'user:1*')).toBe('acme:usess:user:1*');
    expect(keys.userSessionsPrefix('acme')).toBe('acme:usess:');
    expect(keys.idempotency('acme', 'k1', 'pay:1')).toBe('acme:idem:k1:pay:1');
    expect(keys.idempotency('acme', '*', 'pay:1')).toBe('acme:idem:*:pay:1');
  });

  it('refuse an owner that could shift the layout, and invalid user ids', () => {
    expect(() => keys.idempotency('acme', 'a:b', 'k')).toThrow(/owner/);
    expect(() => keys.userSessions('acme', '')).toThrow(AppError);
    expect(() => keys.idempotency('acme', 'k1', 'x\u0000')).toThrow(AppError);
  });
});
