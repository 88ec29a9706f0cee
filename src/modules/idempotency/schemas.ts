/** Request and response schemas of the idempotency routes. */
import { z } from 'zod';
import { MAX_KEY_BYTES, checkUserKey } from '../../redis/keys.js';

export const IdempotencyKey = z
  .string()
  .min(1)
  .max(MAX_KEY_BYTES)
  .superRefine((k, ctx) => {
    const problem = checkUserKey(k);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
  })
  .describe(
    `The Idempotency-Key your client sent (a UUID is typical): 1..${MAX_KEY_BYTES} bytes of UTF-8 without control characters.`,
  );

export const KeyParams = z.object({ key: IdempotencyKey });

const Token = z
  .string()
  .min(1)
  .max(64)
  .describe('The token `_begin` returned: it proves the caller holds the key.');

const Durable = z
  .boolean()
  .optional()
  .describe(
    'Answer only once DURABLE_REPLICAS replica(s) confirm the write (WAIT), so it survives a master crash; 503 when they do not in time.',
  );

export const BeginBody = z
  .strictObject({
    fingerprint: z
      .string()
      .max(512)
      .optional()
      .describe(
        'A digest of the request (e.g. SHA-256 of method, path and body). Reusing the key with another fingerprint is refused with 422.',
      ),
    lockTtl: z
      .number()
      .int()
      .min(1)
      .max(3600)
      .optional()
      .describe(
        'Seconds the caller may hold the key before another may take it over (default IDEMPOTENCY_LOCK_TTL_SECONDS): set it above your slowest request.',
      ),
    ttl: z
      .number()
      .int()
      .min(1)
      .optional()
      .describe(
        'Seconds the record (and the response to replay) is kept, from begin and again from completion (default IDEMPOTENCY_TTL_SECONDS, at most IDEMPOTENCY_MAX_TTL_SECONDS).',
      ),
    durable: Durable,
  })
  .meta({
    id: 'IdempotencyBegin',
    examples: [{ fingerprint: 'sha256:9f86d081884c7d659a2feaa0c55ad015', lockTtl: 30 }],
  });

export const StoredResponse = z
  .strictObject({
    status: z.number().int().min(100).max(599).describe('The HTTP status to replay.'),
    headers: z
      .record(z.string(), z.string())
      .optional()
      .describe('Headers to replay (leave out hop-by-hop and per-request ones).'),
    body: z.unknown().optional().describe('The body to replay: any JSON value.'),
  })
  .meta({
    id: 'IdempotentResponse',
    examples: [
      { status: 201, headers: { location: '/payments/pay_123' }, body: { id: 'pay_123' } },
    ],
  });

export const Started = z
  .object({
    state: z.literal('started'),
    token: Token,
    lockExpiresAt: z.string().describe('ISO 8601: when another caller may take the key over.'),
  })
  .meta({
    id: 'IdempotencyStarted',
    examples: [
      {
        state: 'started',
        token: 'q7F0b3X9c2LkQm1R5tYwZg',
        lockExpiresAt: '2026-11-22T10:00:30.000Z',
      },
    ],
  });

export const Completed = z
  .object({
    state: z.literal('completed'),
    response: StoredResponse,
  })
  .meta({
    id: 'IdempotencyReplay',
    examples: [
      {
        state: 'completed',
        response: {
          status: 201,
          headers: { location: '/payments/pay_123' },
          body: { id: 'pay_123' },
        },
      },
    ],
  });

export const CompleteBody = z
  .strictObject({ token: Token, response: StoredResponse, durable: Durable })
  .meta({
    id: 'IdempotencyComplete',
    examples: [
      {
        token: 'q7F0b3X9c2LkQm1R5tYwZg',
        response: { status: 201, body: { id: 'pay_123' } },
      },
    ],
  });

export const CompleteResult = z
  .object({ state: z.literal('completed') })
  .meta({ id: 'IdempotencyCompleted', examples: [{ state: 'completed' }] });

export const ReleaseQuery = z.strictObject({ token: Token });
