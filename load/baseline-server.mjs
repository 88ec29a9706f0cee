// The baseline for the cache benchmark: the least a Fastify + ioredis service can do to serve a
// cached JSON value over HTTP (no auth, no validation, no metrics, no envelope). Connected
// through the same sentinels as the gateway. Plain JS, run with plain node, like dist/main.js.
/* global process, console */
import Fastify from 'fastify';
import { Redis } from 'ioredis';

const sentinels = process.env.REDIS_SENTINELS.split(',').map((s) => {
  const [host, port] = s.split(':');
  return { host, port: Number(port) };
});
const redis = new Redis({
  sentinels,
  name: process.env.REDIS_MASTER_NAME ?? 'mymaster',
  username: process.env.REDIS_USERNAME,
  password: process.env.REDIS_PASSWORD,
});
const app = Fastify({ logger: false });

app.get('/bare/:key', async (request, reply) => {
  const value = await redis.get(`bare:${request.params.key}`);
  if (value === null) return reply.code(404).send({ error: 'miss' });
  return reply.type('application/json').send(value);
});

await new Promise((resolve) => redis.once('ready', resolve));
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT) });
console.log('baseline ready');
process.once('SIGTERM', () => {
  void app.close().then(() => {
    redis.disconnect();
    process.exit(0);
  });
});
