/**
 * The one table of error codes. Every non-2xx answer of the gateway is built from an entry here and
 * rendered as RFC 9457 problem+json by http/problem.ts. Codes are stable API: clients switch on
 * `code`; `type` is a stable URI per code, documented in docs/problems.md.
 */

export const PROBLEM_BASE = 'https://cache-gateway.dev/problems/';

interface ErrorSpec {
  status: number;
  title: string;
  /** The problem type: a slug under PROBLEM_BASE or an absolute URI. */
  type: string;
}

export const ERRORS = {
  BAD_REQUEST: { status: 400, title: 'Bad request', type: 'bad-request' },
  VALIDATION_FAILED: { status: 400, title: 'Request validation failed', type: 'validation-failed' },
  UNAUTHORIZED: { status: 401, title: 'Missing or invalid credentials', type: 'unauthorized' },
  SCOPE_MISSING: {
    status: 403,
    title: 'The credential lacks a required scope',
    type: 'scope-missing',
  },
  NOT_FOUND: { status: 404, title: 'Not found', type: 'not-found' },
  ROUTE_NOT_FOUND: { status: 404, title: 'No such route', type: 'route-not-found' },
  CACHE_MISS: { status: 404, title: 'Cache miss', type: 'cache-miss' },
  TENANT_NOT_FOUND: { status: 404, title: 'No such tenant', type: 'tenant-not-found' },
  API_KEY_NOT_FOUND: { status: 404, title: 'No such API key', type: 'api-key-not-found' },
  POLICY_NOT_FOUND: { status: 404, title: 'No such rate-limit policy', type: 'policy-not-found' },
  SESSION_NOT_FOUND: {
    status: 404,
    title: 'No such session (unknown or expired)',
    type: 'session-not-found',
  },
  IDEMPOTENCY_KEY_NOT_FOUND: {
    status: 404,
    title: 'No such idempotency key (never begun, released or expired)',
    type: 'idempotency-key-not-found',
  },
  QUEUE_NOT_FOUND: { status: 404, title: 'No such queue', type: 'queue-not-found' },
  GROUP_NOT_FOUND: {
    status: 404,
    title: 'No such consumer group',
    type: 'group-not-found',
  },
  CONFLICT: { status: 409, title: 'Conflict', type: 'conflict' },
  IDEMPOTENCY_IN_PROGRESS: {
    status: 409,
    title: 'A request with this idempotency key is in progress',
    type: 'idempotency-in-progress',
  },
  IDEMPOTENCY_TOKEN_MISMATCH: {
    status: 409,
    title: 'The token does not hold this idempotency key',
    type: 'idempotency-token-mismatch',
  },
  TENANT_EXISTS: { status: 409, title: 'Tenant already exists', type: 'tenant-exists' },
  TENANT_DELETING: { status: 409, title: 'Tenant is being deleted', type: 'tenant-deleting' },
  TENANT_MANAGED_BY_FILE: {
    status: 409,
    title: 'Tenant has keys in the keys file',
    type: 'tenant-managed-by-file',
  },
  API_KEY_REVOKED: { status: 409, title: 'API key is revoked', type: 'api-key-revoked' },
  API_KEY_MANAGED_BY_FILE: {
    status: 409,
    title: 'API key is managed by the keys file',
    type: 'api-key-managed-by-file',
  },
  PRECONDITION_FAILED: {
    status: 412,
    title: 'Precondition failed',
    type: 'precondition-failed',
  },
  IDEMPOTENCY_KEY_REUSED: {
    status: 422,
    title: 'The idempotency key was used with a different request',
    type: 'idempotency-key-reused',
  },
  PAYLOAD_TOO_LARGE: { status: 413, title: 'Request body too large', type: 'payload-too-large' },
  VALUE_TOO_LARGE: { status: 413, title: 'Value too large', type: 'value-too-large' },
  UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    title: 'Unsupported media type',
    type: 'unsupported-media-type',
  },
  QUOTA_EXCEEDED: {
    status: 429,
    title: 'Request quota exceeded',
    type: 'https://iana.org/assignments/http-problem-types#quota-exceeded',
  },
  QUOTA_EXCEEDED_COMPAT: {
    status: 403,
    title: 'Request quota exceeded',
    type: 'https://iana.org/assignments/http-problem-types#quota-exceeded',
  },
  INTERNAL: { status: 500, title: 'Internal error', type: 'internal' },
  STORED_FORMAT_UNSUPPORTED: {
    status: 500,
    title: 'Stored value has a format this gateway version cannot read',
    type: 'stored-format-unsupported',
  },
  BACKEND_UNAVAILABLE: {
    status: 503,
    title: 'Redis is unavailable',
    type: 'backend-unavailable',
  },
  BACKEND_TIMEOUT: { status: 503, title: 'Redis did not answer in time', type: 'backend-timeout' },
  BACKEND_NO_REPLICAS: {
    status: 503,
    title: 'Redis refused the write: not enough replicas',
    type: 'backend-no-replicas',
  },
  BACKEND_OUT_OF_MEMORY: {
    status: 503,
    title: 'Redis refused the write: out of memory',
    type: 'backend-out-of-memory',
  },
  SHUTTING_DOWN: { status: 503, title: 'Gateway is shutting down', type: 'shutting-down' },
  OVERLOADED: { status: 503, title: 'Gateway is overloaded', type: 'overloaded' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

/** One offending field of a request. `limit` names the configured limit that was exceeded. */
export interface FieldError {
  field: string;
  message: string;
  limit?: string;
}

export interface AppErrorOptions {
  errors?: FieldError[];
  /** Seconds; sets `Retry-After`. */
  retryAfter?: number;
  headers?: Record<string, string>;
  /** Extension members added to the problem body. */
  extensions?: Record<string, unknown>;
  cause?: unknown;
}

/** An error with a public meaning. `detail` is shown to the caller; `cause` goes only to the log. */
export class AppError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    readonly detail: string,
    readonly options: AppErrorOptions = {},
  ) {
    super(detail, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.status = ERRORS[code].status;
  }
}

export function problemType(code: ErrorCode): string {
  const t = ERRORS[code].type;
  return t.startsWith('https://') ? t : PROBLEM_BASE + t;
}

export type RedisErrorKind =
  'unavailable' | 'timeout' | 'readonly' | 'noreplicas' | 'oom' | 'noperm' | 'other';

/**
 * Classifies an error thrown by ioredis. Everything except 'other' means "Redis could not serve
 * this request now" and becomes a 503 with Retry-After; the outcome of a write that failed this
 * way is unknown (it may or may not have been applied).
 */
export function classifyRedisError(err: unknown): RedisErrorKind | null {
  if (!(err instanceof Error)) return null;
  const msg = err.message;
  const name = err.name;
  if (msg === 'Command timed out') return 'timeout';
  if (msg.startsWith('EXECABORT')) {
    // A transaction discarded because a queued command was refused: classify by that refusal.
    const first = (err as Error & { previousErrors?: unknown[] }).previousErrors?.[0];
    return first instanceof Error ? classifyRedisError(first) : 'other';
  }
  if (msg.startsWith('READONLY')) return 'readonly';
  if (msg.startsWith('NOREPLICAS')) return 'noreplicas';
  if (msg.startsWith('OOM')) return 'oom';
  if (msg.startsWith('NOPERM')) return 'noperm';
  if (msg.startsWith('LOADING') || msg.startsWith('MASTERDOWN') || msg.startsWith('TRYAGAIN')) {
    return 'unavailable';
  }
  if (
    name === 'MaxRetriesPerRequestError' ||
    msg === 'Connection is closed.' ||
    msg.startsWith("Stream isn't writeable") ||
    msg.includes('ECONNREFUSED') ||
    msg.includes('ECONNRESET') ||
    msg.includes('EPIPE') ||
    msg.includes('ETIMEDOUT') ||
    msg.startsWith('All sentinels are unreachable') ||
    msg.startsWith('Redis is unavailable')
  ) {
    return 'unavailable';
  }
  if (name === 'ReplyError') return 'other';
  return null;
}

/** Maps a Redis error kind to the public error; 'other' and NOPERM are our bugs, hence 500. */
export function redisErrorToAppError(kind: RedisErrorKind, cause: unknown): AppError {
  switch (kind) {
    case 'timeout':
      return new AppError(
        'BACKEND_TIMEOUT',
        'Redis did not answer within the request deadline; the outcome of a write is unknown.',
        { retryAfter: 1, cause },
      );
    case 'noreplicas':
      return new AppError(
        'BACKEND_NO_REPLICAS',
        'The Redis master has too few healthy replicas to accept writes.',
        { retryAfter: 2, cause },
      );
    case 'oom':
      return new AppError('BACKEND_OUT_OF_MEMORY', 'Redis is out of memory and refuses writes.', {
        retryAfter: 5,
        cause,
      });
    case 'readonly':
    case 'unavailable':
      return new AppError(
        'BACKEND_UNAVAILABLE',
        'Redis is unavailable (failover or outage in progress); the outcome of a write is unknown.',
        { retryAfter: 1, cause },
      );
    case 'noperm':
    case 'other':
      return new AppError('INTERNAL', 'An internal error occurred.', { cause });
  }
}
