/**
 * HTTP surface of idempotency keys: /v1/idempotency/{key}/_begin, PUT (complete) and DELETE
 * (release). A replayed response is the stored JSON spliced into the body, never re-encoded.
 * Scope `idempotency:use`; a resource glob applies to the key.
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { authorizeResource, principalOf } from '../../http/auth.js';
import { emptyResponse, jsonResponse, problemResponses } from '../../http/openapi.js';
import {
  BeginBody,
  CompleteBody,
  CompleteResult,
  Completed,
  KeyParams,
  ReleaseQuery,
  Started,
} from './schemas.js';
import type { IdempotencyService } from './service.js';
import { isoTime } from '../../clock.js';

export interface IdempotencyRoutesOptions {
  service: IdempotencyService;
}

const USE = 'idempotency:use';
const TAGS = ['idempotency'];
const JSON_TYPE = 'application/json; charset=utf-8';

export const idempotencyRoutes: FastifyPluginAsyncZod<IdempotencyRoutesOptions> = async (
  app,
  { service },
) => {
  app.post(
    '/:key/_begin',
    {
      config: { scope: USE, module: 'idempotency' },
      schema: {
        operationId: 'idempotencyBegin',
        tags: TAGS,
        summary: 'Begin a request under an idempotency key',
        description:
          'The first caller gets 201 and a token: it holds the key until it completes or releases it, or until `lockTtl` passes (then another caller may take over). A caller while the key is held gets 409 with Retry-After; after completion, 200 with the stored response to replay; with a different fingerprint, 422.',
        params: KeyParams,
        body: BeginBody,
        response: {
          201: jsonResponse('You hold the key: do the work, then complete or release it.', Started),
          200: jsonResponse('Completed earlier: replay this response.', Completed),
          ...problemResponses(400, 401, 403, 409, 422),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      authorizeResource(principal, USE, request.params.key, 'path.key');
      const res = await service.begin(principal, request.params.key, request.body);
      if (res.state === 'completed') {
        return reply.type(JSON_TYPE).send(`{"state":"completed","response":${res.responseJson}}`);
      }
      // Rendered here (the token is base64url, the time ISO): the hot path skips the response
      // schema's validating serializer, as the other hot answers do.
      return reply
        .code(201)
        .type(JSON_TYPE)
        .send(
          `{"state":"started","token":"${res.token}","lockExpiresAt":"${isoTime(res.lockExpiresAt)}"}`,
        );
    },
  );

  app.put(
    '/:key',
    {
      config: { scope: USE, module: 'idempotency' },
      schema: {
        operationId: 'idempotencyComplete',
        tags: TAGS,
        summary: 'Complete an idempotency key with its response',
        description:
          'Stores the response every later `_begin` with this key replays. Write-once: a second PUT with the same token is accepted and changes nothing; any other token gets 409.',
        params: KeyParams,
        body: CompleteBody,
        response: {
          200: jsonResponse('Stored.', CompleteResult),
          ...problemResponses(400, 401, 403, 404, 409, 413),
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      authorizeResource(principal, USE, request.params.key, 'path.key');
      await service.complete(
        principal,
        request.params.key,
        request.body.token,
        request.body.response,
        request.body.durable === true,
      );
      return { state: 'completed' as const };
    },
  );

  app.delete(
    '/:key',
    {
      config: { scope: USE, module: 'idempotency' },
      schema: {
        operationId: 'idempotencyRelease',
        tags: TAGS,
        summary: 'Release an idempotency key after a failure',
        description:
          'Drops the unfinished key so that a retry can begin again. A completed key cannot be released (409).',
        params: KeyParams,
        querystring: ReleaseQuery,
        response: {
          204: emptyResponse('Released.'),
          ...problemResponses(400, 401, 403, 404, 409),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      authorizeResource(principal, USE, request.params.key, 'path.key');
      await service.release(principal, request.params.key, request.query.token);
      return reply.code(204).send();
    },
  );
};
