/**
 * Per-request log lines at debug level only (an info line per request costs real CPU at 10K req/s),
 * carrying the route template rather than the raw URL, so keys and ids in paths never reach logs.
 * Failures are logged by the problem handler (5xx at error).
 */
import {
  type FastifyBaseLogger,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import type { FastifyChildLoggerFactory } from 'fastify/types/logger.js';

const debugOn = (log: FastifyBaseLogger): boolean =>
  (log as FastifyBaseLogger & { isLevelEnabled(l: string): boolean }).isLevelEnabled('debug');

export class GatewayLogController extends LogController {
  override incomingRequest(request: FastifyRequest): void {
    if (!debugOn(request.log)) return;
    request.log.debug(
      { method: request.method, route: request.routeOptions.url ?? 'unmatched' },
      'incoming request',
    );
  }

  override requestCompleted(
    _error: Error | null | undefined,
    request: FastifyRequest,
    reply: FastifyReply,
  ): void {
    if (!debugOn(request.log)) return;
    request.log.debug(
      {
        method: request.method,
        route: request.routeOptions.url ?? 'unmatched',
        statusCode: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 100) / 100,
        tenant: request.principal?.tenant,
      },
      'request completed',
    );
  }
}

type Level = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
type PinoLike = FastifyBaseLogger & { isLevelEnabled(level: string): boolean };

/**
 * A request logger that makes its pino child (bindings, redaction setup) only when something is
 * actually logged. Fastify makes one per request; at the default level nothing per request is
 * logged, so the hot path never pays for a child it would throw away.
 */
class LazyChildLogger {
  #child: FastifyBaseLogger | undefined;
  constructor(
    private readonly parent: PinoLike,
    private readonly bindings: Record<string, unknown>,
  ) {}

  private real(): FastifyBaseLogger {
    return (this.#child ??= this.parent.child(this.bindings));
  }

  get level(): string {
    return this.parent.level;
  }
  set level(level: string) {
    this.real().level = level;
  }
  isLevelEnabled(level: string): boolean {
    return this.parent.isLevelEnabled(level);
  }
  child(bindings: Record<string, unknown>, options?: Record<string, unknown>): FastifyBaseLogger {
    return this.real().child(bindings, options);
  }
  silent(): void {}
  // Prototype methods, not per-instance closures: one of these objects is made per request.
  fatal(...a: unknown[]): void {
    this.emit('fatal', a);
  }
  error(...a: unknown[]): void {
    this.emit('error', a);
  }
  warn(...a: unknown[]): void {
    this.emit('warn', a);
  }
  info(...a: unknown[]): void {
    this.emit('info', a);
  }
  debug(...a: unknown[]): void {
    this.emit('debug', a);
  }
  trace(...a: unknown[]): void {
    this.emit('trace', a);
  }

  private emit(level: Level, args: unknown[]): void {
    if (!this.parent.isLevelEnabled(level)) return;
    const real = this.real();
    Reflect.apply(real[level], real, args);
  }
}

/** Fastify childLoggerFactory: a lazy child unless the route asks for its own level/serializers. */
export const lazyChildLoggerFactory: FastifyChildLoggerFactory = function (
  logger,
  bindings,
  options,
) {
  if (Object.keys(options).length > 0) return logger.child(bindings, options);
  return new LazyChildLogger(logger as PinoLike, bindings);
};
