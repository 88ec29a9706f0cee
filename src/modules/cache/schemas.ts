/**
 * Request and response schemas of the cache routes: the source of validation, of the handler
 * types and of the OpenAPI document.
 */
import { z } from 'zod';
import { MAX_KEY_BYTES, checkUserKey } from '../../redis/keys.js';

/** Hard upper bound on batch sizes; CACHE_MAX_BATCH may lower it. */
export const MAX_BATCH = 1000;

export const CacheKey = z
  .string()
  .min(1)
  .max(MAX_KEY_BYTES)
  .superRefine((k, ctx) => {
    const problem = checkUserKey(k);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
  })
  .describe(
    `A cache key: 1..${MAX_KEY_BYTES} bytes of UTF-8 without control characters. Any other character is allowed (':', '*', '{', spaces, '/' percent-encoded in paths); keys are private to the caller's tenant.`,
  );

const Ttl = z
  .number()
  .int()
  .min(1)
  .describe(
    'Time to live in seconds (1..CACHE_MAX_TTL_SECONDS, default CACHE_DEFAULT_TTL_SECONDS).',
  );

const RemainingTtl = z
  .number()
  .int()
  .nullable()
  .describe('Seconds until the entry expires; null when it never does.');

const Etag = z.string().describe('Entity tag of the stored value (same value, same tag).');

const AnyJson = z
  .unknown()
  .refine((v) => v !== undefined, { message: 'is required' })
  .describe('Any JSON value: object, array, string, number, boolean or null.');

export const KeyParams = z.object({ key: CacheKey });

export const PutBody = z
  .object({ value: AnyJson, ttl: Ttl.optional() })
  .strict()
  .meta({
    id: 'CachePutRequest',
    examples: [{ value: { price: 42.5, currency: 'EUR' }, ttl: 300 }],
  });

export const PutResult = z.object({ key: z.string(), ttl: RemainingTtl, etag: Etag }).meta({
  id: 'CachePutResult',
  examples: [{ key: 'ef:price:42', ttl: 300, etag: 'u3pQ1r4tWqk9b8Zs0aXyQw' }],
});

export const Entry = z
  .object({ key: z.string(), value: z.unknown(), ttl: RemainingTtl, etag: Etag })
  .meta({
    id: 'CacheEntry',
    examples: [
      {
        key: 'ef:price:42',
        value: { price: 42.5, currency: 'EUR' },
        ttl: 287,
        etag: 'u3pQ1r4tWqk9b8Zs0aXyQw',
      },
    ],
  });

export const MgetBody = z
  .object({ keys: z.array(CacheKey).min(1).max(MAX_BATCH) })
  .strict()
  .meta({ id: 'CacheMgetRequest', examples: [{ keys: ['ef:price:42', 'ef:price:43'] }] });

export const MgetResult = z
  .object({
    items: z.array(
      z.object({
        key: z.string(),
        found: z.boolean(),
        value: z.unknown().optional(),
        ttl: RemainingTtl.optional(),
        etag: Etag.optional(),
      }),
    ),
  })
  .meta({
    id: 'CacheMgetResult',
    description: 'One item per requested key, in request order.',
    examples: [
      {
        items: [
          {
            key: 'ef:price:42',
            found: true,
            value: { price: 42.5, currency: 'EUR' },
            ttl: 287,
            etag: 'u3pQ1r4tWqk9b8Zs0aXyQw',
          },
          { key: 'ef:price:43', found: false },
        ],
      },
    ],
  });

export const MsetBody = z
  .object({
    items: z
      .array(z.object({ key: CacheKey, value: AnyJson, ttl: Ttl.optional() }).strict())
      .min(1)
      .max(MAX_BATCH),
  })
  .strict()
  .meta({
    id: 'CacheMsetRequest',
    examples: [
      {
        items: [
          { key: 'ef:price:42', value: { price: 42.5 }, ttl: 300 },
          { key: 'ef:price:43', value: 17 },
        ],
      },
    ],
  });

export const MsetResult = z.object({ items: z.array(PutResult) }).meta({
  id: 'CacheMsetResult',
  examples: [{ items: [{ key: 'ef:price:42', ttl: 300, etag: 'u3pQ1r4tWqk9b8Zs0aXyQw' }] }],
});

export type PutBody = z.infer<typeof PutBody>;
export type MsetBody = z.infer<typeof MsetBody>;
