/** Request and response schemas of the admin routes (tenants and API keys). */
import { z } from 'zod';
import { queryInteger } from '../../http/query.js';
import { parseScope } from '../../http/scopes.js';
import { TENANT_ID_PATTERN } from '../../redis/keys.js';
import { KEY_ID_PATTERN } from './api-key.js';

export const TenantId = z
  .string()
  .regex(
    TENANT_ID_PATTERN,
    'must be 1..63 of a-z, 0-9, "-" and "_", starting with a letter or digit',
  )
  .describe('Tenant id: ^[a-z0-9][a-z0-9_-]{0,62}$');

export const ScopeString = z
  .string()
  .max(1100)
  .superRefine((s, ctx) => {
    const parsed = parseScope(s);
    if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: parsed });
  })
  .describe(
    'A scope: <capability>:<action>[:<resource-glob>] (e.g. cache:read, cache:write:ef:*, queue:consume:calc-*) or admin.',
  );

export const TenantParams = z.object({ tenant: TenantId });
export const KeyParams = z.object({
  tenant: TenantId,
  keyId: z.string().regex(KEY_ID_PATTERN, 'must be 1..64 letters or digits'),
});

export const CreateTenantBody = z
  .object({ id: TenantId, name: z.string().min(1).max(200).optional() })
  .strict()
  .meta({ id: 'CreateTenantRequest', examples: [{ id: 'acme', name: 'ACME Corp.' }] });

export const Tenant = z
  .object({
    id: z.string(),
    name: z.string(),
    createdAt: z.string().describe('ISO 8601; empty for tenants known only from API_KEYS_FILE.'),
    source: z.enum(['api', 'file']),
    deletingAt: z
      .string()
      .optional()
      .describe(
        'ISO 8601; present while a deletion has not finished erasing the data (call DELETE again).',
      ),
  })
  .meta({
    id: 'Tenant',
    examples: [
      { id: 'acme', name: 'ACME Corp.', createdAt: '2026-11-21T10:00:00.000Z', source: 'api' },
    ],
  });

export const TenantList = z.object({ tenants: z.array(Tenant) }).meta({
  id: 'TenantList',
  examples: [
    {
      tenants: [
        { id: 'acme', name: 'ACME Corp.', createdAt: '2026-11-21T10:00:00.000Z', source: 'api' },
      ],
    },
  ],
});

export const CreateKeyBody = z
  .object({
    name: z.string().min(1).max(200).optional(),
    scopes: z.array(ScopeString).min(1).max(100),
    expiresAt: z.iso
      .datetime({ offset: true })
      .optional()
      .describe('When the key stops working (ISO 8601).'),
  })
  .strict()
  .meta({
    id: 'CreateApiKeyRequest',
    examples: [
      {
        name: 'pricing-service',
        scopes: ['cache:read', 'cache:write:ef:*'],
        expiresAt: '2027-11-21T00:00:00Z',
      },
    ],
  });

export const UpdateKeyBody = z
  .object({
    name: z.string().min(1).max(200).optional(),
    scopes: z
      .array(ScopeString)
      .min(1)
      .max(100)
      .optional()
      .describe('The new scopes, replacing the old ones.'),
    expiresAt: z.iso
      .datetime({ offset: true })
      .nullable()
      .optional()
      .describe('When the key stops working (ISO 8601); null: never.'),
  })
  .strict()
  .refine((b) => Object.keys(b).length > 0, {
    message: 'give at least one of name, scopes, expiresAt',
  })
  .meta({
    id: 'UpdateApiKeyRequest',
    examples: [{ scopes: ['cache:read'], expiresAt: null }],
  });

const keyExample = {
  id: 'k3v9q2m8x1c4z7b5',
  tenant: 'acme',
  name: 'pricing-service',
  scopes: ['cache:read', 'cache:write:ef:*'],
  createdAt: '2026-11-21T10:00:00.000Z',
  expiresAt: null,
  revokedAt: null,
  source: 'api',
};

export const ApiKeyInfo = z
  .object({
    id: z.string(),
    tenant: z.string(),
    name: z.string(),
    scopes: z.array(z.string()),
    createdAt: z.string().nullable(),
    expiresAt: z.string().nullable(),
    revokedAt: z.string().nullable(),
    source: z.enum(['api', 'file']),
  })
  .meta({
    id: 'ApiKey',
    description: 'An API key, without its secret or digest.',
    examples: [keyExample],
  });

export const CreatedApiKey = z
  .object({
    key: z.string().describe('The full key. Shown only in this response: store it now.'),
    apiKey: ApiKeyInfo,
  })
  .meta({
    id: 'CreatedApiKey',
    examples: [
      {
        key: 'cgk_k3v9q2m8x1c4z7b5_2b7YbN0k3vQm8zXc1R4t6W9yA0dF3hJ5kL7nP9sU1wE',
        apiKey: keyExample,
      },
    ],
  });

export const ApiKeyList = z
  .object({ keys: z.array(ApiKeyInfo) })
  .meta({ id: 'ApiKeyList', examples: [{ keys: [keyExample] }] });

export const DeleteTenantQuery = z.strictObject({
  cursor: z
    .string()
    .max(40)
    .optional()
    .describe('The cursor of the previous call while the state was `deleting`.'),
  limit: queryInteger(1, 1_000_000)
    .optional()
    .describe(
      'About how many Redis keys one call may erase (default 100000; it also stops after a second).',
    ),
});

export const TenantDeletion = z
  .object({
    tenant: z.string(),
    state: z
      .enum(['deleting', 'deleted'])
      .describe('`deleting`: call again with `cursor`; `deleted`: nothing of the tenant is left.'),
    apiKeysDeleted: z.number().int().describe('API keys deleted by this call.'),
    erased: z.number().int().describe('Redis keys of the tenant erased by this call.'),
    cursor: z.string().nullable().describe('Pass it to the next call; null once deleted.'),
  })
  .meta({
    id: 'TenantDeletion',
    examples: [
      {
        tenant: 'acme',
        state: 'deleting',
        apiKeysDeleted: 3,
        erased: 41250,
        cursor: '73728.1.5f1d3c2a9b7e',
      },
      { tenant: 'acme', state: 'deleted', apiKeysDeleted: 0, erased: 812, cursor: null },
    ],
  });
