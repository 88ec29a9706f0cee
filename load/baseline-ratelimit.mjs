// The baseline for the rate-limit benchmark: a bare node:http server that reads {"key": ...},
// runs a textbook token-bucket Lua script through ioredis (EVALSHA) and answers JSON. No auth,
// no validation, no policies, no headers, no metrics. Connected through the same sentinels.
/* global URL, Buffer */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { connectBaselineRedis, listenBaseline } from './baseline-common.mjs';

const redis = await connectBaselineRedis({ enableAutoPipelining: true });
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

listenBaseline(server, redis);
