// The baseline for the rate-limit benchmark: a bare node:http server that reads {"key": ...},
// runs a textbook token-bucket Lua script through ioredis (EVALSHA) and answers JSON. No auth,
// no validation, no policies, no headers, no metrics. Connected through the same sentinels.
/* global process, console, URL, Buffer */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
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
  enableAutoPipelining: true,
});
redis.defineCommand('tokenBucket', {
  numberOfKeys: 1,
  lua: readFileSync(new URL('./baseline-token-bucket.lua', import.meta.url), 'utf8'),
});

const CAPACITY = 100_000;
const REFILL_PER_MS = 100;

const server = createServer((req, res) => {
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (d) => (body += d));
  req.on('end', () => {
    let key;
    try {
      key = JSON.parse(body).key;
    } catch {
      res.writeHead(400).end();
      return;
    }
    redis.tokenBucket(`bare:rl:${key}`, CAPACITY, REFILL_PER_MS, Date.now(), 1).then(
      ([allowed, remaining]) => {
        const out = JSON.stringify({ allowed: allowed === 1, remaining });
        res.writeHead(200, {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(out),
        });
        res.end(out);
      },
      () => res.writeHead(503).end(),
    );
  });
});

await new Promise((resolve) => redis.once('ready', resolve));
server.keepAliveTimeout = 72_000;
server.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('baseline ready'));
process.once('SIGTERM', () => {
  server.close();
  redis.disconnect();
  process.exit(0);
});
