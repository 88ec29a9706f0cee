/**
 * HTTP surface of tenants and API keys under /v1/admin. The operator (ADMIN_TOKEN) manages every
 * tenant (and alone creates, lists and deletes them); an API key with the `admin` scope manages
 * its own tenant's keys, and other tenants are invisible to it (404, as if absent).
 */
import type { FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { AppError } from '../../errors.js';
import { principalOf } from '../../http/auth.js';
import { emptyResponse, jsonResponse, problemResponses } from '../../http/openapi.js';
import {
  ApiKeyList,
  CreateKeyBody,
  CreateTenantBody,
  ApiKeyInfo,
  CreatedApiKey,
  DeleteTenantQuery,
  KeyParams,
  Tenant,
  TenantDeletion,
  TenantList,
  TenantParams,
  UpdateKeyBody,
} from './schemas.js';
import type { AdminService } from './service.js';

export interface AdminRoutesOptions {
  service: AdminService;
}

const TAGS = ['admin'];
const config = { auth: 'admin', module: 'admin' } as const;

function requireOperator(request: FastifyRequest): void {
  if (principalOf(request).kind !== 'operator') {
    throw new AppError('SCOPE_MISSING', 'Only the operator (ADMIN_TOKEN) may manage tenants.');
  }
}

/** A tenant admin acting on another tenant gets the answer for a tenant that does not exist. */
function requireTenantAccess(request: FastifyRequest, tenant: string): void {
  const p = principalOf(request);
  if (p.kind !== 'operator' && p.tenant !== tenant)
    throw new AppError('TENANT_NOT_FOUND', `No tenant "${tenant}".`);
}

export const adminRoutes: FastifyPluginAsyncZod<AdminRoutesOptions> = async (app, { service }) => {
  app.post(
    '/tenants',
    {
      config,
      schema: {
        operationId: 'adminCreateTenant',
        tags: TAGS,
        summary: 'Create a tenant (operator only)',
        body: CreateTenantBody,
        response: {
          201: jsonResponse('Created.', Tenant),
          ...problemResponses(400, 401, 403, 409, 415),
        },
      },
    },
    async (request, reply) => {
      requireOperator(request);
      const tenant = await service.createTenant(request.body.id, request.body.name);
      return reply.code(201).send(tenant);
    },
  );

  app.get(
    '/tenants',
    {
      config,
      schema: {
        operationId: 'adminListTenants',
        tags: TAGS,
        summary: 'List tenants (operator only)',
        response: { 200: jsonResponse('Every tenant.', TenantList), ...problemResponses(401, 403) },
      },
    },
    async (request) => {
      requireOperator(request);
      return { tenants: await service.listTenants() };
    },
  );

  app.get(
    '/tenants/:tenant',
    {
      config,
      schema: {
        operationId: 'adminGetTenant',
        tags: TAGS,
        summary: 'Read a tenant',
        params: TenantParams,
        response: {
          200: jsonResponse('The tenant.', Tenant),
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request) => {
      requireTenantAccess(request, request.params.tenant);
      return service.getTenant(request.params.tenant);
    },
  );

  app.delete(
    '/tenants/:tenant',
    {
      config,
      schema: {
        operationId: 'adminDeleteTenant',
        tags: TAGS,
        summary: 'Delete a tenant and erase its data (operator only)',
        description:
          "At once: the tenant's API keys stop working on every replica and its rate-limit policies go. Then its data (cache, sessions, rate-limit state, idempotency records, queues) is erased, for up to a second per call: 202 `deleting` with a `cursor` means call again with it; 200 `deleted` means a whole pass found nothing of the tenant left on a master the sentinels confirm, and its id may be created again (until then, 409 TENANT_DELETING). 503 (replicas did not confirm an erasure, too few sentinels answered): call again with the same cursor. Calling again without the cursor starts the erasure over. 409 TENANT_MANAGED_BY_FILE while API_KEYS_FILE has keys for it.",
        params: TenantParams,
        querystring: DeleteTenantQuery,
        response: {
          200: jsonResponse('Deleted: nothing of the tenant is left.', TenantDeletion),
          202: jsonResponse('Keys and policies gone; data still being erased.', TenantDeletion),
          ...problemResponses(400, 401, 403, 404, 409),
        },
      },
    },
    async (request, reply) => {
      requireOperator(request);
      const result = await service.deleteTenant(
        request.params.tenant,
        request.query.cursor,
        request.query.limit ?? 100_000,
      );
      request.log.info(result, 'tenant deletion');
      return reply.code(result.state === 'deleted' ? 200 : 202).send(result);
    },
  );

  app.post(
    '/tenants/:tenant/keys',
    {
      config,
      schema: {
        operationId: 'adminCreateApiKey',
        tags: TAGS,
        summary: 'Issue an API key',
        description:
          'Issues a key with the given scopes. The response carries the full key once; only its SHA-256 is stored.',
        params: TenantParams,
        body: CreateKeyBody,
        response: {
          201: jsonResponse('Issued.', CreatedApiKey),
          ...problemResponses(400, 401, 403, 404, 415),
        },
      },
    },
    async (request, reply) => {
      requireTenantAccess(request, request.params.tenant);
      const { info, key } = await service.createKey(request.params.tenant, request.body);
      return reply.code(201).header('cache-control', 'no-store').send({ key, apiKey: info });
    },
  );

  app.get(
    '/tenants/:tenant/keys',
    {
      config,
      schema: {
        operationId: 'adminListApiKeys',
        tags: TAGS,
        summary: "List a tenant's API keys",
        description:
          'Lists keys issued through the API and those from API_KEYS_FILE. Never returns secrets or digests.',
        params: TenantParams,
        response: {
          200: jsonResponse("The tenant's keys.", ApiKeyList),
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request) => {
      requireTenantAccess(request, request.params.tenant);
      return { keys: await service.listKeys(request.params.tenant) };
    },
  );

  app.patch(
    '/tenants/:tenant/keys/:keyId',
    {
      config,
      schema: {
        operationId: 'adminUpdateApiKey',
        tags: TAGS,
        summary: "Change an API key's name, scopes or expiry",
        description:
          'Fields left out are unchanged; `scopes` replaces the list; `expiresAt: null` removes the expiry. Every gateway replica applies the change at once (as for a revocation); the secret stays the same. 409 for a revoked key, or one from API_KEYS_FILE.',
        params: KeyParams,
        body: UpdateKeyBody,
        response: {
          200: jsonResponse('The key as it is now.', ApiKeyInfo),
          ...problemResponses(400, 401, 403, 404, 409, 415),
        },
      },
    },
    async (request) => {
      requireTenantAccess(request, request.params.tenant);
      const info = await service.updateKey(
        request.params.tenant,
        request.params.keyId,
        request.body,
      );
      request.log.info(
        { tenant: info.tenant, apiKey: info.id, changed: Object.keys(request.body) },
        'api key changed',
      );
      return info;
    },
  );

  app.delete(
    '/tenants/:tenant/keys/:keyId',
    {
      config,
      schema: {
        operationId: 'adminRevokeApiKey',
        tags: TAGS,
        summary: 'Revoke an API key',
        description:
          'Revokes the key on every gateway replica at once. Revoking twice is not an error. Keys from API_KEYS_FILE answer 409: remove them from the file.',
        params: KeyParams,
        response: { 204: emptyResponse('Revoked.'), ...problemResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      requireTenantAccess(request, request.params.tenant);
      await service.revokeKey(request.params.tenant, request.params.keyId);
      return reply.code(204).send();
    },
  );
};
