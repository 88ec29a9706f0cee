/**
 * HTTP surface of the cache: /v1/cache (listing), /v1/cache/{key} (GET, PUT, PATCH, DELETE),
 * /_mget, /_mset, /_mdelete and /_invalidate. Reads answer with the stored bytes spliced into the body,
 * never parsed; conditional requests use the stored ETag.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { AppError } from '../../errors.js';
import { authorizeAll, authorizePrefix, authorizeResource, principalOf } from '../../http/auth.js';
import {
  BinaryBody,
  HEADERS,
  emptyResponse,
  jsonResponse,
  problemResponses,
} from '../../http/openapi.js';
import {
  ConditionalHeaders,
  Entry,
  GetQuery,
  InvalidateBody,
  InvalidateResult,
  KeyParams,
  ListQuery,
  ListResult,
  MdeleteBody,
  MdeleteResult,
  MgetBody,
  MgetResult,
  MsetBody,
  MsetResult,
  PatchBody,
  PutBody,
  PutQuery,
  PutResult,
  TouchResult,
} from './schemas.js';
import type { CacheEntry, CacheService, PutInput } from './service.js';

export interface CacheRoutesOptions {
  service: CacheService;
  limits: { maxLeaseMs: number; maxWaitMs: number };
}

const READ = 'cache:read';
const WRITE = 'cache:write';
const TAGS = ['cache'];
const JSON_TYPE = 'application/json; charset=utf-8';
const OCTET = 'application/octet-stream';
const CACHE_STATUS = 'cache-gateway';

const CACHE_HEADERS = {
  ETag: HEADERS.etag,
  'Cache-Status': {
    type: 'string',
    description:
      'RFC 9211: `cache-gateway; hit; ttl=N`, `...; hit; ttl=0; detail=stale`, `...; hit; collapsed` (after waiting on a lease), `...; fwd=uri-miss`.',
  },
} as const;
const LEASE_HEADER = {
  'X-Cache-Lease': {
    type: 'string',
    description:
      'A lease token: you fill the key (PUT with this header) or refresh the stale value.',
  },
} as const;

/** The value as JSON text: stored JSON as is, binary as a base64 string. */
function valueJson(entry: CacheEntry): Buffer {
  return entry.encoding === 'json'
    ? entry.payload
    : Buffer.from(`"${entry.payload.toString('base64')}"`, 'latin1');
}

/** The fields after the value: encoding, ttl, staleTtl, stale, etag. */
function tail(entry: CacheEntry): string {
  return (
    (entry.encoding === 'binary' ? ',"encoding":"base64"' : '') +
    `,"ttl":${entry.ttl === null ? 'null' : entry.ttl}` +
    (entry.staleTtl === undefined ? '' : `,"staleTtl":${entry.staleTtl}`) +
    (entry.stale ? ',"stale":true' : '') +
    `,"etag":"${entry.etag}"}`
  );
}

/** Below this, the body is sent as a string: Node then writes headers and body in one chunk. */
const STRING_BODY_MAX = 4096;

/**
 * `{"key":…,"value":<stored JSON>,"ttl":…,"etag":…}` without parsing the stored JSON. Small bodies
 * become one string (one socket write with the headers); larger ones one Buffer (no re-encoding).
 */
function renderEntry(key: string, entry: CacheEntry): Buffer | string {
  const head = `{"key":${JSON.stringify(key)},"value":`;
  const value = valueJson(entry);
  const end = tail(entry);
  if (value.length < STRING_BODY_MAX) return head + value.toString('utf8') + end;
  const headBytes = Buffer.byteLength(head, 'utf8');
  const out = Buffer.allocUnsafe(headBytes + value.length + end.length);
  out.write(head, 0, 'utf8');
  value.copy(out, headBytes);
  out.write(end, headBytes + value.length, 'latin1');
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
      parts.push(
        Buffer.from(`{"key":${key},"found":true,"value":`, 'utf8'),
        valueJson(e),
        Buffer.from(tail(e), 'latin1'),
      );
    }
  });
  parts.push(Buffer.from(']}'));
  return Buffer.concat(parts);
}

function cacheStatus(entry: CacheEntry, collapsed: boolean): string {
  if (collapsed) return `${CACHE_STATUS}; hit; collapsed`;
  if (entry.stale) return `${CACHE_STATUS}; hit; ttl=0; detail=stale`;
  return entry.ttl === null ? `${CACHE_STATUS}; hit` : `${CACHE_STATUS}; hit; ttl=${entry.ttl}`;
}

/** Whether the client asked for raw bytes (Accept prefers application/octet-stream over JSON). */
function wantsRaw(request: FastifyRequest): boolean {
  const accept = request.headers.accept;
  if (accept === undefined || !accept.includes(OCTET)) return false;
  const json = accept.indexOf('application/json');
  return json === -1 || accept.indexOf(OCTET) < json;
}

/** RFC 9110 If-None-Match: `*` or a list of (possibly weak) entity tags; weak comparison. */
function noneMatch(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === `"${etag}"`);
}

/** If-Match needs a strong tag: `"etag"`; a weak tag can never match. */
function strongTag(header: string): string {
  const t = header.trim();
  if (!/^"[^"]*"$/.test(t)) {
    throw new AppError(
      'PRECONDITION_FAILED',
      'If-Match needs a strong entity tag ("..."); a weak or malformed one never matches.',
    );
  }
  return t.slice(1, -1);
}

function sendRaw(reply: FastifyReply, body: Buffer | string, type = JSON_TYPE): FastifyReply {
  return reply.type(type).send(body);
}

export const cacheRoutes: FastifyPluginAsyncZod<CacheRoutesOptions> = async (
  app,
  { service, limits },
) => {
  app.addContentTypeParser(OCTET, { parseAs: 'buffer' }, (_request, body, done) =>
    done(null, body),
  );

  app.get(
    '/',
    {
      config: { scope: READ, module: 'cache' },
      schema: {
        operationId: 'cacheList',
        tags: TAGS,
        summary: 'List keys',
        description:
          "Pages the tenant's keys under a prefix (SCAN: a page may be short or empty while the cursor is not null; a key may appear twice). A key whose scope has a resource glob may list only under the glob's literal prefix.",
        querystring: ListQuery,
        response: {
          200: jsonResponse('A page of keys.', ListResult),
          ...problemResponses(400, 401, 403),
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const prefix = request.query.prefix ?? '';
      authorizePrefix(principal, READ, prefix, 'query.prefix');
      return service.list(
        principal.tenant,
        prefix,
        request.query.cursor,
        request.query.limit ?? 100,
      );
    },
  );

  app.get(
    '/:key',
    {
      config: { scope: READ, module: 'cache' },
      schema: {
        operationId: 'cacheGet',
        tags: TAGS,
        summary: 'Read a value',
        description:
          'Returns the value with its remaining TTL and ETag (304 when If-None-Match matches). `Accept: application/octet-stream` returns the raw bytes. A miss is a 404 problem CACHE_MISS. With `lease`, a miss hands exactly one caller a lease token (X-Cache-Lease) to fill the key; the others wait up to `wait` ms for the value or get 404 with Retry-After. Past `ttl`, a value stored with `staleTtl` is served with `stale: true` and one reader gets a refresh lease.',
        params: KeyParams,
        querystring: GetQuery,
        headers: z.looseObject({
          'if-none-match': z
            .string()
            .optional()
            .describe('ETags (or *): 304 without a body when one matches the stored value.'),
          accept: z
            .string()
            .optional()
            .describe('application/octet-stream returns the raw bytes of the value.'),
        }),
        response: {
          200: {
            description: 'The stored value.',
            content: { 'application/json': { schema: Entry }, [OCTET]: { schema: BinaryBody } },
            headers: { 'X-Request-Id': HEADERS.requestId, ...CACHE_HEADERS, ...LEASE_HEADER },
          },
          304: {
            description: 'Not modified: If-None-Match matched the stored ETag.',
            headers: { 'X-Request-Id': HEADERS.requestId, ETag: HEADERS.etag },
          },
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const { key } = request.params;
      authorizeResource(principal, READ, key, 'path.key');
      const { lease, wait } = request.query;
      if (lease !== undefined && lease > limits.maxLeaseMs) {
        throw new AppError(
          'VALIDATION_FAILED',
          `query.lease must be at most ${limits.maxLeaseMs}.`,
          {
            errors: [
              {
                field: 'query.lease',
                message: `must be at most ${limits.maxLeaseMs}`,
                limit: 'CACHE_MAX_LEASE_MS',
              },
            ],
          },
        );
      }
      const res = await service.get(principal.tenant, key, {
        ...(lease !== undefined ? { lease } : {}),
        ...(wait !== undefined ? { wait: Math.min(wait, limits.maxWaitMs) } : {}),
      });
      if (!res.hit) {
        reply.header('cache-status', `${CACHE_STATUS}; fwd=uri-miss`);
        if (res.lease) {
          throw new AppError(
            'CACHE_MISS',
            'No value is stored under this key: you hold its lease, fill it with PUT and X-Cache-Lease.',
            {
              headers: { 'x-cache-lease': res.lease.token },
              extensions: { lease: { token: res.lease.token, ttlMs: res.lease.ttlMs } },
            },
          );
        }
        throw new AppError(
          'CACHE_MISS',
          res.retryAfterMs === undefined
            ? 'No value is stored under this key (or it expired).'
            : 'No value yet: another caller holds the lease and is filling it.',
          res.retryAfterMs === undefined
            ? {}
            : { retryAfter: Math.max(1, Math.ceil(res.retryAfterMs / 1000)) },
        );
      }
      const { entry } = res;
      reply
        .header('etag', `"${entry.etag}"`)
        .header('cache-status', cacheStatus(entry, res.collapsed === true));
      if (res.refreshLease !== undefined) reply.header('x-cache-lease', res.refreshLease);
      if (noneMatch(request.headers['if-none-match'], entry.etag)) return reply.code(304).send();
      if (wantsRaw(request))
        return sendRaw(reply, entry.payload, entry.encoding === 'json' ? JSON_TYPE : OCTET);
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
          'Stores any JSON value (application/json body `{value, ttl?, staleTtl?, tags?}`) or raw bytes (application/octet-stream body; ttl, staleTtl and tags in the query). 201 when the key was new, 200 when replaced. `If-Match: "<etag>"` is compare-and-set, `If-None-Match: *` create-only (412 when they fail). `X-Cache-Lease` releases the key\'s lease and wakes readers waiting on it.',
        params: KeyParams,
        querystring: PutQuery,
        headers: ConditionalHeaders,
        body: {
          content: { 'application/json': { schema: PutBody }, [OCTET]: { schema: BinaryBody } },
        },
        response: {
          200: jsonResponse('An existing value was replaced.', PutResult, { ETag: HEADERS.etag }),
          201: jsonResponse('The key was created.', PutResult, { ETag: HEADERS.etag }),
          ...problemResponses(400, 401, 403, 412, 413, 415),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const { key } = request.params;
      authorizeResource(principal, WRITE, key, 'path.key');
      const h = request.headers;
      const leaseToken = h['x-cache-lease'];
      if (leaseToken !== undefined && leaseToken.length > 64) {
        throw new AppError('VALIDATION_FAILED', 'X-Cache-Lease is longer than any lease token.', {
          errors: [{ field: 'headers.x-cache-lease', message: 'at most 64 characters' }],
        });
      }
      const noneMatchHeader = h['if-none-match']?.trim();
      if (noneMatchHeader !== undefined && noneMatchHeader !== '*') {
        throw new AppError(
          'VALIDATION_FAILED',
          'On PUT, If-None-Match supports only "*" (create only).',
          {
            errors: [{ field: 'headers.if-none-match', message: 'must be *' }],
          },
        );
      }
      const condition =
        h['if-match'] !== undefined
          ? { match: strongTag(h['if-match']) }
          : noneMatchHeader === '*'
            ? { absent: true as const }
            : undefined;
      const binary = Buffer.isBuffer(request.body);
      const q = request.query;
      if (!binary && (q.ttl !== undefined || q.staleTtl !== undefined || q.tags !== undefined)) {
        // A JSON body carries these itself: one given in the query would be silently ignored.
        const misplaced = (['ttl', 'staleTtl', 'tags'] as const).filter((f) => q[f] !== undefined);
        throw new AppError(
          'VALIDATION_FAILED',
          `With a JSON body, ${misplaced.join(', ')} go in the body, not the query.`,
          {
            errors: misplaced.map((f) => ({
              field: `query.${f}`,
              message: `binary bodies only: put ${f} in the JSON body`,
            })),
          },
        );
      }
      const item: PutInput = binary
        ? {
            key,
            value: request.body,
            encoding: 'binary',
            ttl: q.ttl,
            staleTtl: q.staleTtl,
            tags: q.tags,
          }
        : { key, encoding: 'json', ...(request.body as PutBody) };
      const res = await service.put(principal.tenant, {
        ...item,
        condition,
        leaseToken: h['x-cache-lease'],
      });
      // Rendered here, as the other hot answers are (no validating serializer on this path).
      return reply
        .code(res.created ? 201 : 200)
        .header('etag', `"${res.etag}"`)
        .type(JSON_TYPE)
        .send(
          `{"key":${JSON.stringify(key)},"ttl":${JSON.stringify(res.ttl)}` +
            (res.staleTtl !== undefined ? `,"staleTtl":${JSON.stringify(res.staleTtl)}` : '') +
            `,"etag":${JSON.stringify(res.etag)}` +
            (h['x-cache-lease'] !== undefined
              ? `,"leaseReleased":${JSON.stringify(res.leaseReleased)}`
              : '') +
            '}',
        );
    },
  );

  app.patch(
    '/:key',
    {
      config: { scope: WRITE, module: 'cache' },
      schema: {
        operationId: 'cacheTouch',
        tags: TAGS,
        summary: 'Change the TTL',
        description:
          'Sets a new ttl (and staleTtl) from now, without rewriting or sending the value. 404 when there is no value.',
        params: KeyParams,
        body: PatchBody,
        response: {
          200: jsonResponse('Updated.', TouchResult, { ETag: HEADERS.etag }),
          ...problemResponses(400, 401, 403, 404, 415),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const { key } = request.params;
      authorizeResource(principal, WRITE, key, 'path.key');
      const res = await service.touch(
        principal.tenant,
        key,
        request.body.ttl,
        request.body.staleTtl,
      );
      if (res === null)
        throw new AppError('CACHE_MISS', 'No value is stored under this key (or it expired).');
      reply.header('etag', `"${res.etag}"`);
      return {
        key,
        ttl: res.ttl,
        ...(res.staleTtl !== undefined ? { staleTtl: res.staleTtl } : {}),
        etag: res.etag,
      };
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
        description:
          'Deletes the key: 204 whether or not it existed. With `If-Match: "<etag>"`, only if the stored value has that ETag (412 otherwise).',
        params: KeyParams,
        headers: z.looseObject({ 'if-match': ConditionalHeaders.shape['if-match'] }),
        response: {
          204: emptyResponse('Deleted (or was absent).'),
          ...problemResponses(400, 401, 403, 412),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const { key } = request.params;
      authorizeResource(principal, WRITE, key, 'path.key');
      const ifMatch = request.headers['if-match'];
      await service.delete(
        principal.tenant,
        key,
        ifMatch === undefined ? undefined : strongTag(ifMatch),
      );
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
    '/_mdelete',
    {
      config: { scope: WRITE, module: 'cache' },
      schema: {
        operationId: 'cacheMdelete',
        tags: TAGS,
        summary: 'Delete many keys',
        description:
          'Deletes up to CACHE_MAX_BATCH (at most 1000) keys atomically in one round trip; each leaves its tag sets, as one DELETE does. Items come back in request order, with deleted: false where there was no value.',
        body: MdeleteBody,
        response: {
          200: jsonResponse('One item per key, in order.', MdeleteResult),
          ...problemResponses(400, 401, 403, 413, 415),
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const list = request.body.keys;
      list.forEach((k, i) => authorizeResource(principal, WRITE, k, `body.keys[${i}]`));
      const gone = await service.mdelete(principal.tenant, list);
      return {
        deleted: gone.filter(Boolean).length,
        items: list.map((key, i) => ({ key, deleted: gone[i] === true })),
      };
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
          'Stores up to CACHE_MAX_BATCH (at most 1000) values atomically in one round trip (all or none). Each item may carry its own ttl, staleTtl and tags.',
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
      const res = await service.mset(
        principal.tenant,
        items.map((it) => ({ ...it, encoding: 'json' as const })),
      );
      return {
        items: res.map((r, i) => ({
          key: (items[i] as { key: string }).key,
          ttl: r.ttl,
          ...(r.staleTtl !== undefined ? { staleTtl: r.staleTtl } : {}),
          etag: r.etag,
        })),
      };
    },
  );

  app.post(
    '/_invalidate',
    {
      config: { scope: WRITE, module: 'cache' },
      schema: {
        operationId: 'cacheInvalidate',
        tags: TAGS,
        summary: 'Delete by tag, prefix or pattern',
        description:
          "Deletes every key carrying any of `tags`, starting with `prefix`, or matching the glob `pattern`, only inside the tenant's namespace. Works in short batches (never blocks Redis); stops after CACHE_INVALIDATE_MAX_KEYS keys or about a second and returns a `cursor`: call again with it (and the same tags/prefix/pattern) until it is null. Tags and patterns need `cache:write` without a resource glob; a prefix must lie under the key's glob.",
        body: InvalidateBody,
        response: {
          200: jsonResponse('Deleted; `cursor` non-null when more remain.', InvalidateResult),
          ...problemResponses(400, 401, 403, 415),
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const { tags, prefix, pattern, cursor } = request.body;
      if (prefix !== undefined) authorizePrefix(principal, WRITE, prefix, 'body.prefix');
      else
        authorizeAll(
          principal,
          WRITE,
          tags !== undefined ? 'Invalidation by tag' : 'Invalidation by pattern',
        );
      return service.invalidate(principal.tenant, { tags, prefix, pattern }, cursor);
    },
  );
};
