/**
 * A real Redis Sentinel topology on loopback: 1 master, N replicas, M sentinels, each a
 * redis-server / redis-sentinel process on a free port in a temporary directory, with fast failover
 * settings. Nodes can be killed, paused (SIGSTOP) and restarted. Used by the test suite's global
 * setup, the failover tests, the quick start (`npm run local`) and the benchmark.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Island } from './netns.js';

export const HOST = '127.0.0.1';

const DEPLOY = fileURLToPath(new URL('../../deploy/redis/', import.meta.url));
const DEPLOY_REDIS_CONF = join(DEPLOY, 'redis.conf');
const DEPLOY_ACL = join(DEPLOY, 'users.acl');
const DEPLOY_SENTINEL_CONF = join(DEPLOY, 'sentinel.conf');

/** A full-power user for the harness and tests (never in deploy/): inspecting and breaking things. */
export const HARNESS_ADMIN = { username: 'harness', password: 'harness-test-password' } as const;
const HARNESS_ADMIN_ACL = `user ${HARNESS_ADMIN.username} on >${HARNESS_ADMIN.password} ~* &* +@all`;

/** A user's development password from deploy/redis/users.acl. */
export function aclPassword(user: string): string {
  const line = readFileSync(DEPLOY_ACL, 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`user ${user} `));
  const pass = line?.split(' ').find((w) => w.startsWith('>'));
  if (pass === undefined) throw new Error(`deploy/redis/users.acl has no password for ${user}`);
  return pass.slice(1);
}

/** The gateway's login, as deploy/redis/users.acl defines it. */
export const GATEWAY_USER = { username: 'gateway', password: aclPassword('gateway') } as const;

function sentinelAuthFromDeploy(): { user: string; pass: string } {
  const conf = readFileSync(DEPLOY_SENTINEL_CONF, 'utf8');
  const user = /^sentinel auth-user \S+ (\S+)$/m.exec(conf)?.[1];
  const pass = /^sentinel auth-pass \S+ (\S+)$/m.exec(conf)?.[1];
  if (!user || !pass) throw new Error('deploy/redis/sentinel.conf sets no auth-user/auth-pass');
  return { user, pass };
}
const sentinelAuth = sentinelAuthFromDeploy();
export const INSTALL_HINT = 'sudo apt-get install -y redis-server redis-sentinel';

/** Where a program is: on PATH, else in /usr/sbin (a non-root PATH may lack it), else undefined. */
export function programPath(name: string): string | undefined {
  try {
    const found = execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
    if (found !== '') return found;
  } catch {
    // not on PATH
  }
  return existsSync(`/usr/sbin/${name}`) ? `/usr/sbin/${name}` : undefined;
}

/** Returns a message naming what is missing, or undefined when both binaries are installed. */
export function missingRedisBinaries(): string | undefined {
  const missing = ['redis-server', 'redis-sentinel'].filter(
    (bin) => programPath(bin) === undefined,
  );
  if (missing.length === 0) return undefined;
  return `${missing.join(' and ')} not found on PATH. Install them (Debian/Ubuntu): ${INSTALL_HINT}`;
}

/** Ports this process has handed out: the kernel may well offer a just-closed port again. */
const handedOut = new Set<number>();

export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer();
      srv.unref();
      srv.on('error', reject);
      srv.listen(0, HOST, () => {
        const addr = srv.address();
        const p = typeof addr === 'object' && addr ? addr.port : 0;
        srv.close(() => resolve(p));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

export type Resp = string | number | null | Resp[] | Error;

/** Parses one RESP2 value from `buf` at `at`; undefined when more bytes are needed. */
export function parseResp(buf: Buffer, at: number): [Resp, number] | undefined {
  const eol = buf.indexOf('\r\n', at);
  if (eol === -1) return undefined;
  const type = String.fromCharCode(buf[at] as number);
  const line = buf.toString('utf8', at + 1, eol);
  const next = eol + 2;
  switch (type) {
    case '+':
      return [line, next];
    case '-':
      return [new Error(line), next];
    case ':':
      return [Number(line), next];
    case '$': {
      const len = Number(line);
      if (len < 0) return [null, next];
      if (buf.length < next + len + 2) return undefined;
      return [buf.toString('utf8', next, next + len), next + len + 2];
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return [null, next];
      const out: Resp[] = [];
      let pos = next;
      for (let i = 0; i < n; i++) {
        const r = parseResp(buf, pos);
        if (r === undefined) return undefined;
        out.push(r[0]);
        pos = r[1];
      }
      return [out, pos];
    }
    default:
      throw new Error(`unexpected RESP type ${type}`);
  }
}

/** Data nodes need a login (the ACL's default user is off): port -> [user, password]. */
const dataNodeAuth = new Map<number, [string, string]>();
/** Nodes that are not on HOST (a partition test's island): port -> address. */
const nodeHost = new Map<number, string>();

/** A RESP2 array of bulk strings: a command, or an array reply. */
export const encode = (args: string[]) =>
  `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;

/**
 * Sends one command over a raw socket and returns the parsed reply (no client library). On a data
 * node of a harness topology it logs in as the harness's admin user first. Gives up after 1 s:
 * callers poll with it, and a paused node must not hold a poll loop up.
 */
export function rawCommand(port: number, ...args: string[]): Promise<Resp> {
  return rawCommandWithin(1000, port, ...args);
}

/**
 * rawCommand with its own deadline, for a one-off command whose failure fails a test: on a
 * 2-core CI machine under contention a sentinel has been seen to take over a second to answer
 * SENTINEL FAILOVER.
 */
export function rawCommandWithin(
  timeoutMs: number,
  port: number,
  ...args: string[]
): Promise<Resp> {
  const auth = dataNodeAuth.get(port);
  return new Promise((resolve, reject) => {
    const sock = createConnection({ host: nodeHost.get(port) ?? HOST, port });
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`timeout talking to :${port} (${timeoutMs} ms)`));
    }, timeoutMs);
    sock.on('connect', () => {
      sock.write((auth ? encode(['AUTH', ...auth]) : '') + encode(args));
    });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      let r = parseResp(buf, 0);
      if (r !== undefined && auth) r = parseResp(buf, r[1]); // skip the AUTH reply
      if (r !== undefined) {
        clearTimeout(timer);
        sock.end();
        resolve(r[0]);
      }
    });
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** rawCommand for replies that are text. */
export async function rawText(port: number, ...args: string[]): Promise<string> {
  const r = await rawCommand(port, ...args);
  if (r instanceof Error) throw r;
  return typeof r === 'string' ? r : JSON.stringify(r);
}

async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (e) {
      lastErr = e;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(
    `timed out waiting for ${what}${lastErr instanceof Error ? `: ${lastErr.message}` : ''}`,
  );
}

export type NodeKind = 'master' | 'replica' | 'sentinel';

export interface RedisNode {
  readonly name: string;
  readonly kind: NodeKind;
  readonly port: number;
  readonly confFile: string;
  proc: ChildProcess | undefined;
  /** Runs it inside this island. */
  readonly island?: Island;
}

export interface TopologyOptions {
  replicas?: number;
  sentinels?: number;
  masterName?: string;
  downAfterMs?: number;
  failoverTimeoutMs?: number;
  /** Extra lines for every data node's redis.conf. */
  extraRedisConf?: string[];
  /**
   * Starts the master inside this island (test/harness/netns.ts), on its data-link address; the
   * other nodes listen on the outside end of that link too, so the master can reach them.
   */
  island?: Island;
}

export interface Topology {
  readonly dir: string;
  readonly masterName: string;
  readonly master: RedisNode;
  readonly replicas: readonly RedisNode[];
  readonly sentinelNodes: readonly RedisNode[];
  /** host:port list for REDIS_SENTINELS. */
  readonly sentinels: { host: string; port: number }[];
  readonly downAfterMs: number;
  node(name: string): RedisNode;
  /** The last `lines` lines of every node's log, labelled: for the message of a failed test. */
  logTails(lines?: number): string;
  kill(name: string, signal?: NodeJS.Signals): Promise<void>;
  pause(name: string): void;
  resume(name: string): void;
  restart(name: string): Promise<void>;
  /** The master's port as the sentinels see it now. */
  masterPort(): Promise<number>;
  /** Waits until the sentinels name a master other than `oldPort`, and it accepts writes. */
  waitForNewMaster(oldPort: number, timeoutMs?: number): Promise<number>;
  /**
   * Waits until the current master has `count` replicas online (default: every other data
   * node), so that a test starts from a whole topology and not from the last test's resync.
   */
  waitForReplicas(count?: number, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  const killAll = () => {
    for (const p of live) {
      try {
        p.kill('SIGKILL');
      } catch {
        /* already gone */
      }
    }
  };
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      killAll();
      process.kill(process.pid, sig);
    });
  }
}

/** Running: not exited and not killed by a signal (exitCode stays null after a signal). */
function alive(proc: ChildProcess | undefined): proc is ChildProcess {
  return proc !== undefined && proc.exitCode === null && proc.signalCode === null;
}

function launch(node: RedisNode): void {
  const bin = node.kind === 'sentinel' ? 'redis-sentinel' : 'redis-server';
  const [file, args] = node.island
    ? node.island.command(bin, [node.confFile])
    : [bin, [node.confFile]];
  const proc = spawn(file, args, { stdio: 'ignore' });
  proc.on('exit', () => live.delete(proc));
  live.add(proc);
  node.proc = proc;
}

/**
 * Waits until the process launched for `node` answers on its port. Its own process: a port taken
 * by something else in the meantime (say another node, or a client's ephemeral port) answers too,
 * while the launched server failed to bind and exited.
 */
async function waitUp(node: RedisNode): Promise<void> {
  await waitFor(
    `${node.name} on :${node.port}`,
    async () => {
      const proc = node.proc;
      if (proc === undefined) throw new Error(`${node.name} was not launched`);
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`${node.name} exited (${proc.exitCode ?? proc.signalCode})`);
      }
      const info = await rawText(node.port, 'INFO', 'server');
      const pid = /^process_id:(\d+)/m.exec(info)?.[1];
      if (pid !== undefined && pid !== String(proc.pid)) {
        throw new Error(`port ${node.port} is served by another process (pid ${pid})`);
      }
      return pid !== undefined;
    },
    10_000,
  );
}

/** Starts the topology and waits until replicas are in sync and sentinels know each other. */
export async function startTopology(options: TopologyOptions = {}): Promise<Topology> {
  const missing = missingRedisBinaries();
  if (missing) throw new Error(missing);
  installExitHook();
  const replicaCount = options.replicas ?? 2;
  const sentinelCount = options.sentinels ?? 3;
  const masterName = options.masterName ?? 'mymaster';
  const downAfterMs = options.downAfterMs ?? 1000;
  const failoverTimeoutMs = options.failoverTimeoutMs ?? 5000;
  const dir = mkdtempSync(join(tmpdir(), 'cache-gateway-redis-'));

  // The production files from deploy/redis, with only what a loopback test rig must change:
  // ports, paths, loopback binding, quick replica sync; the ACL file gains a test-only admin.
  writeFileSync(
    join(dir, 'users.acl'),
    `${readFileSync(DEPLOY_ACL, 'utf8')}\n${HARNESS_ADMIN_ACL}\n`,
  );
  const island = options.island;
  // With an island, the master listens only there; everything else on loopback and on the outside
  // end of the island's data link (where the master and the sentinels' announcements reach it).
  const binds = island ? `${HOST} ${island.outsideAddr}` : HOST;
  const masterHost = island ? island.insideAddr : HOST;
  const dataConf = (name: string, port: number, replicaOf?: number) =>
    [
      `include ${DEPLOY_REDIS_CONF}`,
      `port ${port}`,
      `bind ${replicaOf === undefined && island ? island.insideAddr : binds}`,
      `dir ${dir}`,
      `aclfile ${join(dir, 'users.acl')}`,
      `logfile ${join(dir, `${name}.log`)}`,
      `pidfile ${join(dir, `${name}.pid`)}`,
      `appendfilename ${name}.aof`,
      `appenddirname ${name}-aof`,
      `dbfilename ${name}.rdb`,
      `maxmemory 256mb`,
      `repl-diskless-sync-delay 0`,
      ...(replicaOf !== undefined ? [`replicaof ${masterHost} ${replicaOf}`] : []),
      ...(options.extraRedisConf ?? []),
    ].join('\n') + '\n';

  const mk = (
    name: string,
    kind: NodeKind,
    port: number,
    conf: string,
    inIsland?: Island,
  ): RedisNode => {
    const confFile = join(dir, `${name}.conf`);
    writeFileSync(confFile, conf);
    if (kind !== 'sentinel')
      dataNodeAuth.set(port, [HARNESS_ADMIN.username, HARNESS_ADMIN.password]);
    if (inIsland) nodeHost.set(port, inIsland.insideAddr);
    return { name, kind, port, confFile, proc: undefined, island: inIsland };
  };

  const masterPort = await freePort();
  const master = mk('master', 'master', masterPort, dataConf('master', masterPort), island);
  const replicas: RedisNode[] = [];
  for (let i = 1; i <= replicaCount; i++) {
    const port = await freePort();
    replicas.push(mk(`replica${i}`, 'replica', port, dataConf(`replica${i}`, port, masterPort)));
  }
  const sentinelNodes: RedisNode[] = [];
  for (let i = 1; i <= sentinelCount; i++) {
    const port = await freePort();
    const conf = [
      `port ${port}`,
      `bind ${binds}`,
      `dir ${dir}`,
      `logfile ${join(dir, `sentinel${i}.log`)}`,
      `sentinel monitor ${masterName} ${masterHost} ${masterPort} ${Math.floor(sentinelCount / 2) + 1}`,
      `sentinel down-after-milliseconds ${masterName} ${downAfterMs}`,
      `sentinel failover-timeout ${masterName} ${failoverTimeoutMs}`,
      `sentinel parallel-syncs ${masterName} 1`,
      // As deploy/redis/sentinel.conf: the sentinels log in to the data nodes as `sentinel`.
      `sentinel auth-user ${masterName} ${sentinelAuth.user}`,
      `sentinel auth-pass ${masterName} ${sentinelAuth.pass}`,
    ].join('\n');
    sentinelNodes.push(mk(`sentinel${i}`, 'sentinel', port, conf + '\n'));
  }

  const all = [master, ...replicas, ...sentinelNodes];
  const lastSeen = new Map<string, string>();
  const tails = (nodes: RedisNode[], lines: number) =>
    nodes
      .map((n) => {
        let text: string;
        try {
          text = readFileSync(join(dir, `${n.name}.log`), 'utf8');
        } catch (e) {
          text = `(no log: ${(e as Error).message})`;
        }
        return `--- ${n.name} :${n.port}\n${text.trimEnd().split('\n').slice(-lines).join('\n')}`;
      })
      .join('\n');
  const stop = async () => {
    const running = all.map((n) => n.proc).filter(alive);
    const exited = running.map((p) => new Promise((r) => p.once('exit', r)));
    for (const p of running) p.kill('SIGKILL');
    await Promise.all(exited);
    // HARNESS_KEEP=1 keeps the nodes' logs and data for a post-mortem (the path goes to stderr).
    if (process.env.HARNESS_KEEP === '1') console.error(`harness topology kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  };

  try {
    launch(master);
    await waitUp(master);
    for (const r of replicas) launch(r);
    await Promise.all(replicas.map(waitUp));
    await Promise.all(
      replicas.map((r) =>
        waitFor(
          `${r.name} in sync`,
          async () =>
            (await rawText(r.port, 'INFO', 'replication')).includes('master_link_status:up'),
          15_000,
        ),
      ),
    );
    for (const s of sentinelNodes) launch(s);
    await Promise.all(sentinelNodes.map(waitUp));
    await Promise.all(
      sentinelNodes.map((s) =>
        waitFor(
          `${s.name} to see ${replicaCount} replicas and ${sentinelCount - 1} other sentinels`,
          async () => {
            const info = await rawText(s.port, 'INFO', 'sentinel');
            lastSeen.set(s.name, /^master0:.*$/m.exec(info)?.[0] ?? info);
            const m = new RegExp(`slaves=(\\d+),sentinels=(\\d+)`).exec(info);
            return m !== null && Number(m[1]) === replicaCount && Number(m[2]) === sentinelCount;
          },
          20_000,
        ),
      ),
    );
  } catch (err) {
    // A topology that did not come up says why: what each sentinel saw last, and the logs.
    const seen = [...lastSeen].map(([name, line]) => `${name}: ${line}`).join('\n');
    const message = `${(err as Error).message}\n${seen}\n${tails(all, 30)}`;
    await stop();
    throw new Error(message);
  }

  const byName = new Map(all.map((n) => [n.name, n]));
  const node = (name: string): RedisNode => {
    const n = byName.get(name);
    if (!n) throw new Error(`no node ${name}`);
    return n;
  };
  const masterPortNow = async (): Promise<number> => {
    for (const s of sentinelNodes) {
      try {
        const reply = await rawCommand(s.port, 'SENTINEL', 'get-master-addr-by-name', masterName);
        const port = Array.isArray(reply) ? Number(reply[1]) : 0;
        if (port > 0) return port;
      } catch {
        /* try the next sentinel */
      }
    }
    throw new Error('no sentinel answered');
  };

  return {
    dir,
    masterName,
    master,
    replicas,
    sentinelNodes,
    sentinels: sentinelNodes.map((s) => ({ host: HOST, port: s.port })),
    downAfterMs,
    node,
    async kill(name, signal = 'SIGKILL') {
      const n = node(name);
      const p = n.proc;
      if (!alive(p)) return;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill(signal);
      await exited;
    },
    pause(name) {
      node(name).proc?.kill('SIGSTOP');
    },
    resume(name) {
      node(name).proc?.kill('SIGCONT');
    },
    async restart(name) {
      const n = node(name);
      if (alive(n.proc)) {
        const p = n.proc;
        const exited = new Promise((r) => p.once('exit', r));
        p.kill('SIGKILL');
        await exited;
      }
      launch(n);
      await waitUp(n);
    },
    logTails(lines = 40) {
      return tails(all, lines);
    },
    masterPort: masterPortNow,
    async waitForNewMaster(oldPort, timeoutMs = 20_000) {
      let port = oldPort;
      await waitFor(
        'a new master',
        async () => {
          port = await masterPortNow();
          if (port === oldPort) return false;
          const role = await rawCommand(port, 'ROLE');
          return Array.isArray(role) && role[0] === 'master';
        },
        timeoutMs,
      );
      return port;
    },
    async waitForReplicas(count = replicaCount, timeoutMs = 30_000) {
      // Settled, not just "a master with replicas": right after its nodes were paused, the
      // sentinels may still be promoting another one (the old master answers with its replicas
      // until the switch), and the new master then has none for seconds (NOREPLICAS). So every
      // sentinel that answers must see its master as plain `master` (no s_down, o_down or
      // failover in progress), all must name the same one, twice in a row 500 ms apart.
      let settledOn = 0;
      await waitFor(
        `${count} replicas online, no failover in progress`,
        async () => {
          const ports = new Set<number>();
          for (const s of sentinelNodes) {
            let reply: Resp;
            try {
              reply = await rawCommand(s.port, 'SENTINEL', 'MASTER', masterName);
            } catch {
              continue; // a paused or stopped sentinel
            }
            if (!Array.isArray(reply)) return false;
            const field = (name: string) => reply[reply.indexOf(name) + 1];
            if (field('flags') !== 'master') return false;
            ports.add(Number(field('port')));
          }
          if (ports.size !== 1) return false;
          const port = [...ports][0] as number;
          const info = await rawText(port, 'INFO', 'replication');
          const ok =
            info.includes('role:master') &&
            (info.match(/^slave\d+:.*state=online/gm) ?? []).length >= count;
          if (!ok || settledOn !== port) {
            settledOn = ok ? port : 0;
            if (ok) await new Promise((r) => setTimeout(r, 500));
            return false;
          }
          return true;
        },
        timeoutMs,
      );
    },
    stop,
  };
}
