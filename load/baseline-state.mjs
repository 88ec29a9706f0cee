// The baseline for the session and idempotency benchmarks: a bare node:http server that runs the
// gateway's own Lua scripts through ioredis (EVALSHA) and answers JSON. It measures what the
// storage design costs on this machine without the service around it: no auth, no validation,
// no tenants, no problem answers, no metrics, no logging.
//   GET  /session/<id>  the gateway's touch script on the session `bench:session:<id>` (the ones
//                       the benchmark creates through the gateway; every touch writes, as with
//                       the gateway's default SESSION_TOUCH_AFTER_SECONDS=0), answering the hash
//   POST /idem/<key>    the gateway's idempotency `_begin` script on `bare:idem:<key>`, 201
// Connected through the same sentinels as the gateway.
/* global URL, Buffer */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { connectBaselineRedis, listenBaseline } from './baseline-common.mjs';

const redis = await connectBaselineRedis({ enableAutoPipelining: true });

/** A gateway script, with its library file spliced in at `-- @include` as src/redis/scripts.ts does. */
function script(file, include) {
  const read = (f) => readFileSync(new URL(`../src/${f}`, import.meta.url), 'utf8');
  const lua = read(file);
  return include === undefined ? lua : lua.replace('-- @include', read(include));
}
redis.defineCommand('touch', {
  numberOfKeys: 1,
  lua: script('modules/sessions/lua/touch-1.lua', 'modules/sessions/lua/common.lua'),
});
redis.defineCommand('begin', {
  numberOfKeys: 1,
  lua: script('modules/idempotency/lua/begin-1.lua', 'modules/idempotency/lua/common.lua'),
});

const LOCK_MS = 30_000;
const TTL_MS = 300_000;

function answer(res, status, body) {
  const out = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(out),
  });
  res.end(out);
}

const server = createServer((req, res) => {
  const fail = () => res.writeHead(503).end();
  if (req.method === 'GET' && req.url.startsWith('/session/')) {
    const id = req.url.slice('/session/'.length);
    redis.touch(`bench:session:${id}`, Date.now(), 'bench:usess:', id, '1', 0).then((flat) => {
      if (flat === null) return res.writeHead(404).end();
      const session = {};
      for (let i = 0; i < flat.length; i += 2) session[flat[i]] = flat[i + 1];
      answer(res, 200, session);
    }, fail);
    return;
  }
  if (req.method === 'POST' && req.url.startsWith('/idem/')) {
    const key = req.url.slice('/idem/'.length);
    req.resume(); // the body is not used
    req.on('end', () => {
      const token = randomBytes(32).toString('base64url');
      redis
        .begin(`bare:idem:${key}`, Date.now(), token, '', LOCK_MS, TTL_MS)
        .then(([state, tok]) => answer(res, 201, { state, token: tok }), fail);
    });
    return;
  }
  res.writeHead(404).end();
});

listenBaseline(server, redis);
