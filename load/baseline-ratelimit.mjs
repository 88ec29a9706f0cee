// The baseline for the rate-limit benchmark: a bare node:http server that reads {"key": ...},
// runs a textbook token-bucket Lua script through ioredis (EVALSHA) and answers JSON. No auth,
// no validation, no policies, no headers, no metrics. Connected through the same sentinels.
// POST /rl: a generous bucket (100 000, refilled 100 per ms), the decision path; POST /rl/flood:
// 10 tokens refilled 1 per second, where a flood is denied (every denial still runs the script).
/* global URL, Buffer */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { connectBaselineRedis, listenBaseline } from './baseline-common.mjs';

const redis = await connectBaselineRedis({ enableAutoPipelining: true });
redis.defineCommand('tokenBucket', {
  numberOfKeys: 1,
  lua: readFileSync(new URL('./baseline-token-bucket.lua', import.meta.url), 'utf8'),
});

const GENEROUS = { prefix: 'bare:rl:', capacity: 100_000, refillPerMs: 100 };
const FLOOD = { prefix: 'bare:rlf:', capacity: 10, refillPerMs: 0.001 };

const server = createServer((req, res) => {
  const bucket = req.url === '/rl/flood' ? FLOOD : GENEROUS;
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
    const { prefix, capacity, refillPerMs } = bucket;
    redis.tokenBucket(prefix + key, capacity, refillPerMs, Date.now(), 1).then(
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
