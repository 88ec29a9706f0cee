/**
 * buildApp(deps): the Fastify instance with its hardening, request ids, problem handlers, auth,
 * metrics, docs, and one register line per module.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fastifyRateLimit from '@fastify/rate-limit';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import {
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import type { Deps } from './deps.js';
import { AppError } from './errors.js';
import { createAuthHook } from './http/auth.js';
import { memoizedTrust } from './http/trust-proxy.js';
import { swaggerOptions } from './http/openapi.js';
import { GatewayLogController, lazyChildLoggerFactory } from './http/logging.js';
import { clientErrorHandler, registerProblemHandlers, sendProblem } from './http/problem.js';
import { adminRoutes } from './modules/admin/routes.js';
import { cacheRoutes } from './modules/cache/routes.js';
import { idempotencyRoutes } from './modules/idempotency/routes.js';
import { quotaRateLimitOptions } from './modules/ratelimit/quota.js';
import { ratelimitEnvoyRoutes } from './modules/ratelimit/envoy-routes.js';
import { ratelimitAdminRoutes, ratelimitRoutes } from './modules/ratelimit/routes.js';
import { queueRoutes } from './modules/queues/routes.js';
import { sessionRoutes } from './modules/sessions/routes.js';
import { healthRoutes } from './observability/health.js';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

/** Caller-supplied request ids are kept when they are short and plain; else we make one. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Generated ids: a random per-process prefix and a counter, e.g. `k3v9q2m8x1c4-1a2b`: unique
 * across replicas, ordered within one, and far cheaper than a UUID per request.
 */
function requestIdGenerator(): () => string {
  const prefix = randomBytes(6).toString('hex');
  let n = 0;
  return () => `${prefix}-${(++n).toString(36)}`;
}

export async function buildApp(deps: Deps): Promise<FastifyInstance> {
  const { config, metrics } = deps;
  const logger: FastifyBaseLogger = deps.logger;
  const nextRequestId = requestIdGenerator();
  const app = Fastify({
    loggerInstance: logger,
    logController: new GatewayLogController(),
    childLoggerFactory: lazyChildLoggerFactory,
    genReqId: (req) => {
      const h = req.headers['x-request-id'];
      return typeof h === 'string' && REQUEST_ID.test(h) ? h : nextRequestId();
    },
    bodyLimit: config.http.bodyLimitBytes,
    // Keys are up to 1024 bytes of UTF-8, i.e. up to 3072 characters percent-encoded.
    routerOptions: { maxParamLength: 4096, ignoreTrailingSlash: false },
    requestTimeout: 30_000,
    connectionTimeout: 60_000,
    keepAliveTimeout: config.http.keepAliveTimeoutMs,
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    trustProxy: config.http.trustProxy === false ? false : memoizedTrust(config.http.trustProxy),
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    clientErrorHandler,
    // Undecodable URLs and over-long path parameters, caught by the router before any hook runs.
    frameworkErrors: (err, request, reply) => {
      reply.header('x-request-id', request.id);
      const field =
        err.code === 'FST_ERR_MAX_PARAM_LENGTH'
          ? 'path (a parameter is longer than 4096 characters)'
          : 'path (not valid percent-encoded UTF-8)';
      void sendProblem(
        request,
        reply,
        new AppError('VALIDATION_FAILED', `The URL path is invalid: ${field}.`, {
          errors: [{ field: 'path', message: field }],
        }),
      );
    },
  }).withTypeProvider<ZodTypeProvider>();

  // Slow clients: the request line and headers within 10 s (slowloris), the whole request in 30 s.
  app.server.headersTimeout = 10_000;

  // Request headers are documented in route schemas but not validated against them (every header
  // is a string anyway; routes check the few they use). Validating would copy every request's
  // headers on the hot path.
  app.setValidatorCompiler((route) =>
    route.httpPart === 'headers'
      ? (data: unknown) => ({ value: data })
      : validatorCompiler(route as Parameters<typeof validatorCompiler>[0]),
  );
  // Body-less responses (204) carry a plain description object, not a zod schema.
  app.setSerializerCompiler((route) => {
    const s = route.schema as { safeParse?: unknown; properties?: unknown };
    return typeof s.safeParse === 'function' || s.properties !== undefined
      ? serializerCompiler(route as Parameters<typeof serializerCompiler>[0])
      : (data) => JSON.stringify(data);
  });
  app.decorateRequest('principal', undefined);
  // Only JSON bodies are accepted (Fastify also parses text/plain by default).
  app.removeContentTypeParser('text/plain');
  app.addHook('onRoute', (route) => {
    // swagger-ui's own routes (/docs/*) are public.
    if (route.url.startsWith('/docs'))
      route.config = { ...route.config, auth: 'none', module: 'docs' };
  });

  registerProblemHandlers(app, {
    bodyLimitBytes: config.http.bodyLimitBytes,
    onRedisError: (module, kind) => metrics.redisErrors.inc({ module, kind }),
  });

  const authenticate = createAuthHook({
    verifyApiKey: (presented) => deps.admin.verifyApiKey(presented),
    isAdminToken: (token) => deps.admin.isAdminToken(token),
    onFailure: (reason) => metrics.authFailures.inc({ reason }),
  });
  // One onRequest hook for everything (each hook is a step on every request's path): the request
  // id header, refusal while draining, shedding while overloaded (http/overload.ts), then
  // authentication and the route's scope.
  app.addHook(
    'onRequest',
    (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) => {
      reply.header('x-request-id', request.id);
      // Probes answer while draining: /readyz reports it, /livez must not fail (no restart mid-drain).
      if (deps.lifecycle.draining && request.routeOptions.config.module !== 'health') {
        reply.header('connection', 'close');
        done(
          new AppError(
            'SHUTTING_DOWN',
            'This gateway replica is shutting down; retry (another replica will answer).',
            {
              retryAfter: 1,
            },
          ),
        );
        return;
      }
      if (
        deps.lifecycle.overloaded &&
        request.routeOptions.config.shed !== false &&
        request.routeOptions.config.module !== 'health'
      ) {
        metrics.shed.inc({ module: request.routeOptions.config.module ?? 'unmatched' });
        done(
          new AppError(
            'OVERLOADED',
            'This gateway replica is overloaded; retry shortly (another replica may answer).',
            { retryAfter: 1 },
          ),
        );
        return;
      }
      authenticate.call(app, request, reply, done);
    },
  );

  app.addHook('onResponse', (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    const route = request.routeOptions.url ?? 'unmatched';
    metrics.observeHttp(request.method, route, reply.statusCode, reply.elapsedTime / 1000);
    done();
  });

  await app.register(fastifySwagger, swaggerOptions(pkg.version));
  if (config.http.docsEnabled) {
    await app.register(fastifySwaggerUi, { routePrefix: '/docs', uiConfig: { deepLinking: true } });
  }
  app.get(
    '/openapi.json',
    { config: { auth: 'none', module: 'docs' }, schema: { hide: true } },
    async () => app.swagger(),
  );

  // The gateway's own per-key request quota (applies to every route registered after it).
  if (config.ratelimit.requestQuotaPerMinute > 0 || config.ratelimit.policiesFile !== undefined) {
    await app.register(
      fastifyRateLimit,
      quotaRateLimitOptions({
        counter: deps.quota,
        quotaFor: (tenant) =>
          deps.policies.quotaFor(tenant) ?? config.ratelimit.requestQuotaPerMinute,
        legacyHeaders: config.ratelimit.legacyHeaders,
        onExceeded: () => metrics.ratelimit.quotaExceeded(),
      }),
    );
  }

  await app.register(healthRoutes, {
    lifecycle: deps.lifecycle,
    started: () => deps.redis.everReady(),
    redisState: () => ({
      ...deps.redis.state(),
      ...Object.fromEntries(
        deps.redis
          .settings()
          .map((c) => [`setting.${c.setting}`, c.ok ? `ok, ${c.detail}` : c.detail]),
      ),
      // By position in REDIS_SENTINELS and state only: /readyz is unauthenticated, on the main
      // port, and addresses and error texts stay in the metrics (their own port) and the log.
      ...Object.fromEntries(
        (deps.sentinels?.last() ?? []).map((r, i) => [`sentinel.${i + 1}`, r.state]),
      ),
    }),
  });
  await app.register(adminRoutes, { prefix: '/v1/admin', service: deps.admin });
  await app.register(cacheRoutes, {
    prefix: '/v1/cache',
    service: deps.cache,
    limits: config.cache,
  });
  await app.register(ratelimitRoutes, {
    prefix: '/v1/ratelimit',
    service: deps.ratelimit,
    store: deps.policies,
    legacyHeaders: config.ratelimit.legacyHeaders,
  });
  await app.register(ratelimitEnvoyRoutes, {
    prefix: '/v1/ratelimit',
    envoy: deps.envoy,
    legacyHeaders: config.ratelimit.legacyHeaders,
  });
  await app.register(ratelimitAdminRoutes, { prefix: '/v1/admin/tenants', store: deps.policies });
  await app.register(sessionRoutes, { service: deps.sessions });
  await app.register(idempotencyRoutes, { prefix: '/v1/idempotency', service: deps.idempotency });
  await app.register(queueRoutes, {
    prefix: '/v1/queues',
    service: deps.queues,
    limits: config.queues,
  });

  return app;
}
