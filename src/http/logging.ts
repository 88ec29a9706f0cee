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
