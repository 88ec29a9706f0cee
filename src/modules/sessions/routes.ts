/**
 * HTTP surface of sessions: /v1/sessions (create), /v1/sessions/{id} (read, merge, delete,
 * _touch, _rotate) and /v1/users/{userId}/sessions (list, revoke all). A session read answers with
 * the stored JSON of each data field spliced into the body, never re-encoded.
 *
 * Scopes: `session:read`, `session:write`. A resource glob (`session:read:tenant-a-*`) applies to
 * user ids. On a route addressed by session id, a key confined by a glob first reads the session's
 * user (one HGET; a key without a glob skips it) and gets the same 404 as for an unknown id when
 * the user is outside its globs, so nothing is read, written or revealed.
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { type Principal, authorizeOwner, authorizeResource, principalOf } from '../../http/auth.js';
import { emptyResponse, jsonResponse, problemResponses } from '../../http/openapi.js';
import {
  CreateBody,
  GetQuery,
  IdParams,
  ListQuery,
  PatchBody,
  RevokeQuery,
  RevokeResult,
  Session,
  SessionCreated,
  SessionList,
  SessionTimesResult,
  UserParams,
} from './schemas.js';
import type { SessionRecord, SessionService } from './service.js';
import { isoTime as iso } from '../../clock.js';

export interface SessionRoutesOptions {
  service: SessionService;
}

const READ = 'session:read';
const WRITE = 'session:write';
const TAGS = ['sessions'];
const JSON_TYPE = 'application/json; charset=utf-8';

function timesJson(s: SessionRecord): string {
  return (
    `"createdAt":"${iso(s.createdAt)}","lastActivityAt":"${iso(s.lastActivityAt)}",` +
    `"expiresAt":"${iso(s.expiresAt)}","absoluteExpiresAt":"${iso(s.absoluteExpiresAt)}"` +
    (s.rotatedAt === undefined ? '' : `,"rotatedAt":"${iso(s.rotatedAt)}"`)
  );
}

/** The whole session: stored JSON spliced in as is. */
function renderSession(s: SessionRecord): string {
  return (
    `{"sessionId":"${s.sessionId}","userId":${JSON.stringify(s.userId)},` +
    `"data":${s.dataJson},"metadata":${s.metadataJson},${timesJson(s)}}`
  );
}

function renderTimes(s: SessionRecord): string {
  return `{"sessionId":"${s.sessionId}","userId":${JSON.stringify(s.userId)},${timesJson(s)}}`;
}

export const sessionRoutes: FastifyPluginAsyncZod<SessionRoutesOptions> = async (
  app,
  { service },
) => {
  /** A route by session id: the key's globs must cover the session's user (see the header). */
  const authorizeById = (principal: Principal, scope: string, id: string) =>
    authorizeOwner(
      principal,
      scope,
      () => service.ownerOf(principal.tenant, id),
      () => service.notFound(),
    );

  app.post(
    '/v1/sessions',
    {
      config: { scope: WRITE, module: 'sessions' },
      schema: {
        operationId: 'sessionCreate',
        tags: TAGS,
        summary: 'Create a session',
        description:
          "Creates a session with a server-generated id (256 random bits). When the user already has SESSION_MAX_PER_USER live sessions, the least recently active ones are revoked to make room. With `durable: true` the answer waits for a replica's confirmation.",
        body: CreateBody,
        response: {
          201: jsonResponse('Created.', SessionCreated),
          ...problemResponses(400, 401, 403, 413),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      authorizeResource(principal, WRITE, request.body.userId, 'body.userId');
      const s = await service.create(principal.tenant, request.body);
      reply.code(201);
      return {
        sessionId: s.sessionId,
        userId: s.userId,
        createdAt: iso(s.createdAt),
        expiresAt: iso(s.expiresAt),
        absoluteExpiresAt: iso(s.absoluteExpiresAt),
      };
    },
  );

  app.get(
    '/v1/sessions/:id',
    {
      config: { scope: READ, module: 'sessions' },
      schema: {
        operationId: 'sessionGet',
        tags: TAGS,
        summary: 'Read a session',
        description:
          'The session with its data. `?touch=true` also slides the idle expiry in the same Redis round trip (where the deployment throttles touches, SESSION_TOUCH_AFTER_SECONDS, a touch soon after the last recorded activity writes nothing and `lastActivityAt` stays as it was). Unknown and expired ids get the same 404.',
        params: IdParams,
        querystring: GetQuery,
        response: {
          200: jsonResponse('The session.', Session),
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      await authorizeById(
        principal,
        request.query.touch === true ? WRITE : READ,
        request.params.id,
      );
      const s = await service.get(
        principal.tenant,
        request.params.id,
        request.query.touch === true,
      );
      return reply.type(JSON_TYPE).send(renderSession(s));
    },
  );

  app.patch(
    '/v1/sessions/:id',
    {
      config: { scope: WRITE, module: 'sessions' },
      schema: {
        operationId: 'sessionUpdate',
        tags: TAGS,
        summary: 'Merge data into a session',
        description:
          'Merges top-level fields atomically: a named field is replaced, `null` deletes it, others are kept. The size limit applies to the merged result. Does not slide the expiry unless `touch` is true.',
        params: IdParams,
        body: PatchBody,
        response: {
          200: jsonResponse('The session after the merge.', Session),
          ...problemResponses(400, 401, 403, 404, 413),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      await authorizeById(principal, WRITE, request.params.id);
      const s = await service.update(
        principal.tenant,
        request.params.id,
        request.body.data,
        request.body.touch === true,
      );
      return reply.type(JSON_TYPE).send(renderSession(s));
    },
  );

  app.post(
    '/v1/sessions/:id/_touch',
    {
      config: { scope: WRITE, module: 'sessions' },
      schema: {
        operationId: 'sessionTouch',
        tags: TAGS,
        summary: 'Slide the idle expiry',
        description:
          "Moves the expiry to now + the session's idle ttl, never past its absolute lifetime (subject to the deployment's touch throttling, SESSION_TOUCH_AFTER_SECONDS, as for `?touch=true`).",
        params: IdParams,
        response: {
          200: jsonResponse('The new expiry.', SessionTimesResult),
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      await authorizeById(principal, WRITE, request.params.id);
      const s = await service.touch(principal.tenant, request.params.id);
      return reply.type(JSON_TYPE).send(renderTimes(s));
    },
  );

  app.post(
    '/v1/sessions/:id/_rotate',
    {
      config: { scope: WRITE, module: 'sessions' },
      schema: {
        operationId: 'sessionRotate',
        tags: TAGS,
        summary: 'Rotate the session id',
        description:
          'Gives the session a new id (same data, same expiry) and invalidates the old id in the same step: call it at login or privilege change (session fixation defence).',
        params: IdParams,
        response: {
          200: jsonResponse('The session under its new id.', Session),
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      await authorizeById(principal, WRITE, request.params.id);
      const s = await service.rotate(principal.tenant, request.params.id);
      return reply.type(JSON_TYPE).send(renderSession(s));
    },
  );

  app.delete(
    '/v1/sessions/:id',
    {
      config: { scope: WRITE, module: 'sessions' },
      schema: {
        operationId: 'sessionDelete',
        tags: TAGS,
        summary: 'Delete a session',
        params: IdParams,
        response: {
          204: emptyResponse('Deleted.'),
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      await authorizeById(principal, WRITE, request.params.id);
      await service.delete(principal.tenant, request.params.id);
      return reply.code(204).send();
    },
  );

  app.get(
    '/v1/users/:userId/sessions',
    {
      config: { scope: READ, module: 'sessions' },
      schema: {
        operationId: 'userSessionsList',
        tags: TAGS,
        summary: "List a user's sessions",
        description:
          "The user's live sessions, most recently active first, without their data. Expired entries are pruned from the index as it is read.",
        params: UserParams,
        querystring: ListQuery,
        response: {
          200: jsonResponse('A page of sessions.', SessionList),
          ...problemResponses(400, 401, 403),
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      authorizeResource(principal, READ, request.params.userId, 'path.userId');
      const page = await service.listForUser(
        principal.tenant,
        request.params.userId,
        request.query.cursor ?? 0,
        request.query.limit ?? 50,
      );
      return {
        sessions: page.sessions.map((s) => ({
          sessionId: s.sessionId,
          createdAt: iso(s.createdAt),
          lastActivityAt: iso(s.lastActivityAt),
          expiresAt: iso(s.expiresAt),
          metadata: s.metadata,
        })),
        total: page.total,
        cursor: page.cursor,
      };
    },
  );

  app.delete(
    '/v1/users/:userId/sessions',
    {
      config: { scope: WRITE, module: 'sessions' },
      schema: {
        operationId: 'userSessionsRevoke',
        tags: TAGS,
        summary: "Revoke a user's sessions",
        description:
          'Deletes every live session of the user, or all but `except` ("log out everywhere else"). Returns how many were deleted.',
        params: UserParams,
        querystring: RevokeQuery,
        response: {
          200: jsonResponse('Sessions deleted.', RevokeResult),
          ...problemResponses(400, 401, 403),
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      authorizeResource(principal, WRITE, request.params.userId, 'path.userId');
      const revoked = await service.revokeForUser(
        principal.tenant,
        request.params.userId,
        request.query.except,
      );
      return { revoked };
    },
  );
};
