/**
 * The process entry: the only file that reads process.env or exits.
 * config -> deps -> app -> listen; SIGTERM/SIGINT drain and exit 0 within SHUTDOWN_GRACE_MS.
 */
import closeWithGrace from 'close-with-grace';
import { pino } from 'pino';
import { buildApp } from './app.js';
import { ConfigError, type Config, parseConfig } from './config.js';
import { createDeps } from './deps.js';
import { startOverloadMonitor } from './http/overload.js';
import { startRlsServer } from './modules/ratelimit/rls-grpc.js';
import { createMetricsServer } from './observability/metrics-server.js';

function loadConfig(): Config {
  try {
    return parseConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`cache-gateway: ${err.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }
}

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = pino({
    level: config.logLevel,
    redact: {
      paths: [
        'req.headers.authorization',
        'req.headers["x-api-key"]',
        'req.headers["x-gateway-key"]',
        'headers.authorization',
        'headers["x-api-key"]',
        'headers["x-gateway-key"]',
        '*.password',
        '*.adminToken',
        'key',
      ],
      censor: '[redacted]',
    },
  });

  let deps;
  try {
    deps = createDeps(config, logger, {
      onFatal: () => process.exit(1), // logged by deps; a misconfigured ACL must not look healthy
    });
  } catch (err) {
    logger.fatal({ err }, 'cannot start');
    process.exit(1);
  }
  const app = await buildApp(deps);
  const metricsServer =
    config.metricsPort !== 0 ? createMetricsServer(deps.metrics.registry) : undefined;

  // Load shedding: the event loop's delay, sampled; the flag is read on every request (app.ts).
  const { lifecycle, metrics } = deps;
  const overload = startOverloadMonitor({
    maxDelayMs: config.http.overloadMaxEventLoopDelayMs,
    onSample: (delayMs, overloaded) => {
      if (overloaded === lifecycle.overloaded) return;
      lifecycle.overloaded = overloaded;
      metrics.overloaded.set(overloaded ? 1 : 0);
      if (overloaded)
        logger.warn({ eventLoopDelayMs: Math.round(delayMs) }, 'overloaded: shedding new requests');
      else logger.info({ eventLoopDelayMs: Math.round(delayMs) }, 'no longer overloaded');
    },
  });

  let rls: Awaited<ReturnType<typeof startRlsServer>> | undefined;
  closeWithGrace({ delay: config.http.shutdownGraceMs, logger }, async ({ signal, err }) => {
    if (err) logger.error({ err }, 'shutting down after an error');
    else logger.info({ signal }, 'draining');
    deps.lifecycle.draining = true;
    overload.stop();
    deps.queues.interruptWaits(); // long polls answer now instead of holding the drain up
    const closingRls = rls?.close(config.http.shutdownGraceMs);
    // A keep-alive connection whose request was still running when close() began goes idle only
    // afterwards, and nothing closes it: the drain waited out its keep-alive timeout
    // (HTTP_KEEP_ALIVE_TIMEOUT_MS, 72 s), past SHUTDOWN_GRACE_MS, so under load every SIGTERM
    // ended in a kill and exit 1 (fastify/fastify#7044, open for 5.12). Close them as they go idle
    // (a Prometheus scrape in flight on the metrics port likewise).
    const sweep = setInterval(() => {
      app.server.closeIdleConnections();
      metricsServer?.closeIdleConnections();
    }, 50);
    await app.close(); // waits for in-flight requests; new ones get 503 + Connection: close
    await closingRls;
    await new Promise<void>((resolve) =>
      metricsServer ? metricsServer.close(() => resolve()) : resolve(),
    );
    clearInterval(sweep);
    await deps.close();
    logger.info('stopped');
  });

  await app.listen({ host: config.host, port: config.port });
  if (config.ratelimit.rlsGrpcPort !== 0) {
    rls = await startRlsServer(
      {
        envoy: deps.envoy,
        verifyApiKey: (presented) => deps.admin.verifyApiKey(presented),
        legacyHeaders: config.ratelimit.legacyHeaders,
        draining: () => deps.lifecycle.draining,
        started: () => deps.redis.everReady(),
        onCall: (code, seconds) => deps.metrics.ratelimit.rlsCall(code, seconds),
        onError: (err) => logger.error({ err }, 'gRPC rate limit service error'),
        maxConnectionAgeMs: config.ratelimit.rlsGrpcMaxConnectionAgeSeconds * 1000,
        anonymousTenant: config.ratelimit.rlsGrpcAnonymousTenant,
        tls: config.ratelimit.rlsGrpcTls && {
          ...config.ratelimit.rlsGrpcTls,
          onLoaded: (expiry) => {
            deps.metrics.ratelimit.rlsTlsLoaded(expiry);
            logger.info(
              { expires: new Date(expiry.server).toISOString() },
              'gRPC rate limit service: TLS certificate loaded',
            );
          },
          onReloadError: (err) => {
            deps.metrics.ratelimit.rlsTlsReloadFailed();
            logger.error(
              { err },
              'gRPC rate limit service: renewed TLS files not loaded; serving the previous certificate',
            );
          },
        },
      },
      config.host,
      config.ratelimit.rlsGrpcPort,
    );
    logger.info(
      {
        port: rls.port,
        tls:
          config.ratelimit.rlsGrpcTls === undefined
            ? 'off'
            : config.ratelimit.rlsGrpcTls.clientCaFile
              ? 'mutual'
              : 'on',
      },
      'gRPC rate limit service (Envoy RLS) listening',
    );
  }
  if (metricsServer) {
    await new Promise<void>((resolve, reject) => {
      metricsServer.once('error', reject);
      metricsServer.listen(config.metricsPort, config.host, () => resolve());
    });
    logger.info({ port: config.metricsPort }, 'metrics listening on /metrics');
  }
  logger.info(
    { mode: config.redis.topology.mode, readFromReplicas: config.redis.readFromReplicas },
    'cache-gateway started',
  );
}

main().catch((err: unknown) => {
  process.stderr.write(
    `cache-gateway: fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
