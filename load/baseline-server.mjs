// The baseline for the cache benchmark: the least a Fastify + ioredis service can do to serve a
// cached JSON value over HTTP (no auth, no validation, no metrics, no envelope). Connected
// through the same sentinels as the gateway. Plain JS, run with plain node, like dist/main.js.
/* global process, console */
import Fastify from 'fastify';
import { connectBaselineRedis } from './baseline-common.mjs';

const redis = await connectBaselineRedis();
const app = Fastify({ logger: false });

app.get('/bare/:key', async (request, reply) => {
  const value = await redis.get(`bare:${request.params.key}`);
  if (value === null) return reply.code(404).send({ error: 'miss' });
  return reply.type('application/json').send(value);
});

await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT) });
console.log('baseline ready');
process.once('SIGTERM', () => {
  void app.close().then(() => {
    redis.disconnect();
    process.exit(0);
  });
});
