/**
 * RFC 9457 problem details for every non-2xx answer: thrown AppErrors, schema validation
 * failures, body/content-type errors, Redis failures, unknown routes and malformed HTTP.
 */
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import {
  AppError,
  ERRORS,
  type ErrorCode,
  type FieldError,
  classifyRedisError,
  problemType,
  redisErrorToAppError,
  type RedisErrorKind,
} from '../errors.js';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance: string;
  code: ErrorCode;
  requestId: string;
  errors?: FieldError[];
  [extension: string]: unknown;
}

/** Writes an AppError as problem+json on a Fastify reply. */
export function sendProblem(
  request: FastifyRequest,
  reply: FastifyReply,
  err: AppError,
): FastifyReply {
  const spec = ERRORS[err.code];
  const body: ProblemBody = {
    ...err.options.extensions,
    type: problemType(err.code),
    title: spec.title,
    status: spec.status,
    detail: err.detail,
    instance: request.url.split('?', 1)[0] ?? request.url,
    code: err.code,
    requestId: request.id,
  };
  if (err.options.errors !== undefined) body.errors = err.options.errors;
  reply.code(spec.status).header('content-type', PROBLEM_CONTENT_TYPE);
  if (err.options.retryAfter !== undefined)
    reply.header('retry-after', String(err.options.retryAfter));
  if (err.options.headers !== undefined) reply.headers(err.options.headers);
  return reply.send(JSON.stringify(body));
}

interface ValidationIssue {
  message: string;
  /** JSON pointer into the validated part, e.g. /items/1/ttl. */
  instancePath?: string;
}

/** `body.items[1].ttl`, `path.key`, `query.limit` from a validation context and JSON pointer. */
function fieldName(context: string | undefined, pointer: string): string {
  const prefix =
    context === 'params' ? 'path' : context === 'querystring' ? 'query' : (context ?? 'body');
  const segments = pointer.split('/').filter((p) => p.length > 0);
  return prefix + segments.map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`)).join('');
}

function validationError(err: FastifyError): AppError {
  const issues = (err.validation ?? []) as unknown as ValidationIssue[];
  const errors: FieldError[] = issues.map((i) => ({
    field: fieldName(err.validationContext, i.instancePath ?? ''),
    message: i.message,
  }));
  const first = errors[0];
  const detail =
    first === undefined
      ? 'The request does not match the schema.'
      : `${first.field}: ${first.message}${errors.length > 1 ? ` (and ${errors.length - 1} more)` : ''}`;
  return new AppError('VALIDATION_FAILED', detail, { errors });
}

export interface ProblemHandlerOptions {
  bodyLimitBytes: number;
  /** Called for every Redis failure turned into a problem, with the route's module. */
  onRedisError?(module: string, kind: RedisErrorKind): void;
}

/** Converts any thrown value into an AppError (the public view of the failure). */
export function toAppError(err: unknown, opts: ProblemHandlerOptions, module: string): AppError {
  if (err instanceof AppError) return err;
  const kind = classifyRedisError(err);
  if (kind !== null) {
    opts.onRedisError?.(module, kind);
    return redisErrorToAppError(kind, err);
  }
  const fe = err as FastifyError;
  if (
    hasZodFastifySchemaValidationErrors(fe) ||
    (fe.validation !== undefined && fe.statusCode === 400)
  ) {
    return validationError(fe);
  }
  switch (fe.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new AppError(
        'PAYLOAD_TOO_LARGE',
        `The request body exceeds ${opts.bodyLimitBytes} bytes.`,
        {
          errors: [
            {
              field: 'body',
              message: `larger than ${opts.bodyLimitBytes} bytes`,
              limit: 'BODY_LIMIT_BYTES',
            },
          ],
        },
      );
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new AppError('UNSUPPORTED_MEDIA_TYPE', 'Send the body as application/json.');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new AppError('BAD_REQUEST', 'The body is empty but Content-Type is application/json.');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new AppError('BAD_REQUEST', 'Content-Length does not match the body.');
  }
  if (err instanceof SyntaxError || fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
    return new AppError('BAD_REQUEST', `The body is not valid JSON: ${fe.message}`);
  }
  const status = fe.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    const code: ErrorCode =
      status === 404
        ? 'NOT_FOUND'
        : status === 413
          ? 'PAYLOAD_TOO_LARGE'
          : status === 415
            ? 'UNSUPPORTED_MEDIA_TYPE'
            : 'BAD_REQUEST';
    return new AppError(code, fe.message);
  }
  return new AppError('INTERNAL', 'An internal error occurred.', { cause: err });
}

/** Installs the error handler, the 404 handler and the malformed-HTTP handler. */
export function registerProblemHandlers(app: FastifyInstance, opts: ProblemHandlerOptions): void {
  app.setErrorHandler((err, request, reply) => {
    const module = request.routeOptions.config?.module ?? 'gateway';
    const appErr = toAppError(err, opts, module);
    // 503s (Redis away, draining) are counted in metrics and logged by the Redis client's own
    // state changes; one line per refused request would flood the log during a failover.
    if (appErr.status >= 500 && appErr.status !== 503) {
      request.log.error({ err: appErr.options.cause ?? err, code: appErr.code }, appErr.detail);
    } else {
      request.log.debug({ code: appErr.code, detail: appErr.detail }, 'request refused');
    }
    return sendProblem(request, reply, appErr);
  });
  app.setNotFoundHandler((request, reply) =>
    sendProblem(
      request,
      reply,
      new AppError(
        'ROUTE_NOT_FOUND',
        `No route ${request.method} ${request.url.split('?', 1)[0]}.`,
      ),
    ),
  );
}

/** Answers malformed HTTP (bad request line, oversized headers) with problem+json, then closes. */
export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const status =
    err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  const title =
    status === 431
      ? 'Request header fields too large'
      : status === 408
        ? 'Request timeout'
        : 'Bad request';
  const body = JSON.stringify({
    type: problemType('BAD_REQUEST'),
    title,
    status,
    detail: 'The HTTP request could not be parsed.',
    code: 'BAD_REQUEST',
  });
  socket.end(
    `HTTP/1.1 ${status} ${title}\r\nContent-Type: ${PROBLEM_CONTENT_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}
