/**
 * HTTP surface of the cache: /v1/cache/{key} (GET, PUT, DELETE), /_mget and /_mset.
 * Reads answer with the stored JSON bytes spliced into the body, never parsed.
 */
import type { FastifyReply } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { AppError } from '../../errors.js';
import { authorizeResource, principalOf } from '../../http/auth.js';
import { HEADERS, emptyResponse, jsonResponse, problemResponses } from '../../http/openapi.js';
import {
  Entry,
  KeyParams,
  MgetBody,
  MgetResult,
  MsetBody,
  MsetResult,
  PutBody,
  PutResult,
} from './schemas.js';
import type { CacheEntry, CacheService } from './service.js';

export interface CacheRoutesOptions {
  service: CacheService;
}

const READ = 'cache:read';
const WRITE = 'cache:write';
const TAGS = ['cache'];
const JSON_TYPE = 'application/json; charset=utf-8';

const KEY_OPEN = Buffer.from('{"key":');

function tail(entry: CacheEntry): Buffer {
  return Buffer.from(
    `,"ttl":${entry.ttl === null ? 'null' : entry.ttl},"etag":"${entry.etag}"}`,
    'latin1',
  );
}

/**
 * `{"key":…,"value":<stored JSON>,"ttl":…,"etag":…}` without parsing the stored JSON, in one
 * allocation (small bodies come from Node's buffer pool).
 */
function renderEntry(key: string, entry: CacheEntry): Buffer {
  const head = `{"key":${JSON.stringify(key)},"value":`;
  const end = `,"ttl":${entry.ttl === null ? 'null' : entry.ttl},"etag":"${entry.etag}"}`;
  const headBytes = Buffer.byteLength(head, 'utf8');
  const out = Buffer.allocUnsafe(headBytes + entry.json.length + end.length);
  out.write(head, 0, 'utf8');
  entry.json.copy(out, headBytes);
  out.write(end, headBytes + entry.json.length, 'latin1');
  return out;
}

function renderItems(keys: readonly string[], entries: readonly (CacheEntry | null)[]): Buffer {
  const parts: Buffer[] = [Buffer.from('{"items":[')];
  entries.forEach((e, i) => {
    const key = JSON.stringify(keys[i]);
    if (i > 0) parts.push(Buffer.from(','));
    if (e === null) {
      parts.push(Buffer.from(`{"key":${key},"found":false}`, 'utf8'));
    } else {
      parts.push(KEY_OPEN, Buffer.from(`${key},"found":true,"value":`, 'utf8'), e.json, tail(e));
    }
  });
  parts.push(Buffer.from(']}'));
  return Buffer.concat(parts);
}

function sendRaw(reply: FastifyReply, body: Buffer): FastifyReply {
  return reply.type(JSON_TYPE).send(body);
}

export const cacheRoutes: FastifyPluginAsyncZod<CacheRoutesOptions> = async (app, { service }) => {
  app.get(
    '/:key',
    {
      config: { scope: READ, module: 'cache' },
      schema: {
        operationId: 'cacheGet',
        tags: TAGS,
        summary: 'Read a value',
        description:
          'Returns the value with its remaining TTL and entity tag. A miss is a 404 problem with code CACHE_MISS.',
        params: KeyParams,
        response: {
          200: jsonResponse('The stored value.', Entry, { ETag: HEADERS.etag }),
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const { key } = request.params;
      authorizeResource(principal, READ, key, 'path.key');
      const entry = await service.get(principal.tenant, key);
      if (entry === null)
        throw new AppError('CACHE_MISS', 'No value is stored under this key (or it expired).');
      reply.header('etag', `"${entry.etag}"`);
      return sendRaw(reply, renderEntry(key, entry));
    },
  );

  app.put(
    '/:key',
    {
      config: { scope: WRITE, module: 'cache' },
      schema: {
        operationId: 'cachePut',
        tags: TAGS,
        summary: 'Store a value',
        description:
          'Stores any JSON value under the key with a TTL (default CACHE_DEFAULT_TTL_SECONDS). Answers 201 when the key was new, 200 when a value was replaced.',
        params: KeyParams,
        body: PutBody,
        response: {
          200: jsonResponse('An existing value was replaced.', PutResult, { ETag: HEADERS.etag }),
          201: jsonResponse('The key was created.', PutResult, { ETag: HEADERS.etag }),
          ...problemResponses(400, 401, 403, 413, 415),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const { key } = request.params;
      authorizeResource(principal, WRITE, key, 'path.key');
      const res = await service.put(principal.tenant, {
        key,
        value: request.body.value,
        ttl: request.body.ttl,
      });
      reply.code(res.created ? 201 : 200).header('etag', `"${res.etag}"`);
      return { key, ttl: res.ttl, etag: res.etag };
    },
  );

  app.delete(
    '/:key',
    {
      config: { scope: WRITE, module: 'cache' },
      schema: {
        operationId: 'cacheDelete',
        tags: TAGS,
        summary: 'Delete a value',
        description: 'Deletes the key. Answers 204 whether or not it existed.',
        params: KeyParams,
        response: {
          204: emptyResponse('Deleted (or was absent).'),
          ...problemResponses(400, 401, 403),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const { key } = request.params;
      authorizeResource(principal, WRITE, key, 'path.key');
      await service.delete(principal.tenant, key);
      return reply.code(204).send();
    },
  );

  app.post(
    '/_mget',
    {
      config: { scope: READ, module: 'cache' },
      schema: {
        operationId: 'cacheMget',
        tags: TAGS,
        summary: 'Read many values',
        description:
          'Reads up to CACHE_MAX_BATCH (at most 1000) keys in one round trip. Items come back in request order, with found: false for misses.',
        body: MgetBody,
        response: {
          200: jsonResponse('One item per key, in order.', MgetResult),
          ...problemResponses(400, 401, 403, 413, 415),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const list = request.body.keys;
      list.forEach((k, i) => authorizeResource(principal, READ, k, `body.keys[${i}]`));
      const entries = await service.mget(principal.tenant, list);
      return sendRaw(reply, renderItems(list, entries));
    },
  );

  app.post(
    '/_mset',
    {
      config: { scope: WRITE, module: 'cache' },
      schema: {
        operationId: 'cacheMset',
        tags: TAGS,
        summary: 'Store many values',
        description:
          'Stores up to CACHE_MAX_BATCH (at most 1000) values atomically in one round trip (all or none). Each item may carry its own ttl.',
        body: MsetBody,
        response: {
          200: jsonResponse('Every item was stored.', MsetResult),
          ...problemResponses(400, 401, 403, 413, 415),
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const items = request.body.items;
      items.forEach((it, i) => authorizeResource(principal, WRITE, it.key, `body.items[${i}].key`));
      const res = await service.mset(principal.tenant, items);
      return {
        items: res.map((r, i) => ({
          key: (items[i] as { key: string }).key,
          ttl: r.ttl,
          etag: r.etag,
        })),
      };
    },
  );
};
