/** Tags, _invalidate (tags, prefix, pattern; caps and cursors) and key listing. */
import { describe, expect, it } from 'vitest';
import {
  type TestTenant,
  addKey,
  body,
  expectProblem,
  newTenant,
  useTestApp,
} from '../../harness/app.js';
import { runCommonRouteTests } from '../../harness/common-route-tests.js';

const t = useTestApp();
const capped = useTestApp({ env: { CACHE_INVALIDATE_MAX_KEYS: '100' } });
const RW = ['cache:read', 'cache:write'];
const url = (key: string) => `/v1/cache/${encodeURIComponent(key)}`;

async function mset(
  app: typeof t,
  who: TestTenant,
  items: { key: string; value: unknown; tags?: string[] }[],
) {
  const res = await app.app.inject({
    method: 'POST',
    url: '/v1/cache/_mset',
    headers: who.auth,
    payload: { items },
  });
  expect(res.statusCode, res.body).toBe(200);
}

async function present(app: typeof t, who: TestTenant, keys: string[]): Promise<string[]> {
  const res = await app.app.inject({
    method: 'POST',
    url: '/v1/cache/_mget',
    headers: who.auth,
    payload: { keys },
  });
  return body<{ items: { key: string; found: boolean }[] }>(res)
    .items.filter((i) => i.found)
    .map((i) => i.key);
}

const invalidate = (app: typeof t, who: TestTenant, payload: Record<string, unknown>) =>
  app.app.inject({ method: 'POST', url: '/v1/cache/_invalidate', headers: who.auth, payload });

describe('POST /v1/cache/_invalidate', () => {
  runCommonRouteTests({
    app: () => t,
    scope: 'cache:write',
    wrongScope: 'cache:read',
    request: (owner) => ({
      method: 'POST',
      url: '/v1/cache/_invalidate',
      headers: owner.auth,
      payload: { prefix: 'x' },
    }),
    async crossTenant(owner, other) {
      const names = ['org:1:a', 'org:1:b', 'grid:1:current', 'grid:[x]:current', 'ef:1'];
      await mset(
        t,
        owner,
        names.map((key) => ({ key, value: 'owner', tags: ['org:1'] })),
      );
      await mset(
        t,
        other,
        names.map((key) => ({ key, value: 'other', tags: ['org:1'] })),
      );
      for (const spec of [
        { tags: ['org:1'] },
        { prefix: '' },
        { prefix: 'org:' },
        { pattern: '*' },
        { pattern: 'grid:*:current' },
      ]) {
        expect(body(await invalidate(t, other, spec)).cursor).toBeNull();
      }
      expect((await present(t, other, names)).length).toBe(0);
      expect(await present(t, owner, names)).toEqual(names);
    },
  });

  describe('200', () => {
    it('by tag: deletes every key carrying any of the tags, and nothing else', async () => {
      const a = await newTenant(t.deps, RW);
      await mset(t, a, [
        { key: 'a', value: 1, tags: ['org:42'] },
        { key: 'b', value: 2, tags: ['org:42', 'prices'] },
        { key: 'c', value: 3, tags: ['prices'] },
        { key: 'd', value: 4, tags: ['org:7'] },
        { key: 'e', value: 5 },
      ]);
      const res = await invalidate(t, a, { tags: ['org:42', 'prices'] });
      expect(body(res)).toEqual({ deleted: 3, cursor: null });
      expect(await present(t, a, ['a', 'b', 'c', 'd', 'e'])).toEqual(['d', 'e']);
      expect(
        await t.deps.redis.primary.exists(`${a.tenant}:tag:org:42`, `${a.tenant}:tag:prices`),
      ).toBe(0);
    });

    it('tags stay exact: a key re-stored without a tag, or deleted, leaves the tag set', async () => {
      const a = await newTenant(t.deps, RW);
      await mset(t, a, [
        { key: 'moved', value: 1, tags: ['old'] },
        { key: 'gone', value: 2, tags: ['old'] },
      ]);
      await t.app.inject({
        method: 'PUT',
        url: url('moved'),
        headers: a.auth,
        payload: { value: 1, tags: ['new'] },
      });
      await t.app.inject({ method: 'DELETE', url: url('gone'), headers: a.auth });
      expect(await t.deps.redis.primary.scard(`${a.tenant}:tag:old`)).toBe(0);
      expect(body(await invalidate(t, a, { tags: ['old'] })).deleted).toBe(0);
      expect(await present(t, a, ['moved'])).toEqual(['moved']);
      expect(body(await invalidate(t, a, { tags: ['new'] })).deleted).toBe(1);
    });

    it('by tag deletes only entries that still carry the tag (a member left by an expiry or a prefix invalidation is not)', async () => {
      const a = await newTenant(t.deps, RW);
      const put = (key: string, payload: Record<string, unknown>) =>
        t.app.inject({ method: 'PUT', url: url(key), headers: a.auth, payload });
      // 'expired' leaves the tag set only when the set expires, with its longest-lived member.
      expect((await put('expired', { value: 1, ttl: 1, tags: ['t'] })).statusCode).toBe(201);
      expect((await put('kept', { value: 1, ttl: 600, tags: ['t', 'u'] })).statusCode).toBe(201);
      // 'p:moved' goes by prefix, which does not read what each entry's tags are.
      expect((await put('p:moved', { value: 1, tags: ['t'] })).statusCode).toBe(201);
      expect(body(await invalidate(t, a, { prefix: 'p:' })).deleted).toBe(1);
      await new Promise((r) => setTimeout(r, 1100));
      // Both stored again, under their old names, without the tag.
      expect((await put('expired', { value: 'new' })).statusCode).toBe(201);
      expect((await put('p:moved', { value: 'new', tags: ['v'] })).statusCode).toBe(201);
      expect(body(await invalidate(t, a, { tags: ['t'] }))).toEqual({ deleted: 1, cursor: null });
      expect(await present(t, a, ['expired', 'kept', 'p:moved'])).toEqual(['expired', 'p:moved']);
      // The tag set is empty, and 'kept' left the tag sets of its other tags too.
      expect(await t.deps.redis.primary.exists(`${a.tenant}:tag:t`)).toBe(0);
      expect(await t.deps.redis.primary.exists(`${a.tenant}:tag:u`)).toBe(0);
      expect(body(await invalidate(t, a, { tags: ['v'] })).deleted).toBe(1);
    });

    it('a tag set written all the time does not keep the members whose entries are gone', async () => {
      const a = await newTenant(t.deps, RW);
      const put = (key: string, payload: Record<string, unknown>) =>
        t.app.inject({ method: 'PUT', url: url(key), headers: a.auth, payload });
      // A set lives as long as its longest-lived member, and every write with a later expiry
      // extends it: a tag written all the time lives for good. 40 short-lived members expire.
      expect((await put('long', { value: 1, ttl: 3600, tags: ['t'] })).statusCode).toBe(201);
      await mset(
        t,
        a,
        Array.from({ length: 40 }, (_, i) => ({ key: `short-${i}`, value: i, tags: ['t'] })),
      );
      for (let i = 0; i < 40; i++) {
        await t.app.inject({
          method: 'PATCH',
          url: url(`short-${i}`),
          headers: a.auth,
          payload: { ttl: 1 },
        });
      }
      const tagKey = `${a.tenant}:tag:t`;
      expect(await t.deps.redis.primary.scard(tagKey)).toBe(41);
      await new Promise((r) => setTimeout(r, 1100));
      // Writes of live entries sample the set and drop members whose entries are gone.
      for (let i = 0; i < 100; i++) await put(`live-${i % 2}`, { value: i, tags: ['t'] });
      expect(await t.deps.redis.primary.scard(tagKey)).toBeLessThanOrEqual(3 + 5);
      expect(body(await invalidate(t, a, { tags: ['t'] })).deleted).toBe(3);
    });

    it('tag sets expire with their longest-lived member', async () => {
      const a = await newTenant(t.deps, RW);
      await t.app.inject({
        method: 'PUT',
        url: url('short'),
        headers: a.auth,
        payload: { value: 1, ttl: 100, tags: ['t'] },
      });
      await t.app.inject({
        method: 'PUT',
        url: url('long'),
        headers: a.auth,
        payload: { value: 1, ttl: 1000, staleTtl: 500, tags: ['t'] },
      });
      await t.app.inject({
        method: 'PUT',
        url: url('short2'),
        headers: a.auth,
        payload: { value: 1, ttl: 10, tags: ['t'] },
      });
      const pttl = await t.deps.redis.primary.pttl(`${a.tenant}:tag:t`);
      expect(pttl).toBeGreaterThan(1_495_000);
      expect(pttl).toBeLessThanOrEqual(1_500_000);
    });

    it('by prefix and by pattern, glob characters in the prefix taken literally', async () => {
      const a = await newTenant(t.deps, RW);
      const names = [
        'ef:1',
        'ef:2',
        'efx',
        'gh:1',
        'a*b',
        'a*bc',
        'axb',
        'grid:1:current',
        'grid:2:current',
        'grid:2:old',
      ];
      await mset(
        t,
        a,
        names.map((key) => ({ key, value: key })),
      );
      expect(body(await invalidate(t, a, { prefix: 'ef:' })).deleted).toBe(2);
      expect(body(await invalidate(t, a, { prefix: 'a*' })).deleted).toBe(2);
      expect(body(await invalidate(t, a, { pattern: 'grid:*:current' })).deleted).toBe(2);
      expect(await present(t, a, names)).toEqual(['efx', 'gh:1', 'axb', 'grid:2:old']);
    });

    it('stops at CACHE_INVALIDATE_MAX_KEYS and continues with the cursor until done', async () => {
      const a = await newTenant(capped.deps, RW);
      const keys = Array.from({ length: 250 }, (_, i) => `k${i}`);
      await mset(
        capped,
        a,
        keys.map((key) => ({ key, value: 1, tags: ['bulk'] })),
      );
      for (const spec of [{ tags: ['bulk'] }]) {
        let total = 0;
        let cursor: string | null | undefined;
        let calls = 0;
        do {
          const res = body<{ deleted: number; cursor: string | null }>(
            await invalidate(capped, a, { ...spec, ...(cursor ? { cursor } : {}) }),
          );
          if (res.cursor !== null) expect(res.deleted).toBeGreaterThanOrEqual(100);
          total += res.deleted;
          cursor = res.cursor;
          calls++;
        } while (cursor !== null && calls < 10);
        expect(total).toBe(250);
        expect(calls).toBeGreaterThan(1);
      }
      await mset(
        capped,
        a,
        keys.map((key) => ({ key, value: 1 })),
      );
      let total = 0;
      let cursor: string | null = null;
      do {
        const res: { deleted: number; cursor: string | null } = body(
          await invalidate(capped, a, { prefix: 'k', ...(cursor ? { cursor } : {}) }),
        );
        total += res.deleted;
        cursor = res.cursor;
      } while (cursor !== null);
      expect(total).toBe(250);
    });
  });

  describe('400', () => {
    it('needs exactly one of tags, prefix, pattern; valid tags; a cursor from the same request', async () => {
      const a = await newTenant(t.deps, RW);
      for (const payload of [
        {},
        { tags: ['a'], prefix: 'b' },
        { tags: [] },
        { tags: ['bad tag'] },
        { tags: Array.from({ length: 33 }, (_, i) => `t${i}`) },
        { pattern: '' },
        { prefix: 'a\u0000' },
      ]) {
        expectProblem(await invalidate(t, a, payload), 400, 'VALIDATION_FAILED');
      }
      const forged = Buffer.from(JSON.stringify({ v: 1, h: 'xxxxxxxx', i: 0, c: '0' })).toString(
        'base64url',
      );
      const p = expectProblem(
        await invalidate(t, a, { prefix: 'x', cursor: forged }),
        400,
        'VALIDATION_FAILED',
      );
      expect(p.errors?.[0]?.field).toBe('body.cursor');
      expectProblem(
        await invalidate(t, a, { prefix: 'x', cursor: 'garbage' }),
        400,
        'VALIDATION_FAILED',
      );
    });
  });

  describe('403', () => {
    it('a key limited to ef:* may invalidate under ef: only, and never by tag or pattern', async () => {
      const a = await newTenant(t.deps, RW);
      const narrow = await addKey(t.deps, a.tenant, ['cache:write:ef:*']);
      expect((await invalidate(t, narrow, { prefix: 'ef:1' })).statusCode).toBe(200);
      for (const payload of [
        { prefix: '' },
        { prefix: 'e' },
        { prefix: 'gh:' },
        { tags: ['x'] },
        { pattern: 'ef:*' },
      ]) {
        expectProblem(await invalidate(t, narrow, payload), 403, 'SCOPE_MISSING');
      }
    });
  });
});

describe('GET /v1/cache (listing)', () => {
  runCommonRouteTests({
    app: () => t,
    scope: 'cache:read',
    wrongScope: 'cache:write',
    request: (owner) => ({ method: 'GET', url: '/v1/cache?prefix=x', headers: owner.auth }),
    async crossTenant(owner, other) {
      await mset(t, owner, [{ key: 'secret:1', value: 1, tags: ['x'] }]);
      const res = body<{ keys: string[] }>(
        await t.app.inject({ method: 'GET', url: '/v1/cache?limit=1000', headers: other.auth }),
      );
      expect(res.keys).not.toContain('secret:1');
    },
  });

  describe('200', () => {
    it('pages every key under a prefix, and nothing else (no leases, tag sets or other tenants)', async () => {
      const a = await newTenant(t.deps, RW);
      const mine = Array.from({ length: 57 }, (_, i) => `list:${i}`);
      await mset(t, a, [
        ...mine.map((key) => ({ key, value: 1, tags: ['list'] })),
        { key: 'other', value: 1 },
      ]);
      await t.app.inject({ method: 'GET', url: `${url('list:none')}?lease=5000`, headers: a.auth });
      const seen = new Set<string>();
      let cursor: string | null = null;
      let pages = 0;
      do {
        const query: string = cursor === null ? '' : `&cursor=${cursor}`;
        const res = await t.app.inject({
          method: 'GET',
          url: `/v1/cache?prefix=list:&limit=10${query}`,
          headers: a.auth,
        });
        expect(res.statusCode).toBe(200);
        const page: { keys: string[]; cursor: string | null } = body(res);
        page.keys.forEach((k) => seen.add(k));
        cursor = page.cursor;
        pages++;
      } while (cursor !== null && pages < 200);
      expect([...seen].sort()).toEqual([...mine].sort());
      const all = body<{ keys: string[] }>(
        await t.app.inject({ method: 'GET', url: '/v1/cache?limit=1000', headers: a.auth }),
      );
      expect(all.keys.sort()).toEqual([...mine, 'other'].sort());
    });
  });

  describe('400 / 403', () => {
    it('refuses a bad cursor or limit; a key limited to ef:* lists only under ef:', async () => {
      const a = await newTenant(t.deps, RW);
      expectProblem(
        await t.app.inject({ method: 'GET', url: '/v1/cache?cursor=abc', headers: a.auth }),
        400,
        'VALIDATION_FAILED',
      );
      expectProblem(
        await t.app.inject({ method: 'GET', url: '/v1/cache?limit=0', headers: a.auth }),
        400,
        'VALIDATION_FAILED',
      );
      expectProblem(
        await t.app.inject({ method: 'GET', url: '/v1/cache?limit=5000', headers: a.auth }),
        400,
        'VALIDATION_FAILED',
      );
      const narrow = await addKey(t.deps, a.tenant, ['cache:read:ef:*']);
      expect(
        (await t.app.inject({ method: 'GET', url: '/v1/cache?prefix=ef:', headers: narrow.auth }))
          .statusCode,
      ).toBe(200);
      expectProblem(
        await t.app.inject({ method: 'GET', url: '/v1/cache', headers: narrow.auth }),
        403,
        'SCOPE_MISSING',
      );
    });
  });
});
