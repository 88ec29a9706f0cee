/**
 * Request and response schemas of the cache routes: the source of validation, of the handler
 * types and of the OpenAPI document.
 */
import { z } from 'zod';
import { queryInteger } from '../../http/query.js';
import { MAX_KEY_BYTES, checkUserKey } from '../../redis/keys.js';

/** Hard upper bound on batch sizes; CACHE_MAX_BATCH may lower it. */
export const MAX_BATCH = 1000;
export const MAX_TAGS = 32;
/** Longest lease and wait a request may ask for (config may lower them). */
export const MAX_LEASE_MS = 3_600_000;
export const MAX_WAIT_MS = 30_000;

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

export const Tag = z
  .string()
  .regex(/^[A-Za-z0-9:._/@#=+-]{1,128}$/, 'must be 1..128 of A-Z a-z 0-9 : . _ / @ # = + -')
  .describe('A tag, e.g. org:42: 1..128 characters of A-Z a-z 0-9 : . _ / @ # = + -');

const Tags = z
  .array(Tag)
  .max(MAX_TAGS)
  .describe(`Up to ${MAX_TAGS} tags; _invalidate by tag deletes every key carrying one.`);

const Ttl = z
  .number()
  .int()
  .min(1)
  .nullable()
  .describe(
    'Seconds the value is fresh (1..CACHE_MAX_TTL_SECONDS, default CACHE_DEFAULT_TTL_SECONDS); null never expires, accepted only when CACHE_ALLOW_PERSIST is on.',
  );

const StaleTtl = z
  .number()
  .int()
  .min(1)
  .describe(
    'Stale-while-revalidate: seconds after `ttl` during which the value is still served, marked stale, while one reader refreshes it.',
  );

const RemainingTtl = z
  .number()
  .int()
  .nullable()
  .describe('Seconds the value stays fresh (0 once stale); null when it never goes stale.');
const RemainingStale = z
  .number()
  .int()
  .describe(
    'Present when a stale window was set: seconds the value will still be served after `ttl` runs out.',
  );
const Etag = z.string().describe('Entity tag of the stored value (same value, same tag).');

const AnyJson = z
  .unknown()
  .refine((v) => v !== undefined, { message: 'is required' })
  .describe('Any JSON value: object, array, string, number, boolean or null.');

export const KeyParams = z.object({ key: CacheKey });

/** Query-string integers arrive as text. */
export const GetQuery = z.strictObject({
  lease: queryInteger(1, MAX_LEASE_MS)
    .optional()
    .describe(
      "Stampede protection: on a miss, take the key's lease for this many ms (≤ CACHE_MAX_LEASE_MS); exactly one caller gets it (X-Cache-Lease).",
    ),
  wait: queryInteger(0, MAX_WAIT_MS)
    .optional()
    .describe(
      'With lease: when another caller holds the lease, wait up to this many ms (≤ CACHE_MAX_WAIT_MS) for the value instead of answering 404 at once.',
    ),
});

export const ConditionalHeaders = z.looseObject({
  'if-match': z
    .string()
    .optional()
    .describe(
      'Compare-and-set: the write happens only if the stored ETag is this one (412 otherwise).',
    ),
  'if-none-match': z
    .string()
    .optional()
    .describe(
      'On PUT, `*`: create only (412 if a value exists). On GET, ETags: 304 when one matches.',
    ),
  'x-cache-lease': z
    .string()
    .max(64)
    .optional()
    .describe('The lease token from a leased miss or a stale read; the write releases the lease.'),
});

export const PutBody = z
  .object({
    value: AnyJson,
    ttl: Ttl.optional(),
    staleTtl: StaleTtl.optional(),
    tags: Tags.optional(),
  })
  .strict()
  .meta({
    id: 'CachePutRequest',
    examples: [
      {
        value: { price: 42.5, currency: 'EUR' },
        ttl: 300,
        staleTtl: 60,
        tags: ['org:42', 'prices'],
      },
    ],
  });

/** Query parameters carrying ttl/staleTtl/tags for binary (octet-stream) bodies. */
export const PutQuery = z.strictObject({
  ttl: z
    .string()
    .regex(/^(\d{1,10}|null)$/, 'must be a whole number of seconds or null')
    .transform((s) => (s === 'null' ? null : Number(s)))
    .pipe(z.number().int().min(1).nullable())
    .optional()
    .describe('Binary bodies only: like body.ttl (`null` never expires).'),
  staleTtl: queryInteger(1, Number.MAX_SAFE_INTEGER)
    .optional()
    .describe('Binary bodies only: like body.staleTtl.'),
  tags: z
    .string()
    .optional()
    .transform((s, ctx) => {
      if (s === undefined || s === '') return undefined;
      const list = s.split(',');
      for (const t of list) {
        const r = Tag.safeParse(t);
        if (!r.success)
          ctx.addIssue({
            code: 'custom',
            message: `"${t}" ${r.error.issues[0]?.message ?? 'is not a tag'}`,
          });
      }
      if (list.length > MAX_TAGS)
        ctx.addIssue({ code: 'custom', message: `at most ${MAX_TAGS} tags` });
      return list;
    })
    .describe('Binary bodies only: comma-separated tags.'),
});

export const PutResult = z
  .object({
    key: z.string(),
    ttl: RemainingTtl,
    staleTtl: RemainingStale.optional(),
    etag: Etag,
    leaseReleased: z
      .boolean()
      .optional()
      .describe(
        "Present when X-Cache-Lease was sent: whether it was the key's lease (now released).",
      ),
  })
  .meta({
    id: 'CachePutResult',
    examples: [{ key: 'ef:price:42', ttl: 300, staleTtl: 60, etag: 'u3pQ1r4tWqk9b8Zs0aXyQw' }],
  });

export const Entry = z
  .object({
    key: z.string(),
    value: z.unknown().describe('The value; for a binary value, its bytes in base64.'),
    encoding: z
      .enum(['base64'])
      .optional()
      .describe('Present for binary values: `value` is base64.'),
    ttl: RemainingTtl,
    staleTtl: RemainingStale.optional(),
    stale: z
      .boolean()
      .optional()
      .describe('Present (true) when the value is past its ttl and served stale.'),
    etag: Etag,
  })
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

export const PatchBody = z
  .object({ ttl: Ttl, staleTtl: StaleTtl.optional() })
  .strict()
  .meta({ id: 'CacheTouchRequest', examples: [{ ttl: 600 }] });

export const TouchResult = z
  .object({ key: z.string(), ttl: RemainingTtl, staleTtl: RemainingStale.optional(), etag: Etag })
  .meta({
    id: 'CacheTouchResult',
    examples: [{ key: 'ef:price:42', ttl: 600, etag: 'u3pQ1r4tWqk9b8Zs0aXyQw' }],
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
        encoding: z.enum(['base64']).optional(),
        ttl: RemainingTtl.optional(),
        staleTtl: RemainingStale.optional(),
        stale: z.boolean().optional(),
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
      .array(
        z
          .object({
            key: CacheKey,
            value: AnyJson,
            ttl: Ttl.optional(),
            staleTtl: StaleTtl.optional(),
            tags: Tags.optional(),
          })
          .strict(),
      )
      .min(1)
      .max(MAX_BATCH),
  })
  .strict()
  .meta({
    id: 'CacheMsetRequest',
    examples: [
      {
        items: [
          { key: 'ef:price:42', value: { price: 42.5 }, ttl: 300, tags: ['org:42'] },
          { key: 'ef:price:43', value: 17 },
        ],
      },
    ],
  });

export const MsetResult = z
  .object({
    items: z.array(
      z.object({
        key: z.string(),
        ttl: RemainingTtl,
        staleTtl: RemainingStale.optional(),
        etag: Etag,
      }),
    ),
  })
  .meta({
    id: 'CacheMsetResult',
    examples: [{ items: [{ key: 'ef:price:42', ttl: 300, etag: 'u3pQ1r4tWqk9b8Zs0aXyQw' }] }],
  });

export const MdeleteBody = z
  .object({ keys: z.array(CacheKey).min(1).max(MAX_BATCH) })
  .strict()
  .meta({ id: 'CacheMdeleteRequest', examples: [{ keys: ['ef:price:42', 'ef:price:43'] }] });

export const MdeleteResult = z
  .object({
    deleted: z.number().int().describe('Keys that held a value.'),
    items: z.array(
      z.object({ key: z.string(), deleted: z.boolean().describe('false: there was no value.') }),
    ),
  })
  .meta({
    id: 'CacheMdeleteResult',
    examples: [
      {
        deleted: 1,
        items: [
          { key: 'ef:price:42', deleted: true },
          { key: 'ef:price:43', deleted: false },
        ],
      },
    ],
  });

export const InvalidateBody = z
  .object({
    tags: z.array(Tag).min(1).max(MAX_TAGS).optional(),
    prefix: z
      .string()
      .max(MAX_KEY_BYTES)
      .optional()
      .describe(
        'Deletes every key starting with this text ("" deletes all of the tenant\'s keys).',
      ),
    pattern: z
      .string()
      .min(1)
      .max(MAX_KEY_BYTES)
      .optional()
      .describe("A glob (* ? [..] \\) matched against keys, inside the tenant's namespace only."),
    cursor: z
      .string()
      .max(4096)
      .optional()
      .describe('The cursor of the previous call, to continue an invalidation that hit its cap.'),
  })
  .strict()
  .superRefine((b, ctx) => {
    const given = [b.tags, b.prefix, b.pattern].filter((x) => x !== undefined).length;
    if (given !== 1)
      ctx.addIssue({ code: 'custom', message: 'give exactly one of tags, prefix, pattern' });
    for (const text of [b.prefix, b.pattern]) {
      if (text !== undefined && text.length > 0 && checkUserKey(text) !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: [b.prefix === text ? 'prefix' : 'pattern'],
          message: checkUserKey(text) as string,
        });
      }
    }
  })
  .meta({
    id: 'CacheInvalidateRequest',
    examples: [{ tags: ['org:42'] }, { prefix: 'ef:' }, { pattern: 'grid:*:current' }],
  });

export const InvalidateResult = z
  .object({
    deleted: z.number().int().describe('Keys deleted by this call.'),
    cursor: z
      .string()
      .nullable()
      .describe(
        'Non-null when the call stopped at its cap: send it back (with the same tags/prefix/pattern) to continue.',
      ),
  })
  .meta({ id: 'CacheInvalidateResult', examples: [{ deleted: 1250, cursor: null }] });

export const ListQuery = z.strictObject({
  prefix: z.string().max(MAX_KEY_BYTES).optional().describe('Only keys starting with this text.'),
  cursor: z.string().max(24).optional().describe('The cursor of the previous page.'),
  limit: queryInteger(1, 1000).optional().describe('About how many keys per page (default 100).'),
});

export const ListResult = z
  .object({
    keys: z.array(z.string()),
    cursor: z
      .string()
      .nullable()
      .describe(
        'Null on the last page. A page may be short, or even empty, before that; a key may appear twice.',
      ),
  })
  .meta({
    id: 'CacheKeyList',
    examples: [{ keys: ['ef:price:42', 'ef:price:43'], cursor: '1792' }],
  });

export type PutBody = z.infer<typeof PutBody>;
export type MsetBody = z.infer<typeof MsetBody>;
