/**
 * The committed openapi.yaml is what the routes generate, and every operation carries what client
 * generators and readers need: operationId, tags, summary, problem responses, examples.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { OPENAPI_FILE, renderOpenApi } from '../../scripts/openapi.js';

type Op = {
  operationId?: string;
  tags?: string[];
  summary?: string;
  security?: unknown[];
  requestBody?: { content: Record<string, { schema: { $ref?: string } }> };
  responses: Record<
    string,
    { $ref?: string; content?: Record<string, { schema: { $ref?: string } }> }
  >;
};
type Doc = {
  paths: Record<string, Record<string, Op>>;
  components: {
    schemas: Record<string, { example?: unknown }>;
    responses: Record<string, unknown>;
  };
};

describe('openapi.yaml', () => {
  it('matches what the routes generate (run `npm run openapi` after changing a route)', async () => {
    expect(readFileSync(OPENAPI_FILE, 'utf8')).toBe(await renderOpenApi());
  });

  const doc = parse(readFileSync(OPENAPI_FILE, 'utf8')) as Doc;
  const ops = Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item).map(([method, op]) => ({ path, method, op })),
  );

  it('every operation has a unique camelCase operationId, tags and a summary', () => {
    const ids = ops.map((o) => o.op.operationId);
    expect(new Set(ids).size).toBe(ops.length);
    for (const { path, method, op } of ops) {
      expect(op.operationId, `${method} ${path}`).toMatch(/^[a-z][A-Za-z0-9]+$/);
      expect(op.tags?.length, `${method} ${path}`).toBeGreaterThan(0);
      expect(op.summary, `${method} ${path}`).toBeTruthy();
    }
  });

  it('every operation documents its problems; authenticated ones 401 and 403', () => {
    for (const { path, method, op } of ops) {
      const codes = Object.keys(op.responses);
      // Every operation can fail with 500; all but the liveness probe can answer 503.
      expect(codes, `${method} ${path}`).toEqual(
        expect.arrayContaining(op.operationId === 'livez' ? ['500'] : ['500', '503']),
      );
      if (op.security === undefined || op.security.length > 0) {
        expect(codes, `${method} ${path}`).toEqual(expect.arrayContaining(['401', '403']));
      }
      for (const [code, res] of Object.entries(op.responses)) {
        if (Number(code) < 400) continue;
        // A status that is either a problem or another body (the envoy endpoint's 429) lists both.
        if (res.$ref === undefined) {
          expect(
            res.content?.['application/problem+json']?.schema.$ref,
            `${method} ${path} ${code}`,
          ).toBe('#/components/schemas/Problem');
          continue;
        }
        expect(res.$ref, `${method} ${path} ${code}`).toBe(`#/components/responses/Problem${code}`);
      }
    }
  });

  it('request bodies and JSON responses reference named schemas that carry an example', () => {
    for (const { path, method, op } of ops) {
      // JSON bodies; raw bytes (application/octet-stream) are documented as binary strings.
      const schemas = [
        op.requestBody?.content['application/json']?.schema,
        ...Object.entries(op.responses)
          .filter(([code]) => Number(code) < 300)
          .map(([, r]) => r.content?.['application/json']?.schema),
      ].filter((s) => s !== undefined);
      for (const s of schemas) {
        expect(s.$ref, `${method} ${path}`).toMatch(/^#\/components\/schemas\//);
        const name = (s.$ref as string).split('/').pop() as string;
        expect(doc.components.schemas[name]?.example, `${name} needs an example`).toBeDefined();
      }
    }
  });
});
