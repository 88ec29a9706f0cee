import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKey, hashKey } from '../../src/modules/admin/api-key.js';
import {
  ADMIN_TOKEN,
  type TestApp,
  addKey,
  buildTestApp,
  expectProblem,
  newTenant,
  randomTenantId,
} from '../harness/app.js';

let a: TestApp;
let b: TestApp;
beforeAll(async () => {
  [a, b] = await Promise.all([buildTestApp(), buildTestApp()]);
});
afterAll(async () => {
  await Promise.all([a?.close(), b?.close()]);
});

const get = (app: TestApp, headers: Record<string, string>) =>
  app.app.inject({ method: 'GET', url: '/v1/cache/probe', headers });

describe('API key verification', () => {
  it('a revocation on one replica reaches every other replica at once (pub/sub)', async () => {
    const owner = await newTenant(a.deps, ['cache:read']);
    expect((await get(b, owner.auth)).statusCode).toBe(404); // b has it cached now
    await a.deps.admin.revokeKey(owner.tenant, owner.keyId);
    const deadline = Date.now() + 2000;
    let status = 0;
    while (Date.now() < deadline) {
      status = (await get(b, owner.auth)).statusCode;
      if (status === 401) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(status).toBe(401);
  });

  it('an expired key is refused', async () => {
    const owner = await newTenant(a.deps, ['cache:read']);
    const soon = await addKey(
      a.deps,
      owner.tenant,
      ['cache:read'],
      new Date(Date.now() + 1200).toISOString(),
    );
    expect((await get(a, soon.auth)).statusCode).toBe(404);
    await new Promise((r) => setTimeout(r, 1300));
    expectProblem(await get(a, soon.auth), 401, 'UNAUTHORIZED');
  });

  it('verified keys are served from memory for AUTH_CACHE_TTL_MS, then re-read', async () => {
    const short = await buildTestApp({ env: { AUTH_CACHE_TTL_MS: '300' } });
    try {
      const owner = await newTenant(short.deps, ['cache:read']);
      expect((await get(short, owner.auth)).statusCode).toBe(404);
      // Remove the record behind the gateway's back: the cached entry still answers...
      await short.deps.redis.primary.del(`_gw:apikey:${owner.keyId}`);
      expect((await get(short, owner.auth)).statusCode).toBe(404);
      // ...until it expires.
      await new Promise((r) => setTimeout(r, 350));
      expectProblem(await get(short, owner.auth), 401, 'UNAUTHORIZED');
    } finally {
      await short.close();
    }
  });

  it('the same 401 for every kind of refusal', async () => {
    const owner = await newTenant(a.deps, ['cache:read']);
    await a.deps.admin.revokeKey(owner.tenant, owner.keyId);
    const bodies = [];
    for (const h of [
      {},
      { authorization: 'Bearer x' },
      owner.auth,
      { authorization: `Bearer ${generateKey().key}` },
    ]) {
      const p = expectProblem(await get(a, h), 401, 'UNAUTHORIZED');
      bodies.push([p.detail, p.type]);
    }
    expect(new Set(bodies.map((x) => JSON.stringify(x))).size).toBe(1);
  });
});

describe('API_KEYS_FILE', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cg-keys-'));
  const file = join(dir, 'keys.json');
  const plain = generateKey();
  const hashed = generateKey();
  const tenant = randomTenantId('file');
  let app: TestApp;

  beforeAll(async () => {
    writeFileSync(
      file,
      JSON.stringify({
        keys: [
          { tenant, scopes: ['cache:read', 'cache:write'], key: plain.key },
          {
            tenant,
            scopes: ['cache:read'],
            id: hashed.id,
            sha256: hashKey(hashed.key),
          },
        ],
      }),
    );
    app = await buildTestApp({ env: { API_KEYS_FILE: file } });
  });
  afterAll(async () => {
    await app?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('accepts plaintext and sha256 entries, with their scopes', async () => {
    const put = await app.app.inject({
      method: 'PUT',
      url: '/v1/cache/f',
      headers: { 'x-api-key': plain.key },
      payload: { value: 'from-file' },
    });
    expect(put.statusCode).toBe(201);
    const got = await app.app.inject({
      method: 'GET',
      url: '/v1/cache/f',
      headers: { authorization: `Bearer ${hashed.key}` },
    });
    expect(JSON.parse(got.body).value).toBe('from-file');
    expectProblem(
      await app.app.inject({
        method: 'PUT',
        url: '/v1/cache/f',
        headers: { authorization: `Bearer ${hashed.key}` },
        payload: { value: 1 },
      }),
      403,
      'SCOPE_MISSING',
    );
  });

  it('lists file keys and refuses to revoke them through the API', async () => {
    const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
    const list = await app.app.inject({
      method: 'GET',
      url: `/v1/admin/tenants/${tenant}/keys`,
      headers: admin,
    });
    const listed = (JSON.parse(list.body) as { keys: { id: string; source: string }[] }).keys;
    expect(listed.map((k) => [k.id, k.source]).sort()).toEqual(
      [
        [plain.id, 'file'],
        [hashed.id, 'file'],
      ].sort(),
    );
    expectProblem(
      await app.app.inject({
        method: 'DELETE',
        url: `/v1/admin/tenants/${tenant}/keys/${plain.id}`,
        headers: admin,
      }),
      409,
      'API_KEY_MANAGED_BY_FILE',
    );
  });

  it('removing an entry from the file revokes the key on reload', async () => {
    writeFileSync(
      file,
      JSON.stringify({ keys: [{ tenant, scopes: ['cache:read'], key: plain.key }] }),
    );
    app.deps.reloadKeysFile();
    expectProblem(
      await app.app.inject({
        method: 'GET',
        url: '/v1/cache/f',
        headers: { authorization: `Bearer ${hashed.key}` },
      }),
      401,
      'UNAUTHORIZED',
    );
    expect(
      (
        await app.app.inject({
          method: 'GET',
          url: '/v1/cache/f',
          headers: { authorization: `Bearer ${plain.key}` },
        })
      ).statusCode,
    ).toBe(200);
  });

  it('a broken file stops startup with a message naming the entry', async () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ keys: [{ tenant: 'x', scopes: ['cache:read'] }] }));
    await expect(buildTestApp({ env: { API_KEYS_FILE: bad } })).rejects.toThrow(/keys\.0/);
  });
});
