/**
 * Session and idempotency scenarios: a session read that also slides the expiry (GET
 * ?touch=true) over 1000 live sessions, and `_begin` of a fresh idempotency key on every request
 * (each creates a record and its lock). Each is compared with a bare node:http + ioredis server
 * running the same Lua script on the same keys (load/baseline-state.mjs): the ceiling of the
 * storage design on this machine, without the service around it.
 */
import type { Request } from 'autocannon';
import type { Scenario } from '../types.js';

/** Sessions created before the run (their ids go into the scenario context). */
export const BENCH_SESSIONS = 1000;

let s = 0;
let k = 0;
const run = `${process.pid.toString(36)}-${Date.now().toString(36)}`;

export const stateScenarios: Scenario[] = [
  {
    name: 'baseline session touch (bare node:http + ioredis, the same Lua)',
    id: 'baseline-session-touch',
    target: 'baseline-state',
    request: (ctx) => ({
      method: 'GET',
      path: `/session/${ctx.sessions[0]}`,
      setupRequest: (req: Request): Request => {
        s = (s + 1) % ctx.sessions.length;
        return { ...req, path: `/session/${ctx.sessions[s]}` };
      },
    }),
  },
  {
    name: 'session GET ?touch=true, 1k sessions',
    id: 'session-touch',
    target: 'gateway',
    baseline: 'baseline-session-touch',
    request: (ctx) => ({
      method: 'GET',
      path: `/v1/sessions/${ctx.sessions[0]}?touch=true`,
      headers: ctx.auth,
      setupRequest: (req: Request): Request => {
        s = (s + 1) % ctx.sessions.length;
        return { ...req, path: `/v1/sessions/${ctx.sessions[s]}?touch=true` };
      },
    }),
  },
  {
    name: 'baseline idempotency _begin (bare node:http + ioredis, the same Lua)',
    id: 'baseline-idempotency-begin',
    target: 'baseline-state',
    request: () => ({
      method: 'POST',
      path: `/idem/bench-${run}-0`,
      headers: { 'content-type': 'application/json' },
      body: '{"lockTtl":30,"ttl":300}',
      setupRequest: (req: Request): Request => ({ ...req, path: `/idem/bench-${run}-${++k}` }),
    }),
  },
  {
    name: 'idempotency _begin, fresh key each request',
    id: 'idempotency-begin',
    target: 'gateway',
    baseline: 'baseline-idempotency-begin',
    request: (ctx) => ({
      method: 'POST',
      path: `/v1/idempotency/bench-${run}-0/_begin`,
      headers: { ...ctx.auth, 'content-type': 'application/json' },
      body: '{"lockTtl":30,"ttl":300}',
      setupRequest: (req: Request): Request => ({
        ...req,
        path: `/v1/idempotency/bench-${run}-${++k}/_begin`,
      }),
    }),
  },
];
