/**
 * API_KEYS_FILE: keys provisioned by the operator (GitOps, a Kubernetes Secret), e.g.
 *
 *   {"keys":[{"tenant":"acme","scopes":["cache:read"],"key":"cgk_<id>_<secret>"},
 *            {"tenant":"acme","scopes":["cache:write"],"id":"<id>","sha256":"<hex of the whole key>"}]}
 *
 * `key` (plaintext) is for development; production entries carry only `id` + `sha256`. The file is
 * authoritative for its keys: removing an entry revokes that key on the next reload.
 */
import { z } from 'zod';
import { TENANT_ID_PATTERN } from '../../redis/keys.js';
import { parseScope } from '../../http/scopes.js';
import { KEY_ID_PATTERN, hashKey, keyIdOf } from './api-key.js';

const scopes = z
  .array(z.string())
  .min(1)
  .superRefine((list, ctx) => {
    for (const s of list) {
      const parsed = parseScope(s);
      if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: parsed });
    }
  });

const entry = z
  .object({
    tenant: z.string().regex(TENANT_ID_PATTERN, 'must be a tenant id ([a-z0-9][a-z0-9_-]{0,62})'),
    scopes,
    name: z.string().max(200).optional(),
    key: z.string().optional(),
    id: z.string().regex(KEY_ID_PATTERN, 'must be 1..64 letters or digits').optional(),
    sha256: z
      .string()
      .regex(/^[0-9a-fA-F]{64}$/, 'must be 64 hex digits')
      .optional(),
    expiresAt: z.iso.datetime({ offset: true }).optional(),
  })
  .strict()
  .superRefine((e, ctx) => {
    if (e.key !== undefined) {
      if (e.sha256 !== undefined)
        ctx.addIssue({ code: 'custom', message: 'give either key or sha256, not both' });
      const id = keyIdOf(e.key);
      if (id === undefined)
        ctx.addIssue({ code: 'custom', path: ['key'], message: 'is not a cgk_<id>_<secret> key' });
      else if (e.id !== undefined && e.id !== id)
        ctx.addIssue({ code: 'custom', path: ['id'], message: 'does not match the id inside key' });
    } else if (e.sha256 === undefined || e.id === undefined) {
      ctx.addIssue({ code: 'custom', message: 'needs either key, or id and sha256' });
    }
  });

const fileSchema = z.object({ keys: z.array(entry) }).strict();

export interface FileKey {
  readonly id: string;
  readonly tenant: string;
  readonly name: string;
  readonly scopes: readonly string[];
  /** SHA-256 hex (lowercase) of the whole key. */
  readonly digest: string;
  readonly expiresAtMs: number | undefined;
}

/** Parses the file's text. Throws an Error naming every bad entry (never echoing a secret). */
export function parseKeysFile(text: string, source: string): Map<string, FileKey> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${source}: not valid JSON (${(e as Error).message})`);
  }
  const parsed = fileSchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.map(
      (i) => `${i.path.join('.') || '(file)'}: ${i.message}`,
    );
    throw new Error(`${source}: invalid keys file:\n  - ${problems.join('\n  - ')}`);
  }
  const out = new Map<string, FileKey>();
  parsed.data.keys.forEach((e, index) => {
    const id = e.key !== undefined ? (keyIdOf(e.key) as string) : (e.id as string);
    if (out.has(id)) throw new Error(`${source}: keys.${index}: duplicate key id "${id}"`);
    out.set(id, {
      id,
      tenant: e.tenant,
      name: e.name ?? `file:${id}`,
      scopes: e.scopes,
      digest: e.key !== undefined ? hashKey(e.key) : (e.sha256 as string).toLowerCase(),
      expiresAtMs: e.expiresAt === undefined ? undefined : Date.parse(e.expiresAt),
    });
  });
  return out;
}
