/**
 * `npm run bench`: builds the gateway, starts a Sentinel topology on loopback, the gateway
 * (dist/main.js with the node flags of `npm start`) and the bare baseline servers as separate
 * processes, then runs every scenario with autocannon and prints req/s, p50, p99 and the ratio
 * to the baseline. Baseline and gateway runs alternate (ROUNDS times each) so that drift on a
 * shared machine hits both.
 *
 * Environment: BENCH_DURATION (s per run, default 10), BENCH_CONNECTIONS (default 32),
 * BENCH_ROUNDS (default 2), BENCH_ONLY (comma-separated scenario ids), BENCH_SKIP_BUILD=1,
 * BENCH_RATE (requests/s for a fixed-rate, open-loop run, see load/paced.ts; default 0 = as fast
 * as possible with autocannon). BENCH_WARMUP (s, default 3): before anything is measured, every
 * server runs every selected scenario that long, closed loop, unmeasured (a cold process taking
 * 10K req/s at once falls behind while V8 compiles and queues seconds of requests: at a fixed rate
 * that start-up backlog alone set the p99 of earlier runs); 0 measures cold processes.
 * BENCH_AB=<dir>: compare this build with another checkout's (its dist/ built): both gateways run
 * on the same topology and each gateway scenario drives both at once, so the host's drift hits
 * both alike; the table gives each one's CPU per request and their difference, round by round.
 * On a shared host this resolves changes of a few µs per request that alternating runs cannot.
 * BENCH_AB_FLAGS: node flags for the other build instead of this one's (`BENCH_AB=.
 * BENCH_AB_FLAGS=` compares this build with and without the flags of `npm start`).
 * GW_FLAGS, BASE_FLAGS: more node flags for the gateway, and for the bare rate-limit baseline
 * (`--cpu-prof --cpu-prof-dir=/tmp/prof` profiles both alike).
 * Loopback only; every run is bounded by its duration. Results: load/results/<timestamp>.json.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import { GATEWAY_USER, HARNESS_ADMIN, freePort, startTopology } from '../test/harness/topology.js';
import { SLOW_MS, runPaced } from './paced.js';
import { BIG_VALUE, VALUE, cacheScenarios } from './scenarios/cache.js';
import { type OneShotResult, benchInvalidate } from './scenarios/invalidate.js';
import {
  BENCH_POLICIES_FILE,
  RATELIMIT_POLICIES,
  ratelimitScenarios,
} from './scenarios/ratelimit.js';
import { benchRls } from './scenarios/rls.js';
import { QUEUE_GROUPS, benchQueues, queueScenarios } from './scenarios/queues.js';
import { BENCH_SESSIONS, stateScenarios } from './scenarios/state.js';
import type { Scenario, ScenarioContext } from './types.js';

const DURATION = Number(process.env.BENCH_DURATION ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const ONLY = process.env.BENCH_ONLY?.split(',').filter(Boolean);
const RATE = Number(process.env.BENCH_RATE ?? 0);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 3);
const AB_DIR = process.env.BENCH_AB === undefined ? undefined : resolve(process.env.BENCH_AB);

const scenarios: Scenario[] = [
  ...cacheScenarios,
  ...ratelimitScenarios,
  ...stateScenarios,
  ...queueScenarios,
];
/** Extra gateway environment, `NAME=value,NAME=value` (e.g. REQUEST_QUOTA_PER_MINUTE=0). */
const GW_ENV = Object.fromEntries(
  (process.env.BENCH_GW_ENV ?? '')
    .split(',')
    .filter(Boolean)
    .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
);

/** CPU time (user + system) a process has used, in microseconds, from /proc (Linux). */
function cpuMicros(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]); // utime + stime, in clock ticks (100/s)
    return ticks * 10_000;
  } catch {
    return NaN;
  }
}

/** Write syscalls a process has made (/proc/<pid>/io `syscw`): socket writes, for us. */
function writeCalls(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    return Number(/^syscw: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1]);
  } catch {
    return NaN;
  }
}

/** CPU time (user + system) the Redis master has used, in microseconds (INFO cpu). */
async function redisCpuMicros(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1]);
  return (field('used_cpu_user') + field('used_cpu_sys')) * 1e6;
}

/**
 * Fixed-rate runs: Redis's own latency monitor (`latency-monitor-threshold 1` on the master and
 * the replicas), reset before a run and read after it, so a tail can be told from a Redis stall.
 */
async function redisWorstLatency(nodes: { name: string; redis: Redis }[]): Promise<string> {
  let worst = { ms: 0, what: '' };
  for (const { name, redis } of nodes) {
    const events = (await redis.call('LATENCY', 'LATEST')) as [string, number, number, number][];
    for (const [event, , , max] of events) {
      if (max > worst.ms) worst = { ms: max, what: `${event} on the ${name}` };
    }
  }
  return worst.ms === 0 ? 'no event over 1 ms' : `worst event ${worst.ms} ms, ${worst.what}`;
}

interface Measured {
  id: string;
  name: string;
  /** CPU µs the serving process spent per request: steadier than req/s on a shared machine. */
  cpuPerReq: number[];
  /** CPU µs the Redis master spent per request (it shares the machine's cores too). */
  redisCpuPerReq: number[];
  /** CPU µs both replicas together spent per request: what replicating the writes costs. */
  replicaCpuPerReq: number[];
  /** Write syscalls of the serving process per request (the answer, plus its Redis writes). */
  writesPerReq: number[];
  /**
   * CPU µs this process (the load generator) spent per request: it shares the cores too, and an
   * answer with more headers costs it more to parse, which lowers every req/s it measures.
   */
  generatorCpuPerReq: number[];
  rps: number[];
  p50: number[];
  p99: number[];
  non2xx: number;
  errors: number;
}

function spawnNode(args: string[], env: Record<string, string>, cwd?: string): ChildProcess {
  const child = spawn(process.execPath, args, {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  process.on('exit', () => child.kill('SIGKILL'));
  return child;
}

async function waitHttp(url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url);
      if (res.status < 500) return;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} did not come up`);
}

async function call(
  base: string,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: unknown,
) {
  const res = await fetch(base + path, {
    method,
    headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res.json() as Promise<Record<string, unknown>>;
}

/** What one run of a scenario measured, whichever load generator ran it. */
interface RunResult {
  total: number;
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
}

/**
 * One run: as fast as 32 connections go (autocannon, closed loop), or at BENCH_RATE requests/s
 * (load/paced.ts, open loop: autocannon's own rate mode sends each second's share in a burst).
 */
async function run(
  url: string,
  s: Scenario,
  ctx: ScenarioContext,
  quiet = false,
  seconds = DURATION,
): Promise<RunResult> {
  if (RATE > 0) {
    const r = await runPaced({
      url,
      rate: RATE,
      durationSeconds: seconds,
      connections: CONNECTIONS,
      request: s.request(ctx),
    });
    const { count, firstS, lastS } = r.slow;
    console.log(
      `  ${Math.round(r.rps)} req/s, p50 ${r.latency.p50} ms, p90 ${r.latency.p90} ms, p99 ${r.latency.p99} ms, max ${r.latency.max} ms` +
        `, ${count} answers over ${SLOW_MS} ms` +
        (count > 0 ? ` (sent ${firstS.toFixed(1)}–${lastS.toFixed(1)} s into the run)` : '') +
        `; the generator's longest stall ${r.generatorMaxGapMs} ms` +
        (r.unanswered > 0 ? `, ${r.unanswered} unanswered` : ''),
    );
    return {
      total: r.total,
      rps: r.rps,
      p50: r.latency.p50,
      p99: r.latency.p99,
      non2xx: r.non2xx,
      // Requests still queued at the end are not failures: the achieved req/s shows the shortfall.
      errors: r.errors,
    };
  }
  const r = await runAutocannon(url, s, ctx, quiet, seconds);
  return {
    total: r.requests.total,
    rps: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
  };
}

function runAutocannon(
  url: string,
  s: Scenario,
  ctx: ScenarioContext,
  quiet: boolean,
  seconds: number,
): Promise<autocannon.Result> {
  const r = s.request(ctx);
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: url + r.path,
        method: r.method,
        headers: r.headers,
        body: r.body,
        ...(r.setupRequest
          ? {
              requests: [
                {
                  method: r.method,
                  path: r.path,
                  headers: r.headers,
                  body: r.body,
                  setupRequest: r.setupRequest,
                },
              ],
            }
          : {}),
        connections: CONNECTIONS,
        duration: seconds,
        title: s.name,
      },
      (err: Error | null, result) => (err ? reject(err) : resolve(result)),
    );
    autocannon.track(instance, {
      renderProgressBar: !quiet,
      renderResultsTable: false,
      renderLatencyTable: false,
    });
  });
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

interface Target {
  url: string;
  pid: number | undefined;
}

/**
 * BENCH_AB: each round runs every scenario against both gateways at once (which one is started
 * first alternates by round) and takes each process's CPU per request. Reported: the medians, the
 * median of the per-round differences, and in how many rounds this build used less.
 */
async function compareBuilds(
  selected: Scenario[],
  ctx: ScenarioContext,
  self: Target,
  other: Target,
): Promise<void> {
  const load = RATE > 0 ? `${RATE} req/s each` : `${CONNECTIONS} connections each`;
  const per = new Map<
    string,
    { self: number[]; other: number[]; selfRps: number[]; otherRps: number[]; failed: number }
  >();
  // Both processes warm up (JIT, pools, caches) on every scenario before anything is measured.
  if (WARMUP > 0) {
    console.log(`\nwarming up both gateways (${WARMUP} s per scenario) ...`);
    for (const s of selected)
      await Promise.all([self, other].map((t) => runAutocannon(t.url, s, ctx, true, WARMUP)));
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const s of selected) {
      console.log(`\n${s.name}: this build and ${AB_DIR} at once (${DURATION} s, ${load})`);
      const sides = round % 2 === 0 ? [self, other] : [other, self];
      const cpu0 = sides.map((t) => cpuMicros(t.pid));
      const results = await Promise.all(sides.map((t) => run(t.url, s, ctx, true)));
      const cpu = sides.map(
        (t, i) => (cpuMicros(t.pid) - (cpu0[i] as number)) / Math.max(1, results[i]?.total ?? 0),
      );
      const m = per.get(s.id) ?? { self: [], other: [], selfRps: [], otherRps: [], failed: 0 };
      const [mine, theirs] = sides[0] === self ? [0, 1] : [1, 0];
      m.self.push(cpu[mine] as number);
      m.other.push(cpu[theirs] as number);
      m.selfRps.push(results[mine]?.rps ?? 0);
      m.otherRps.push(results[theirs]?.rps ?? 0);
      for (const r of results) m.failed += r.non2xx + r.errors;
      per.set(s.id, m);
      console.log(
        `  CPU µs/req: this ${(cpu[mine] as number).toFixed(1)}, other ${(cpu[theirs] as number).toFixed(1)}`,
      );
    }
  }
  const rows = [...per.entries()].map(([id, m]) => {
    const diffs = m.self.map((x, i) => x - (m.other[i] as number));
    return {
      id,
      'this CPU µs/req': Number(median(m.self).toFixed(1)),
      'other CPU µs/req': Number(median(m.other).toFixed(1)),
      'this − other µs': Number(median(diffs).toFixed(1)),
      'rounds this lower': `${diffs.filter((d) => d < 0).length}/${diffs.length}`,
      'per round': diffs.map((d) => d.toFixed(1)).join(' / '),
      'this req/s': Math.round(median(m.selfRps)),
      'other req/s': Math.round(median(m.otherRps)),
      'non-2xx + errors': m.failed,
    };
  });
  console.log(`\nThis build against ${AB_DIR} (${ROUNDS} rounds of ${DURATION} s, ${load})`);
  console.table(rows);
  mkdirSync('load/results', { recursive: true });
  const file = `load/results/ab-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
  writeFileSync(
    file,
    JSON.stringify(
      { at: new Date().toISOString(), other: AB_DIR, durationSeconds: DURATION, rate: RATE, rows },
      null,
      2,
    ) + '\n',
  );
  console.log(`written to ${file}`);
  if (rows.some((r) => r['non-2xx + errors'] > 0)) process.exitCode = 1;
}

async function main(): Promise<void> {
  if (process.env.BENCH_SKIP_BUILD !== '1') {
    console.log('building dist/ ...');
    execFileSync('npm', ['run', '-s', 'build'], { stdio: 'inherit' });
  }
  console.log('starting Redis (1 master, 2 replicas, 3 sentinels) ...');
  const topology = await startTopology();
  const children: ChildProcess[] = [];
  try {
    const sentinels = topology.sentinels.map((s) => `${s.host}:${s.port}`).join(',');
    const gwPort = await freePort();
    const basePort = await freePort();
    const rlBasePort = await freePort();
    const stateBasePort = await freePort();
    const rlsPort = await freePort();
    const policiesFile = join(mkdtempSync(join(tmpdir(), 'bench-')), 'policies.yaml');
    writeFileSync(policiesFile, BENCH_POLICIES_FILE);
    const adminToken = randomBytes(16).toString('hex');
    // Node flags as deployed (`npm start`, the Dockerfile's CMD), then any from GW_FLAGS.
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: { start: string } };
    const gwFlags = [
      ...pkg.scripts.start.split(' ').filter((a) => a.startsWith('--')),
      ...(process.env.GW_FLAGS ?? '').split(' ').filter(Boolean),
    ];
    const gwEnv = {
      HOST: '127.0.0.1',
      METRICS_PORT: '0',
      REDIS_SENTINELS: sentinels,
      REDIS_USERNAME: GATEWAY_USER.username,
      REDIS_PASSWORD: GATEWAY_USER.password,
      ADMIN_TOKEN: adminToken,
      LOG_LEVEL: 'warn',
      // The per-key quota stays on (its cost is part of every request) but out of the way.
      REQUEST_QUOTA_PER_MINUTE: '100000000',
      ...GW_ENV,
    };
    children.push(
      // The policies file (envoy domain) and the gRPC service only here: BENCH_AB's other build
      // may predate both.
      spawnNode([...gwFlags, 'dist/main.js'], {
        ...gwEnv,
        PORT: String(gwPort),
        RATELIMIT_POLICIES_FILE: policiesFile,
        RLS_GRPC_PORT: String(rlsPort),
      }),
      spawnNode(['load/baseline-server.mjs'], {
        PORT: String(basePort),
        REDIS_SENTINELS: sentinels,
        REDIS_USERNAME: GATEWAY_USER.username,
        REDIS_PASSWORD: GATEWAY_USER.password,
      }),
      spawnNode(
        [
          ...(process.env.BASE_FLAGS ?? '').split(' ').filter(Boolean),
          'load/baseline-ratelimit.mjs',
        ],
        {
          PORT: String(rlBasePort),
          REDIS_SENTINELS: sentinels,
          REDIS_USERNAME: GATEWAY_USER.username,
          REDIS_PASSWORD: GATEWAY_USER.password,
        },
      ),
      spawnNode(['load/baseline-state.mjs'], {
        PORT: String(stateBasePort),
        REDIS_SENTINELS: sentinels,
        REDIS_USERNAME: GATEWAY_USER.username,
        REDIS_PASSWORD: GATEWAY_USER.password,
      }),
    );
    const [gwChild, baseChild, rlBaseChild, stateBaseChild] = children;
    const gw = `http://127.0.0.1:${gwPort}`;
    const targets: Record<Scenario['target'], { url: string; pid: number | undefined }> = {
      gateway: { url: gw, pid: gwChild?.pid },
      baseline: { url: `http://127.0.0.1:${basePort}`, pid: baseChild?.pid },
      'baseline-ratelimit': { url: `http://127.0.0.1:${rlBasePort}`, pid: rlBaseChild?.pid },
      'baseline-state': { url: `http://127.0.0.1:${stateBasePort}`, pid: stateBaseChild?.pid },
    };
    await Promise.all([
      waitHttp(`${gw}/readyz`),
      waitHttp(`${targets.baseline.url}/bare/none`),
      waitHttp(`${targets['baseline-ratelimit'].url}/`),
      waitHttp(`${targets['baseline-state'].url}/`),
    ]);

    const admin = { authorization: `Bearer ${adminToken}` };
    await call(gw, 'POST', '/v1/admin/tenants', admin, { id: 'bench' });
    const created = await call(gw, 'POST', '/v1/admin/tenants/bench/keys', admin, {
      scopes: [
        'cache:read',
        'cache:write',
        'ratelimit:check',
        'session:read',
        'session:write',
        'idempotency:use',
        'queue:publish',
        'queue:consume',
        'queue:admin',
      ],
    });
    for (const [name, definition] of Object.entries(RATELIMIT_POLICIES)) {
      await call(gw, 'PUT', `/v1/admin/tenants/bench/policies/${name}`, admin, definition);
    }
    const auth = { authorization: `Bearer ${String(created.key)}` };
    const sessions: string[] = [];
    for (let i = 0; i < BENCH_SESSIONS; i++) {
      const made = await call(gw, 'POST', '/v1/sessions', auth, {
        userId: `bench-user-${i % 100}`,
        data: { cart: ['sku-1', 'sku-2'], theme: 'dark', n: i },
        metadata: { ip: '127.0.0.1' },
      });
      sessions.push(String(made.sessionId));
    }
    const ctx: ScenarioContext = { auth, sessions };
    for (const { queue, group } of QUEUE_GROUPS) {
      await call(gw, 'PUT', `/v1/queues/${queue}/groups/${group}`, auth, {});
    }
    await call(gw, 'PUT', '/v1/cache/bench%3Ahit', ctx.auth, { value: VALUE, ttl: 3600 });
    await call(gw, 'PUT', '/v1/cache/bench%3Abig', ctx.auth, { value: BIG_VALUE, ttl: 3600 });
    await call(gw, 'POST', '/v1/cache/_mset', ctx.auth, {
      items: Array.from({ length: 10 }, (_, i) => ({
        key: `bench:m${i}`,
        value: { ...VALUE, id: i },
        ttl: 3600,
      })),
    });
    const selected = scenarios.filter((s) => ONLY === undefined || ONLY.includes(s.id));

    if (AB_DIR !== undefined) {
      // Two fresh gateways, this build's and the other's, on the same topology (they find the
      // tenant, key and data made above): neither did the setup, so neither carries its state.
      const fresh = async (dir: string, flags: string[]): Promise<Target> => {
        const port = await freePort();
        const child = spawnNode(
          [...flags, `${dir}/dist/main.js`],
          { ...gwEnv, PORT: String(port) },
          dir,
        );
        children.push(child);
        const url = `http://127.0.0.1:${port}`;
        await waitHttp(`${url}/readyz`);
        return { url, pid: child.pid };
      };
      // BENCH_AB_FLAGS: other node flags for the other build (compare runtime settings).
      const otherFlags = process.env.BENCH_AB_FLAGS?.split(' ').filter(Boolean) ?? gwFlags;
      const [self, other] = await Promise.all([
        fresh(process.cwd(), gwFlags),
        fresh(AB_DIR, otherFlags),
      ]);
      await compareBuilds(
        selected.filter((s) => s.target === 'gateway'),
        ctx,
        self,
        other,
      );
      return;
    }
    const direct = new Redis({
      host: '127.0.0.1',
      port: await topology.masterPort(),
      username: HARNESS_ADMIN.username,
      password: HARNESS_ADMIN.password,
    });
    await direct.set('bare:hit', JSON.stringify({ key: 'hit', value: VALUE, ttl: 3600 }));
    const replicaClients = topology.replicas.map(
      (n) =>
        new Redis({
          host: '127.0.0.1',
          port: n.port,
          username: HARNESS_ADMIN.username,
          password: HARNESS_ADMIN.password,
        }),
    );
    const replicaCpuMicros = async () =>
      (await Promise.all(replicaClients.map(redisCpuMicros))).reduce((a, b) => a + b, 0);
    const dataNodes = [
      { name: 'master', redis: direct },
      ...replicaClients.map((redis, i) => ({ name: `replica ${i + 1}`, redis })),
    ];
    if (RATE > 0) {
      for (const { redis } of dataNodes) {
        await redis.config('SET', 'latency-monitor-threshold', '1');
      }
    }

    // No row measures a cold process (see BENCH_WARMUP above).
    if (WARMUP > 0) {
      console.log(
        `\nwarming up every server on every scenario (${WARMUP} s each, not measured) ...`,
      );
      for (const s of selected) await runAutocannon(targets[s.target].url, s, ctx, true, WARMUP);
    }
    // Baseline-compared scenarios alternate with their baseline; the rest run once per round too.
    const plan: Scenario[] = [];
    for (let round = 0; round < ROUNDS; round++) plan.push(...selected);
    const results = new Map<string, Measured>();
    for (const s of plan) {
      const { url, pid } = targets[s.target];
      console.log(`\n${s.name} (${DURATION} s, ${CONNECTIONS} connections)`);
      const cpu0 = cpuMicros(pid);
      const writes0 = writeCalls(pid);
      const redis0 = await redisCpuMicros(direct);
      const replicas0 = await replicaCpuMicros();
      const gen0 = process.cpuUsage();
      if (RATE > 0) for (const { redis } of dataNodes) await redis.call('LATENCY', 'RESET');
      const r = await run(url, s, ctx);
      const gen = process.cpuUsage(gen0);
      if (RATE > 0) console.log(`  Redis latency monitor: ${await redisWorstLatency(dataNodes)}`);
      const cpu1 = cpuMicros(pid);
      const writes1 = writeCalls(pid);
      const redis1 = await redisCpuMicros(direct);
      const replicas1 = await replicaCpuMicros();
      const m = results.get(s.id) ?? {
        id: s.id,
        name: s.name,
        cpuPerReq: [],
        redisCpuPerReq: [],
        replicaCpuPerReq: [],
        writesPerReq: [],
        generatorCpuPerReq: [],
        rps: [],
        p50: [],
        p99: [],
        non2xx: 0,
        errors: 0,
      };
      m.cpuPerReq.push((cpu1 - cpu0) / Math.max(1, r.total));
      m.redisCpuPerReq.push((redis1 - redis0) / Math.max(1, r.total));
      m.replicaCpuPerReq.push((replicas1 - replicas0) / Math.max(1, r.total));
      m.writesPerReq.push((writes1 - writes0) / Math.max(1, r.total));
      m.generatorCpuPerReq.push((gen.user + gen.system) / Math.max(1, r.total));
      m.rps.push(r.rps);
      m.p50.push(r.p50);
      m.p99.push(r.p99);
      m.non2xx += r.non2xx;
      m.errors += r.errors;
      results.set(s.id, m);
    }

    const rows = [...results.values()].map((m) => {
      const s = scenarios.find((x) => x.id === m.id) as Scenario;
      const ref = s.baseline ? results.get(s.baseline) : undefined;
      const rps = median(m.rps);
      // Each round's gateway run is compared with the baseline run just before it; the median of
      // those ratios resists the drift of a shared machine better than a ratio of medians.
      const ratios = ref ? m.rps.map((x, i) => x / (ref.rps[i] ?? ref.rps[0] ?? x)) : [];
      const cpuRatios = ref ? m.cpuPerReq.map((x, i) => (ref.cpuPerReq[i] ?? x) / x) : [];
      return {
        scenario: m.name,
        id: m.id,
        'req/s': Math.round(rps),
        'p50 ms': Number(median(m.p50).toFixed(2)),
        'p99 ms': Number(median(m.p99).toFixed(2)),
        'CPU µs/req': Math.round(median(m.cpuPerReq)),
        'Redis µs/req': Math.round(median(m.redisCpuPerReq)),
        'replicas µs/req': Math.round(median(m.replicaCpuPerReq)),
        'writes/req': Number(median(m.writesPerReq).toFixed(2)),
        'generator µs/req': Math.round(median(m.generatorCpuPerReq)),
        'vs baseline': ref ? `${median(ratios).toFixed(2)}x` : '',
        'CPU vs baseline': ref ? `${median(cpuRatios).toFixed(2)}x` : '',
        'non-2xx': m.non2xx,
        errors: m.errors,
        runs: m.rps.map((x) => Math.round(x)).join(' / '),
      };
    });
    console.log(
      `\nResults (median of ${ROUNDS} runs of ${DURATION} s, ${CONNECTIONS} connections, node ${process.version}, ${cpus().length} cores)`,
    );
    console.table(rows);
    const oneShots: OneShotResult[] = [];
    if (ONLY === undefined || ONLY.some((id) => id.startsWith('invalidate'))) {
      console.log('\n_invalidate of 10 000 keys ...');
      oneShots.push(...(await benchInvalidate(gw, ctx, direct)));
      console.table(oneShots);
    }
    for (const leases of [false, true]) {
      const id = leases ? 'ratelimit-rls-lease' : 'ratelimit-rls';
      if (ONLY !== undefined && !ONLY.includes(id)) continue;
      console.log(
        `\ngRPC rate limit service${leases ? ', leases' : ''} (${DURATION} s, ${CONNECTIONS} calls in flight) ...`,
      );
      oneShots.push(
        ...(await benchRls({
          port: rlsPort,
          apiKey: auth.authorization.slice('Bearer '.length),
          seconds: DURATION,
          concurrency: CONNECTIONS,
          leases,
          gatewayCpu: () => cpuMicros(gwChild?.pid),
        })),
      );
      console.table(oneShots);
    }
    if (ONLY === undefined || ONLY.some((id) => id.startsWith('queue'))) {
      console.log('\nqueues: publish, receive + ack, long-poll wake-up ...');
      oneShots.push(...(await benchQueues(gw, ctx)));
      console.table(oneShots);
    }
    direct.disconnect();
    for (const c of replicaClients) c.disconnect();
    mkdirSync('load/results', { recursive: true });
    const file = `load/results/${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
    writeFileSync(
      file,
      JSON.stringify(
        {
          at: new Date().toISOString(),
          node: process.version,
          cpus: cpus().length,
          cpuModel: cpus()[0]?.model,
          memoryBytes: totalmem(),
          durationSeconds: DURATION,
          connections: CONNECTIONS,
          rounds: ROUNDS,
          rows,
          oneShots,
        },
        null,
        2,
      ) + '\n',
    );
    console.log(`written to ${file}`);
    const bad = rows.filter((r) => r['non-2xx'] > 0 || r.errors > 0);
    if (bad.length > 0) {
      console.error(`some runs had failures: ${bad.map((r) => r.id).join(', ')}`);
      process.exitCode = 1;
    }
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await topology.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
