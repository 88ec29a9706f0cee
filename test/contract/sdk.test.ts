/**
 * What a client generated from openapi.yaml gets: the document passes Redocly's strict lint
 * (examples valid against their schemas, tags and parameters defined), a TypeScript SDK generated
 * by @hey-api/openapi-ts type-checks under `strict` (and a call with a wrong type does not), and
 * that SDK, as generated, works against a running gateway: one call or more of each module,
 * answers and problems read through its types.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPENAPI_FILE } from '../../scripts/openapi.js';
import { newTenant, useTestApp } from '../harness/app.js';

const t = useTestApp();

/** What each generated SDK function answers (its precise types are checked by tsc above). */
interface Answer {
  data?: unknown;
  error?: { status?: number; code?: string; errors?: { field: string }[] };
  response: Response;
}
type Sdk = Record<
  | 'cacheGet'
  | 'cacheList'
  | 'cachePut'
  | 'idempotencyBegin'
  | 'queueAck'
  | 'queueGroupCreate'
  | 'queuePublish'
  | 'queueReceive'
  | 'ratelimitCheck'
  | 'ratelimitHook'
  | 'sessionCreate'
  | 'sessionGet',
  (options: object) => Promise<Answer>
>;
const dir = mkdtempSync(join(tmpdir(), 'cache-gateway-sdk-'));

/**
 * The two tools, typed by the little this file calls. Their own declarations are large enough
 * that type-aware ESLint spent about 1.5 s on this file alone checking calls against them
 * (`npm run lint` runs in a fresh clone with no cache).
 */
interface OpenapiTs {
  createClient: (config: {
    input: string;
    output: { path: string };
    plugins: string[];
    logs: { level: 'silent' };
  }) => Promise<unknown>;
}
interface LintProblem {
  ruleId: string;
  message: string;
  location: { pointer?: string }[];
}
interface RedoclyCore {
  createConfig: (config: { extends: string[]; rules: Record<string, string> }) => Promise<unknown>;
  lint: (options: { ref: string; config: unknown }) => Promise<LintProblem[]>;
}
const openapiTs = () => import('@hey-api/openapi-ts') as Promise<unknown> as Promise<OpenapiTs>;
const redocly = () => import('@redocly/openapi-core') as Promise<unknown> as Promise<RedoclyCore>;

beforeAll(async () => {
  const { createClient } = await openapiTs();
  await createClient({
    input: OPENAPI_FILE,
    output: { path: join(dir, 'sdk') },
    plugins: ['@hey-api/client-fetch', '@hey-api/typescript', '@hey-api/sdk'],
    logs: { level: 'silent' },
  });
}, 60_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * TypeScript's errors (tsc in its own process, strict, as a user's build would run it) over every
 * file in the directory: the generated SDK and the calls written next to it.
 */
async function typeErrors(): Promise<string[]> {
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        noEmit: true,
        skipLibCheck: true,
        target: 'ES2022',
        module: 'ESNext',
        moduleResolution: 'Bundler',
        lib: ['ES2022', 'DOM'],
        types: [],
      },
      include: ['**/*.ts'],
    }),
  );
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const out = await new Promise<string>((resolve) => {
    execFile(
      process.execPath,
      [tsc, '-p', '.', '--pretty', 'false'],
      { cwd: dir },
      (_err, stdout) => resolve(stdout),
    );
  });
  return out.split('\n').filter((l) => l.includes('error TS'));
}

describe('clients generated from openapi.yaml', () => {
  it("passes Redocly's recommended-strict lint, examples checked against their schemas", async () => {
    const { createConfig, lint } = await redocly();
    const config = await createConfig({
      extends: ['recommended-strict'],
      rules: {
        'operation-tag-defined': 'error',
        'tag-description': 'error',
        'operation-description': 'error',
        'no-invalid-media-type-examples': 'error',
        'no-invalid-schema-examples': 'error',
        'no-unused-components': 'error',
        // The one server is the quick start's (`npm run local`): localhost by design.
        'no-server-example.com': 'off',
      },
    });
    const problems = (await lint({ ref: OPENAPI_FILE, config }))
      // The probes answer 200 or 503, never a 4xx: there is none to document.
      .filter(
        (p) =>
          !(
            p.ruleId === 'operation-4xx-response' &&
            ['#/paths/~1livez/get/responses', '#/paths/~1readyz/get/responses'].includes(
              p.location[0]?.pointer ?? '',
            )
          ),
      )
      .map((p) => `${p.ruleId}: ${p.message} (${p.location[0]?.pointer ?? ''})`);
    expect(problems).toEqual([]);
  });

  it('generates a TypeScript SDK that type-checks strict; a call with a wrong type does not', async () => {
    writeFileSync(
      join(dir, 'good.ts'),
      [
        "import { cacheGet, cachePut, ratelimitCheck, queuePublish } from './sdk/index.js';",
        'export async function use(): Promise<boolean> {',
        "  await cachePut({ path: { key: 'k' }, body: { value: { a: 1 }, ttl: 60, tags: ['t'] } });",
        "  const got = await cacheGet({ path: { key: 'k' }, query: { lease: 1000 } });",
        '  const ttl: number | null | undefined = got.data?.ttl;',
        '  const problem: string | undefined = got.error?.code;',
        "  await queuePublish({ path: { name: 'q' }, body: { data: [1], dedupId: 'd' } });",
        "  const d = await ratelimitCheck({ body: { policy: 'public', key: 'u', cost: 2 } });",
        "  return d.data?.allowed === true && ttl !== 0 && problem !== '';",
        '}',
      ].join('\n'),
    );
    writeFileSync(
      join(dir, 'bad.ts'),
      [
        "import { cacheList, cachePut, ratelimitCheck } from './sdk/index.js';",
        "void cachePut({ path: { key: 'k' }, body: { value: 1, ttl: 'soon' } });",
        "void ratelimitCheck({ body: { key: 'u' } });",
        "void cacheList({ query: { limit: '10' } });",
      ].join('\n'),
    );
    const errors = await typeErrors();
    // Every error is in bad.ts: the SDK and good.ts are clean.
    expect(errors.filter((e) => !e.startsWith('bad.ts'))).toEqual([]);
    expect(errors.find((e) => e.startsWith('bad.ts(2,'))).toContain(
      "Type 'string' is not assignable to type 'number'",
    );
    expect(errors.find((e) => e.startsWith('bad.ts(3,'))).toContain("'policy'");
    // A query integer is a number to the client (sent as digits).
    expect(errors.find((e) => e.startsWith('bad.ts(4,'))).toContain(
      "Type 'string' is not assignable to type 'number'",
    );
  });

  it('the generated SDK works against a running gateway, problems included', async () => {
    const a = await newTenant(t.deps, [
      'cache:read',
      'cache:write',
      'ratelimit:check',
      'session:read',
      'session:write',
      'queue:publish',
      'queue:consume',
      'queue:admin',
      'idempotency:use',
    ]);
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    const address = t.app.server.address();
    if (address === null || typeof address === 'string') throw new Error('not listening');
    const sdk = (await import(pathToFileURL(join(dir, 'sdk', 'index.ts')).href)) as Sdk;
    const client = (
      (await import(pathToFileURL(join(dir, 'sdk', 'client.gen.ts')).href)) as {
        client: { setConfig(c: { baseUrl: string; auth: () => string }): void };
      }
    ).client;
    client.setConfig({ baseUrl: `http://127.0.0.1:${address.port}`, auth: () => a.key });

    // Cache: put, get, list (GET /v1/cache), and a miss read as a problem.
    const put = await sdk.cachePut({
      path: { key: 'sdk:1' },
      body: { value: { n: 1 }, ttl: 60, tags: ['sdk'] },
    });
    expect(put.response.status).toBe(201);
    expect(put.data).toMatchObject({ key: 'sdk:1', ttl: 60 });
    const got = await sdk.cacheGet({ path: { key: 'sdk:1' } });
    expect(got.data).toMatchObject({ key: 'sdk:1', value: { n: 1 } });
    const listed = await sdk.cacheList({ query: { prefix: 'sdk:', limit: 10 } });
    expect(listed.response.status).toBe(200);
    expect(listed.data).toMatchObject({ keys: ['sdk:1'] });
    const miss = await sdk.cacheGet({ path: { key: 'sdk:none' } });
    expect(miss.response.status).toBe(404);
    expect(miss.error).toMatchObject({ status: 404, code: 'CACHE_MISS' });
    const badTtl = await sdk.cachePut({ path: { key: 'sdk:2' }, body: { value: 1, ttl: 0 } });
    expect(badTtl.error).toMatchObject({ code: 'VALIDATION_FAILED' });
    expect(badTtl.error?.errors?.[0]?.field).toBe('body.ttl');

    // Rate limits: a decision and its headers.
    const decision = await sdk.ratelimitCheck({ body: { policy: 'public', key: 'sdk-user' } });
    expect(decision.data).toMatchObject({ allowed: true, limit: 100, remaining: 99 });
    expect(decision.response.headers.get('ratelimit')).toBe('"public";r=99;t=1');

    // The hook: its key goes in X-Gateway-Key (its security scheme), not in Authorization.
    const hooked = await sdk.ratelimitHook({ path: { policy: 'public' } });
    expect(hooked.response.status).toBe(200);
    expect(hooked.response.headers.get('x-ratelimit-identity')).toBe('ip:127.0.0.1');

    // Sessions: create, then read it back.
    const created = await sdk.sessionCreate({ body: { userId: 'user-1', data: { cart: [] } } });
    expect(created.response.status).toBe(201);
    const { sessionId } = created.data as { sessionId: string };
    const session = await sdk.sessionGet({ path: { id: sessionId } });
    expect(session.data).toMatchObject({ userId: 'user-1', data: { cart: [] } });

    // Queues: a group, a publish, a receive and an ack.
    const q = { name: 'sdk-q' };
    expect((await sdk.queueGroupCreate({ path: { ...q, group: 'g' }, body: {} })).error).toBe(
      undefined,
    );
    const published = await sdk.queuePublish({ path: q, body: { data: { job: 7 } } });
    expect(published.response.status).toBe(201);
    const received = await sdk.queueReceive({
      path: { ...q, group: 'g' },
      body: { consumer: 'c1', max: 10 },
    });
    expect(received.data).toMatchObject({ messages: [{ data: { job: 7 } }] });
    const acked = await sdk.queueAck({
      path: { ...q, group: 'g' },
      body: { ids: [(published.data as { id: string }).id] },
    });
    expect(acked.data).toEqual({ acked: 1 });

    // Idempotency: the first begin starts, a second one with another fingerprint is refused.
    const begun = await sdk.idempotencyBegin({
      path: { key: 'sdk-op-1' },
      body: { fingerprint: 'f1' },
    });
    expect(begun.data).toMatchObject({ state: 'started' });
    const reused = await sdk.idempotencyBegin({
      path: { key: 'sdk-op-1' },
      body: { fingerprint: 'f2' },
    });
    expect(reused.response.status).toBe(422);
    expect(reused.error).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED' });
  });
});
