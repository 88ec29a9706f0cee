/**
 * Asks every configured sentinel, on a connection of its own every REDIS_SENTINEL_PROBE_INTERVAL_MS,
 * which master it names, and whether it could get a failover authorized now (CKQUORUM).
 *
 * The request path asks the sentinels only when it (re)connects. Between failovers they can all be
 * down, unreachable from this pod, or configured for another master name, and the gateway serves
 * on as if nothing were wrong, until the next reconnect fails and every request is a 503. This
 * makes that visible while there is time to fix it (metrics, alerts, /readyz?verbose, a log line
 * per change).
 *
 * A new connection each time, not a kept one: a reconnect resolves the name and opens a
 * connection too, and that is what must work (a kept connection would hide a DNS name gone stale
 * or a firewall that refuses new connections).
 */
import { Redis } from 'ioredis';

export type SentinelState =
  /** It names a master for our master group. */
  | 'ok'
  /** No connection, or no reply within the timeout. */
  | 'unreachable'
  /** It answered with an error (authentication, ACL). */
  | 'refused'
  /** It does not monitor a master of that name (REDIS_MASTER_NAME differs from its config). */
  | 'unknown-master';

export interface SentinelReport {
  /** `host:port` as configured. */
  readonly sentinel: string;
  readonly state: SentinelState;
  /** The master it names, `host:port`, when ok. */
  readonly master?: string;
  /**
   * When ok: whether, as it sees the other sentinels, enough are usable to reach the quorum and the
   * majority a failover needs (`SENTINEL CKQUORUM`); undefined when it would not say (an ACL).
   */
  readonly quorum?: boolean;
  /** Why it is not ok, or (ok, quorum false) why a failover could not be authorized. */
  readonly detail?: string;
}

/** How to reach the sentinels. */
export interface SentinelAskOptions {
  readonly sentinels: readonly { host: string; port: number }[];
  readonly masterName: string;
  readonly username?: string | undefined;
  readonly password?: string | undefined;
  readonly tls?: { ca?: Buffer } | undefined;
  /** Connect and reply timeout of one probe (REDIS_CONNECT_TIMEOUT_MS, as ioredis's own lookups). */
  readonly timeoutMs: number;
}

export interface SentinelProbeOptions extends SentinelAskOptions {
  readonly intervalMs: number;
  /** After each round, with every sentinel's report, in configuration order. */
  onRound?(reports: readonly SentinelReport[]): void;
  /** A sentinel's state changed (first round: every sentinel not ok). */
  onChange?(report: SentinelReport, previous: SentinelState | undefined): void;
}

export interface SentinelProbe {
  /** Probes every sentinel now (a round in progress is shared, not doubled). */
  probe(): Promise<readonly SentinelReport[]>;
  /** The last round's reports; empty before the first. */
  last(): readonly SentinelReport[];
  stop(): void;
}

/**
 * Whether a failover could happen now: some sentinel says the quorum and majority are reachable
 * (true), every one that said either way says not (false), or none said (undefined).
 */
export function failoverPossible(reports: readonly SentinelReport[]): boolean | undefined {
  const said = reports.flatMap((r) => (r.quorum === undefined ? [] : [r.quorum]));
  return said.length === 0 ? undefined : said.includes(true);
}

/** Distinct masters named by the sentinels that answered: 1 when they agree. */
export function mastersNamed(reports: readonly SentinelReport[]): number {
  return new Set(reports.flatMap((r) => (r.master === undefined ? [] : [r.master]))).size;
}

const sentinelName = (s: { host: string; port: number }) =>
  `${s.host.includes(':') ? `[${s.host}]` : s.host}:${s.port}`;

/** Why a sentinel could not be asked: `refused` (an error reply: authentication, ACL) or not reached. */
class SentinelAskError extends Error {
  constructor(
    readonly state: 'refused' | 'unreachable',
    message: string,
  ) {
    super(message);
  }
}

/** Runs `fn` on a new connection to one sentinel, closed after; rejects with a SentinelAskError. */
async function withSentinel<T>(
  options: SentinelAskOptions,
  s: { host: string; port: number },
  open: Set<Redis>,
  fn: (client: Redis) => Promise<T>,
): Promise<T> {
  const client = new Redis({
    host: s.host,
    port: s.port,
    username: options.username,
    password: options.password,
    tls: options.tls,
    lazyConnect: true,
    connectTimeout: options.timeoutMs,
    commandTimeout: options.timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableReadyCheck: false,
    disableClientInfo: true,
  });
  // ioredis rejects with "Connection is closed." and tells why (ECONNREFUSED, ENOTFOUND, a
  // timeout) only in an 'error' event.
  let cause: Error | undefined;
  client.on('error', (err: Error) => {
    cause ??= err;
  });
  open.add(client);
  try {
    await client.connect();
    return await fn(client);
  } catch (err) {
    if ((err as Error).name === 'ReplyError') {
      throw new SentinelAskError('refused', (err as Error).message);
    }
    throw new SentinelAskError('unreachable', (cause ?? (err as Error)).message);
  } finally {
    open.delete(client);
    client.disconnect();
  }
}

/** What one sentinel says of the master it names, for a caller that must know it is the master. */
export interface SentinelMasterView {
  readonly sentinel: string;
  /** The master's run id as the sentinel last read it (empty right after a failover). */
  readonly runId?: string;
  /** Its replicas that the sentinel holds to be up (no s_down, o_down or disconnected flag). */
  readonly replicas?: number;
  /** Why it did not say, when it did not. */
  readonly detail?: string;
}

const flatToMap = (reply: unknown): Map<string, string> => {
  const m = new Map<string, string>();
  if (Array.isArray(reply)) {
    for (let i = 0; i + 1 < reply.length; i += 2) m.set(String(reply[i]), String(reply[i + 1]));
  }
  return m;
};

/**
 * Asks every sentinel now which master it names (its run id) and how many of that master's
 * replicas it holds to be up (`SENTINEL MASTER`, `SENTINEL REPLICAS`), each on a connection of
 * its own. A master that has not yet learnt that a replica was promoted in its place accepts
 * writes that the promoted one never gets: only the sentinels can tell.
 */
export async function sentinelMasterViews(
  options: SentinelAskOptions,
): Promise<readonly SentinelMasterView[]> {
  const open = new Set<Redis>();
  return Promise.all(
    options.sentinels.map((s) =>
      withSentinel(options, s, open, async (client) => {
        const master = flatToMap(await client.call('SENTINEL', 'MASTER', options.masterName));
        const replicas = await client.call('SENTINEL', 'REPLICAS', options.masterName);
        const up = (Array.isArray(replicas) ? replicas : []).filter((r) => {
          const flags = (flatToMap(r).get('flags') ?? '').split(',');
          return !flags.some((f) => f === 's_down' || f === 'o_down' || f === 'disconnected');
        }).length;
        return { sentinel: sentinelName(s), runId: master.get('runid') ?? '', replicas: up };
      }).catch((err: Error) => ({ sentinel: sentinelName(s), detail: err.message })),
    ),
  );
}

export function startSentinelProbe(options: SentinelProbeOptions): SentinelProbe {
  let last: readonly SentinelReport[] = [];
  let running: Promise<readonly SentinelReport[]> | undefined;
  let stopped = false;
  const open = new Set<Redis>();

  async function probeOne(s: { host: string; port: number }): Promise<SentinelReport> {
    const sentinel = sentinelName(s);
    return withSentinel(options, s, open, async (client): Promise<SentinelReport> => {
      const reply = await client.call('SENTINEL', 'get-master-addr-by-name', options.masterName);
      if (!Array.isArray(reply) || reply.length !== 2) {
        return {
          sentinel,
          state: 'unknown-master',
          detail: `it monitors no master named "${options.masterName}"`,
        };
      }
      const [host, port] = reply as [string, string];
      const master = `${host.includes(':') ? `[${host}]` : host}:${port}`;
      // NOQUORUM: a master that fails now is not replaced (the reply says how many are usable).
      const quorum = await client.call('SENTINEL', 'CKQUORUM', options.masterName).then(
        () => ({ quorum: true }),
        (err: Error) =>
          err.message.startsWith('NOQUORUM') ? { quorum: false, detail: err.message } : {},
      );
      return { sentinel, state: 'ok', master, ...quorum };
    }).catch((err: SentinelAskError): SentinelReport => ({
      sentinel,
      state: err.state,
      detail: err.message,
    }));
  }

  async function round(): Promise<readonly SentinelReport[]> {
    const reports = await Promise.all(options.sentinels.map(probeOne));
    if (stopped) return reports;
    const before = new Map(last.map((r) => [r.sentinel, r.state]));
    last = reports;
    for (const r of reports) {
      const previous = before.get(r.sentinel);
      if (previous !== r.state && (previous !== undefined || r.state !== 'ok')) {
        options.onChange?.(r, previous);
      }
    }
    options.onRound?.(reports);
    return reports;
  }

  function probe(): Promise<readonly SentinelReport[]> {
    running ??= round().finally(() => {
      running = undefined;
    });
    return running;
  }

  void probe();
  const timer = setInterval(() => void probe(), options.intervalMs);
  timer.unref();
  return {
    probe,
    last: () => last,
    stop() {
      stopped = true;
      clearInterval(timer);
      for (const c of open) c.disconnect();
    },
  };
}
