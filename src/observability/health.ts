/**
 * Probes, after the Kubernetes API server's own: /livez is the process only (never Redis: a Redis
 * outage must not restart every pod); /readyz is "started and not draining". Readiness does not
 * follow short Redis outages: every pod shares one Redis, so failing them all would pull every
 * endpoint out of the load balancer and turn our explicit 503/fail-open answers into connection
 * errors. Redis health is in the metrics and alerts instead.
 */
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { AppError } from '../errors.js';
import { jsonResponse, problemResponses } from '../http/openapi.js';

export interface Lifecycle {
  /** Set on SIGTERM: readiness fails, new requests get 503 + Connection: close. */
  draining: boolean;
  /**
   * Set while the event loop lags past OVERLOAD_MAX_EVENT_LOOP_DELAY_MS (http/overload.ts): new
   * requests get 503 OVERLOADED, rate-limit decisions follow their policy's failure mode.
   */
  overloaded: boolean;
}

export interface HealthOptions {
  lifecycle: Lifecycle;
  /** True once Redis has been ready at least once. */
  started(): boolean;
  /** Connection state per Redis client role, for ?verbose. */
  redisState(): Record<string, string>;
}

const Health = z
  .object({
    status: z.enum(['ok']),
    checks: z.record(z.string(), z.string()).optional(),
  })
  .meta({ id: 'Health', examples: [{ status: 'ok' }] });

const Query = z.object({ verbose: z.string().optional().describe('Present to list each check.') });

export const healthRoutes: FastifyPluginAsyncZod<HealthOptions> = async (app, opts) => {
  const config = { auth: 'none', module: 'health' } as const;
  app.get(
    '/livez',
    {
      config,
      schema: {
        operationId: 'livez',
        tags: ['health'],
        summary: 'Liveness: the process runs',
        response: { 200: jsonResponse('Alive.', Health), 500: problemResponses()[500] },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      config,
      schema: {
        operationId: 'readyz',
        tags: ['health'],
        summary: 'Readiness: Redis was reached once, and the gateway is not draining',
        querystring: Query,
        response: { 200: jsonResponse('Ready.', Health), ...problemResponses() },
      },
    },
    async (request) => {
      const checks = {
        started: opts.started() ? 'ok' : 'waiting for the first Redis connection',
        draining: opts.lifecycle.draining ? 'draining' : 'ok',
        ...Object.fromEntries(Object.entries(opts.redisState()).map(([k, v]) => [`redis.${k}`, v])),
      };
      if (checks.started !== 'ok')
        throw new AppError('BACKEND_UNAVAILABLE', 'Not ready: Redis has not been reached yet.', {
          retryAfter: 1,
          extensions: { checks },
        });
      if (opts.lifecycle.draining)
        throw new AppError('SHUTTING_DOWN', 'Not ready: draining.', {
          retryAfter: 1,
          extensions: { checks },
        });
      return request.query.verbose !== undefined
        ? { status: 'ok' as const, checks }
        : { status: 'ok' as const };
    },
  );
};
