import { describe, expect, it } from 'vitest';
import {
  allowsResource,
  globToRegExp,
  hasCapability,
  parseScope,
  parseScopes,
} from '../../src/http/scopes.js';

describe('parseScope', () => {
  it('parses capability, action and glob', () => {
    const s = parseScope('cache:write:ef:*');
    expect(typeof s).toBe('object');
    if (typeof s === 'string') return;
    expect([s.capability, s.action]).toEqual(['cache', 'write']);
    expect(s.resource?.test('ef:1:2')).toBe(true);
    expect(s.resource?.test('xef:1')).toBe(false);
  });

  it('refuses unknown capabilities, actions and empty globs with a reason', () => {
    expect(parseScope('cache')).toMatch(/capability>:<action/);
    expect(parseScope('kache:read')).toMatch(/unknown capability/);
    expect(parseScope('cache:delete')).toMatch(/unknown action/);
    expect(parseScope('cache:read:')).toMatch(/empty resource glob/);
    expect(typeof parseScope('admin')).toBe('object');
    expect(typeof parseScope('queue:*')).toBe('object');
  });
});

describe('globToRegExp', () => {
  it('treats only * and ? as special', () => {
    expect(globToRegExp('a.b').test('axb')).toBe(false);
    expect(globToRegExp('a?c').test('abc')).toBe(true);
    expect(globToRegExp('[x]*').test('[x]yz')).toBe(true);
    expect(globToRegExp('(a|b)').test('a')).toBe(false);
    expect(globToRegExp('calc-*').test('calc-\n')).toBe(true);
  });
});

describe('hasCapability / allowsResource', () => {
  const scopes = parseScopes(['cache:read:ef:*', 'queue:*', 'session:write']);

  it('grants capability:action on some resource', () => {
    expect(hasCapability(scopes, 'cache', 'read')).toBe(true);
    expect(hasCapability(scopes, 'cache', 'write')).toBe(false);
    expect(hasCapability(scopes, 'queue', 'consume')).toBe(true);
  });

  it('checks the glob against the resource', () => {
    expect(allowsResource(scopes, 'cache', 'read', 'ef:1')).toBe(true);
    expect(allowsResource(scopes, 'cache', 'read', 'gh:1')).toBe(false);
    expect(allowsResource(scopes, 'session', 'write', 'anything')).toBe(true);
    expect(allowsResource(scopes, 'session', 'read', 'anything')).toBe(false);
  });

  it('parseScopes throws on a bad scope', () => {
    expect(() => parseScopes(['cache:read', 'nope'])).toThrow(/invalid scope/);
  });
});
