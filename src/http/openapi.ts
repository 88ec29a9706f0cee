/**
 * What every route's OpenAPI description shares: the Problem schema, problem responses, response
 * headers, the security schemes, and the transform that turns route zod schemas into the document
 * (openapi.yaml is generated from it; a test fails when the committed file drifts).
 */
import type { FastifyDynamicSwaggerOptions } from '@fastify/swagger';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { PROBLEM_BASE } from '../errors.js';
import { PROBLEM_CONTENT_TYPE } from './problem.js';

export const ProblemSchema = z
  .object({
    type: z.string().describe('URI identifying the problem type; see docs/problems.md.'),
    title: z.string().describe('Short summary of the problem type.'),
    status: z.number().int().describe('The HTTP status code.'),
    detail: z.string().describe('What went wrong in this occurrence, for humans.'),
    instance: z.string().describe('The request path.'),
    code: z.string().describe('Stable machine-readable error code, e.g. VALIDATION_FAILED.'),
    requestId: z.string().describe('The X-Request-Id of the request; quote it when reporting.'),
    errors: z
      .array(
        z.object({
          field: z.string().describe('The offending field, e.g. body.items[3].key or path.key.'),
          message: z.string(),
          limit: z.string().optional().describe('The configured limit exceeded, when one was.'),
        }),
      )
      .optional(),
  })
  .meta({
    id: 'Problem',
    description: 'An RFC 9457 problem details object (application/problem+json).',
    examples: [
      {
        type: `${PROBLEM_BASE}validation-failed`,
        title: 'Request validation failed',
        status: 400,
        detail: 'path.key: must be at most 1024 bytes of UTF-8',
        instance: '/v1/cache/x',
        code: 'VALIDATION_FAILED',
        requestId: '3f1c2a4e-8b7d-4c1e-9a55-0b6f1c2d3e4f',
        errors: [
          {
            field: 'path.key',
            message: 'must be at most 1024 bytes of UTF-8',
            limit: 'MAX_KEY_BYTES',
          },
        ],
      },
    ],
  });

const PROBLEM_DESCRIPTIONS: Record<number, string> = {
  400: 'Malformed request or a field failed validation (the problem names it).',
  401: 'No API key, or an unknown, revoked or expired one.',
  403: 'The API key lacks the scope this operation needs.',
  404: 'Not found.',
  409: 'Conflict with the current state.',
  413: 'The body or a value exceeds a configured limit (the problem names it).',
  415: 'The body must be application/json.',
  422: 'The request conflicts with what an earlier request with the same key asked for.',
  429: 'A rate limit was exceeded.',
  500: 'Internal error.',
  503: 'Redis is unavailable or too slow (failover, outage), or the gateway replica is draining or overloaded; retry after Retry-After seconds.',
};

export const HEADERS = {
  requestId: { type: 'string', description: 'The request id (echoed or generated).' },
  retryAfter: { type: 'integer', description: 'Seconds to wait before retrying.' },
  etag: { type: 'string', description: 'Entity tag of the stored value.' },
} as const;

type ResponseSpec = {
  description: string;
  content?: Record<string, { schema: z.ZodType }>;
  headers?: Record<string, { type: string; description?: string }>;
};

/** Problem responses for the given statuses (plus 500 and 503, which any route can answer). */
export function problemResponses(...statuses: number[]): Record<number, ResponseSpec> {
  const out: Record<number, ResponseSpec> = {};
  for (const s of [...new Set([...statuses, 500, 503])].sort()) {
    out[s] = {
      description: PROBLEM_DESCRIPTIONS[s] ?? 'Problem.',
      content: { [PROBLEM_CONTENT_TYPE]: { schema: ProblemSchema } },
      headers:
        s === 503 || s === 429
          ? { 'X-Request-Id': HEADERS.requestId, 'Retry-After': HEADERS.retryAfter }
          : { 'X-Request-Id': HEADERS.requestId },
    };
  }
  return out;
}

/** A JSON success response with headers. */
export function jsonResponse(
  description: string,
  schema: z.ZodType,
  headers: ResponseSpec['headers'] = {},
): ResponseSpec {
  return {
    description,
    content: { 'application/json': { schema } },
    headers: { 'X-Request-Id': HEADERS.requestId, ...headers },
  };
}

/** A response without a body. */
export function emptyResponse(description: string): ResponseSpec {
  return { description, headers: { 'X-Request-Id': HEADERS.requestId } };
}

type TransformInput = Parameters<typeof jsonSchemaTransform>[0];

/** Raw bytes (application/octet-stream bodies). Validates a Buffer; documented as binary. */
export const BinaryBody = z.custom<Buffer>((v) => Buffer.isBuffer(v), {
  message: 'must be raw bytes',
});
const BINARY_DOC = z.string().meta({ format: 'binary' });

/** Replaces BinaryBody (which has no JSON Schema) by its documented form in a content map. */
function documentable(
  content: Record<string, { schema: z.ZodType }>,
): Record<string, { schema: z.ZodType }> {
  return Object.fromEntries(
    Object.entries(content).map(([type, c]) => [
      type,
      { schema: c.schema === BinaryBody ? BINARY_DOC : c.schema },
    ]),
  );
}

/**
 * The zod transform, plus what it drops or cannot know: response headers, body-less responses,
 * and the required scope in each operation's description.
 */
function transform(input: TransformInput): ReturnType<typeof jsonSchemaTransform> {
  const out = transformRoute(input);
  // A plugin's '/' route is served with and without the slash (Fastify's prefixTrailingSlash
  // 'both'): document it as `/v1/cache`, the form the README uses.
  return input.url.length > 1 && input.url.endsWith('/')
    ? { ...out, url: input.url.slice(0, -1) }
    : out;
}

function transformRoute(input: TransformInput): ReturnType<typeof jsonSchemaTransform> {
  const schema = input.schema as Record<string, unknown> | undefined;
  const rawResponses = (schema?.response ?? {}) as Record<string, ResponseSpec>;
  const responses = Object.fromEntries(
    Object.entries(rawResponses).map(([s, spec]) => [
      s,
      spec.content ? { ...spec, content: documentable(spec.content) } : spec,
    ]),
  ) as Record<string, ResponseSpec>;
  // A body with one schema per content type: convert each, keep the map.
  const bodyContent = (
    schema?.body as { content?: Record<string, { schema: z.ZodType }> } | undefined
  )?.content;
  const bodyByType =
    bodyContent === undefined
      ? undefined
      : Object.fromEntries(
          Object.entries(documentable(bodyContent)).map(([type, c]) => {
            const converted = jsonSchemaTransform({ ...input, schema: { body: c.schema } })
              .schema as { body?: unknown };
            return [type, { schema: converted.body }];
          }),
        );
  const bodyless: Record<string, ResponseSpec> = {};
  const withBody: Record<string, ResponseSpec> = {};
  for (const [status, spec] of Object.entries(responses)) {
    if (spec.content === undefined) bodyless[status] = spec;
    else withBody[status] = spec;
  }
  const out = jsonSchemaTransform({
    ...input,
    schema: { ...schema, response: withBody, ...(bodyByType ? { body: undefined } : {}) },
  });
  const s = out.schema as Record<string, unknown> & {
    response?: Record<string, Record<string, unknown>>;
  };
  if (s.hide === true) return out;
  if (bodyByType) s.body = { content: bodyByType };
  s.response ??= {};
  for (const [status, spec] of Object.entries(responses)) {
    if (spec.content === undefined) {
      s.response[status] = {
        description: spec.description,
        type: 'null',
        headers: spec.headers ?? {},
      };
    } else if (spec.headers !== undefined && s.response[status] !== undefined) {
      s.response[status].headers = spec.headers;
    }
  }
  const config = (input.route.config ?? {}) as {
    scope?: string;
    auth?: string;
    credentialHeader?: string;
  };
  // The hook reads its key from X-Gateway-Key only (Authorization is the proxied request's).
  if (config.credentialHeader === 'x-gateway-key') s.security = [{ gatewayKey: [] }];
  const needs =
    config.auth === 'none'
      ? 'No authentication.'
      : config.auth === 'admin'
        ? 'Requires the ADMIN_TOKEN, or an API key with the `admin` scope acting on its own tenant.'
        : config.scope !== undefined
          ? `Requires scope \`${config.scope}\`.`
          : undefined;
  if (needs !== undefined) {
    s.description = [s.description, needs].filter(Boolean).join('\n\n');
    if (config.auth === 'none') s.security = [];
  }
  return out;
}

type Json = unknown;

function walk(node: Json, visit: (obj: Record<string, Json>) => void): void {
  if (Array.isArray(node)) {
    for (const n of node) walk(n, visit);
  } else if (node !== null && typeof node === 'object') {
    visit(node as Record<string, Json>);
    for (const v of Object.values(node)) walk(v, visit);
  }
}

const SAFE_INT = 9007199254740991;

/**
 * Makes the generated document what client generators want: only referenced component schemas,
 * `XInput` named `X` when there is no separate output `X`, OpenAPI 3.0 `example` instead of the
 * JSON Schema `examples` array, and no ±2^53 bounds on plain integers.
 */
function tidyDocument<T extends object>(document: T): T {
  const doc = document as Record<string, Json>;
  const components = (doc.components ?? {}) as { schemas?: Record<string, Json> };
  const schemas = components.schemas ?? {};
  const prefix = '#/components/schemas/';
  // Keep what paths reference, transitively.
  const used = new Set<string>();
  const queue: Json[] = [doc.paths];
  while (queue.length > 0) {
    walk(queue.pop(), (o) => {
      const ref = o.$ref;
      if (typeof ref === 'string' && ref.startsWith(prefix)) {
        const name = ref.slice(prefix.length);
        if (!used.has(name)) {
          used.add(name);
          queue.push(schemas[name]);
        }
      }
    });
  }
  const rename = new Map<string, string>();
  for (const name of used) {
    if (name.endsWith('Input') && !used.has(name.slice(0, -5))) rename.set(name, name.slice(0, -5));
  }
  const kept: Record<string, Json> = {};
  for (const name of [...used].sort()) {
    // Responses may gain fields in later versions; clients must ignore unknown ones, so output
    // schemas do not claim additionalProperties: false.
    if (!name.endsWith('Input')) {
      walk(schemas[name], (o) => {
        if (o.additionalProperties === false) delete o.additionalProperties;
      });
    }
    kept[rename.get(name) ?? name] = schemas[name];
  }
  components.schemas = kept;
  walk(doc, (o) => {
    if (typeof o.$ref === 'string' && o.$ref.startsWith(prefix)) {
      const name = o.$ref.slice(prefix.length);
      const to = rename.get(name);
      if (to !== undefined) o.$ref = prefix + to;
    }
    // A query integer (http/query.ts) is checked as digits; its schema says integer.
    if (o.type === 'integer' && typeof o.pattern === 'string') delete o.pattern;
    if (o.type === 'integer' && o.minimum === -SAFE_INT) delete o.minimum;
    if (o.type === 'integer' && o.maximum === SAFE_INT) delete o.maximum;
  });
  for (const schema of Object.values(kept)) {
    const o = schema as Record<string, Json>;
    if (Array.isArray(o.examples)) {
      o.example = o.examples[0];
      delete o.examples;
    }
  }
  // Problem responses are the same for every operation: define each status once. A response that
  // is a problem or something else (the envoy endpoint's 429) stays with its operation.
  const responses: Record<string, Json> = {};
  for (const item of Object.values(
    (doc.paths ?? {}) as Record<string, Record<string, { responses?: Record<string, Json> }>>,
  )) {
    for (const op of Object.values(item)) {
      for (const [status, res] of Object.entries(op.responses ?? {})) {
        const content = (res as { content?: Record<string, Json> }).content;
        if (content?.[PROBLEM_CONTENT_TYPE] === undefined || Object.keys(content).length > 1) {
          continue;
        }
        const name = `Problem${status}`;
        responses[name] ??= res;
        (op.responses as Record<string, Json>)[status] = { $ref: `#/components/responses/${name}` };
      }
    }
  }
  (components as Record<string, Json>).responses = Object.fromEntries(
    Object.entries(responses).sort(),
  );
  return document;
}

export const TAGS = [
  { name: 'cache', description: 'Shared cache: get, put, delete, batch operations.' },
  {
    name: 'ratelimit',
    description:
      'Rate-limit decisions (five algorithms, named or inline policies) and the hook API gateways call.',
  },
  {
    name: 'sessions',
    description:
      "Server-side sessions: create, read with a sliding expiry, update, rotate, a user's sessions.",
  },
  {
    name: 'queues',
    description:
      'Pull queues over Redis Streams: publish, consumer groups, receive, ack, nack, dead letters.',
  },
  {
    name: 'idempotency',
    description:
      'Idempotency keys: begin a request once, store its response, replay it to retries.',
  },
  { name: 'admin', description: 'Tenants, API keys and rate-limit policies.' },
  { name: 'health', description: 'Liveness and readiness probes.' },
];

/** @fastify/swagger options; `version` is the package version. */
export function swaggerOptions(version: string): FastifyDynamicSwaggerOptions {
  return {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'cache-gateway',
        version,
        description:
          'A shared cache, sessions, rate limits, queues and idempotency keys for services in any language, over plain HTTP/JSON, backed by Redis Sentinel. Every error is application/problem+json (RFC 9457).',
        license: { name: 'Apache-2.0', url: 'https://www.apache.org/licenses/LICENSE-2.0' },
      },
      servers: [{ url: 'http://localhost:8080', description: 'Local gateway (npm run local)' }],
      tags: TAGS,
      components: {
        securitySchemes: {
          bearer: {
            type: 'http',
            scheme: 'bearer',
            description: 'An API key: Authorization: Bearer cgk_<id>_<secret>',
          },
          apiKey: {
            type: 'apiKey',
            in: 'header',
            name: 'X-API-Key',
            description: 'The same API key in X-API-Key.',
          },
          gatewayKey: {
            type: 'apiKey',
            in: 'header',
            name: 'X-Gateway-Key',
            description:
              "The rate-limit hook's API key, configured in the API gateway that calls it (the only credential the hook reads).",
          },
        },
      },
      security: [{ bearer: [] }, { apiKey: [] }],
    },
    transform,
    transformObject: (input) => tidyDocument(jsonSchemaTransformObject(input)),
  };
}
