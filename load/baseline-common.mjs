// What the bare baseline servers share: the Redis client, connected through the same sentinels
// and ACL user as the gateway (REDIS_SENTINELS, REDIS_MASTER_NAME, REDIS_USERNAME,
// REDIS_PASSWORD), and, for the node:http ones, listening on PORT and stopping on SIGTERM.
/* global process, console */
import { Redis } from 'ioredis';

/** A ready ioredis client; `options` are added to the connection options. */
export async function connectBaselineRedis(options = {}) {
  const sentinels = process.env.REDIS_SENTINELS.split(',').map((s) => {
    const [host, port] = s.split(':');
    return { host, port: Number(port) };
  });
  const redis = new Redis({
    sentinels,
    name: process.env.REDIS_MASTER_NAME ?? 'mymaster',
    username: process.env.REDIS_USERNAME,
    password: process.env.REDIS_PASSWORD,
    ...options,
  });
  await new Promise((resolve) => redis.once('ready', resolve));
  return redis;
}

/** Serves a node:http server on 127.0.0.1:PORT until SIGTERM. */
export function listenBaseline(server, redis) {
  server.keepAliveTimeout = 72_000;
  server.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('baseline ready'));
  process.once('SIGTERM', () => {
    server.close();
    redis.disconnect();
    process.exit(0);
  });
}
