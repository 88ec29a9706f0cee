/**
 * Idempotency keys (the IETF httpapi Idempotency-Key draft, run as a service): a caller begins a
 * key and holds a lock on it, does its work, then completes the key with the response every
 * later caller gets replayed; or releases it after a failure. Each transition is one script. The
 * record is scoped by tenant and, unless IDEMPOTENCY_KEY_SCOPE=tenant, by API key id: one
 * client cannot replay (and so read) the responses of another (the draft's security section).
 */
import type { Redis } from 'ioredis';
import type { Clock } from '../../clock.js';
import { AppError } from '../../errors.js';
import type { RedisAccess } from '../../redis/client.js';
import { keys } from '../../redis/keys.js';
import { randomToken } from '../../random.js';

export interface IdempotencyLimits {
  ttlSeconds: number;
  maxTtlSeconds: number;
  lockTtlSeconds: number;
  maxResponseBytes: number;
  keyScope: 'api-key' | 'tenant';
}

export type IdempotencyOutcomeName =
  | 'started'
  | 'taken_over'
  | 'replayed'
  | 'in_progress'
  | 'mismatch'
  | 'completed'
  | 'token_mismatch'
  | 'released';

export interface IdempotencyServiceOptions {
  redis: RedisAccess;
  clock: Clock;
  limits: IdempotencyLimits;
  onOutcome?(outcome: IdempotencyOutcomeName): void;
}

export interface Caller {
  tenant: string;
  keyId: string;
}

export interface BeginInput {
  fingerprint?: string | undefined;
  lockTtl?: number | undefined;
  ttl?: number | undefined;
  durable?: boolean | undefined;
}

export type BeginResult =
  | { state: 'started'; token: string; lockExpiresAt: number; takenOver: boolean }
  /** The stored response JSON, replayed as is. */
  | { state: 'completed'; responseJson: string };

export function createIdempotencyService(opts: IdempotencyServiceOptions) {
  const { redis, clock, limits } = opts;
  const outcome = (o: IdempotencyOutcomeName) => opts.onOutcome?.(o);

  const recordKey = (caller: Caller, key: string) =>
    keys.idempotency(caller.tenant, limits.keyScope === 'tenant' ? '*' : caller.keyId, key);

  const write = <T>(durable: boolean, fn: (r: Redis) => Promise<T>): Promise<T> =>
    durable ? redis.onMasterDurable(fn, 'idempotency') : redis.onMaster(fn);

  function tokenMismatch(detail: string): AppError {
    outcome('token_mismatch');
    return new AppError('IDEMPOTENCY_TOKEN_MISMATCH', detail);
  }

  const notFound = () =>
    new AppError(
      'IDEMPOTENCY_KEY_NOT_FOUND',
      'No such idempotency key: it was never begun, was released, or expired. Begin it again.',
    );

  return {
    async begin(caller: Caller, key: string, input: BeginInput): Promise<BeginResult> {
      const ttl = input.ttl ?? limits.ttlSeconds;
      if (ttl > limits.maxTtlSeconds) {
        throw new AppError(
          'VALIDATION_FAILED',
          `body.ttl must be at most ${limits.maxTtlSeconds} seconds.`,
          {
            errors: [
              {
                field: 'body.ttl',
                message: `must be at most ${limits.maxTtlSeconds}`,
                limit: 'IDEMPOTENCY_MAX_TTL_SECONDS',
              },
            ],
          },
        );
      }
      const lockMs = (input.lockTtl ?? limits.lockTtlSeconds) * 1000;
      const k = recordKey(caller, key);
      const token = randomToken(16);
      const now = clock.nowMs();
      const res = await write(input.durable === true, (r) =>
        r.idempotencyBegin(k, now, token, input.fingerprint ?? '', lockMs, ttl * 1000),
      );
      switch (res[0]) {
        case 'started':
        case 'taken_over':
          outcome(res[0]);
          return {
            state: 'started',
            token: String(res[1]),
            lockExpiresAt: Number(res[2]),
            takenOver: res[0] === 'taken_over',
          };
        case 'completed':
          outcome('replayed');
          return { state: 'completed', responseJson: String(res[1]) };
        case 'in_progress': {
          outcome('in_progress');
          const seconds = Math.max(1, Math.ceil((Number(res[1]) - now) / 1000));
          throw new AppError(
            'IDEMPOTENCY_IN_PROGRESS',
            `Another request with this idempotency key is in progress; its lock expires in ${seconds} s unless it completes first. Retry then.`,
            { retryAfter: seconds },
          );
        }
        case 'mismatch':
          outcome('mismatch');
          throw new AppError(
            'IDEMPOTENCY_KEY_REUSED',
            'This idempotency key was begun with another fingerprint: it is being reused for a different request.',
            { errors: [{ field: 'body.fingerprint', message: 'differs from the first request' }] },
          );
        default:
          throw new Error(`unexpected idempotencyBegin reply ${String(res[0])}`);
      }
    },

    /** Stores the response (write-once); a retried PUT with the same token is accepted again. */
    async complete(
      caller: Caller,
      key: string,
      token: string,
      response: unknown,
      durable: boolean,
    ): Promise<{ alreadyCompleted: boolean }> {
      const json = JSON.stringify(response);
      const bytes = Buffer.byteLength(json, 'utf8');
      if (bytes > limits.maxResponseBytes) {
        throw new AppError(
          'VALUE_TOO_LARGE',
          `The response is ${bytes} bytes of JSON; at most ${limits.maxResponseBytes} are stored (IDEMPOTENCY_MAX_RESPONSE_BYTES).`,
          {
            errors: [
              {
                field: 'body.response',
                message: `over ${limits.maxResponseBytes} bytes`,
                limit: 'IDEMPOTENCY_MAX_RESPONSE_BYTES',
              },
            ],
          },
        );
      }
      const k = recordKey(caller, key);
      const now = clock.nowMs();
      const n = await write(durable, (r) => r.idempotencyComplete(k, now, token, json));
      if (n === 0) throw notFound();
      if (n === -1)
        throw tokenMismatch(
          'This token does not hold the key: it is wrong, or its lock expired and another request took the key over.',
        );
      if (n === 1) outcome('completed');
      return { alreadyCompleted: n === 2 };
    },

    /** Drops an unfinished key so a retry can begin again. */
    async release(caller: Caller, key: string, token: string): Promise<void> {
      const k = recordKey(caller, key);
      const n = await redis.onMaster((r) => r.idempotencyRelease(k, token));
      if (n === 0) throw notFound();
      if (n === -1)
        throw tokenMismatch(
          'This token does not hold the key: it is wrong, or its lock expired and another request took the key over.',
        );
      if (n === -2)
        throw new AppError(
          'CONFLICT',
          'The key is completed: its response is replayed to every retry and cannot be released.',
        );
      outcome('released');
    },
  };
}

export type IdempotencyService = ReturnType<typeof createIdempotencyService>;
