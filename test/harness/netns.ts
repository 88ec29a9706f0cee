/**
 * An "island": a network namespace of the test's own, joined to this machine's namespace by two
 * veth links, for partition tests (RELIABILITY.md scenario 4). Everything stays inside this
 * machine: the addresses are from 198.18.0.0/15 (RFC 2544's range for benchmarking network
 * devices, never routed), on interfaces the test creates and deletes.
 *
 *  - The data link carries Redis traffic. `partition()` cuts it both ways with a blackhole route on
 *    each side: packets of open connections vanish (their peers see timeouts, as in a real
 *    partition), new connections are refused at once (EINVAL). `heal()` removes the routes; TCP's
 *    retransmissions carry on what was in flight.
 *  - The client link is never cut: the test process reaches a gateway inside the island over it,
 *    standing for the clients on the island's side.
 *
 * Needs root (CAP_NET_ADMIN) and `ip` from iproute2.
 */
import { execFileSync } from 'node:child_process';
import { programPath } from './topology.js';

export interface Island {
  readonly ns: string;
  /** This namespace's address on the data link: the Redis nodes and sentinels outside bind it. */
  readonly outsideAddr: string;
  /** The island's address on the data link: its Redis node binds it. */
  readonly insideAddr: string;
  /** The island's address on the client link (never cut): its gateway listens there. */
  readonly clientAddr: string;
  /** The argv that runs `bin args` inside the island. */
  command(bin: string, args: readonly string[]): [string, string[]];
  partition(): void;
  heal(): void;
  destroy(): void;
}

const PREFIX = 'cgw-isl-';

function ipPath(): string {
  const ip = programPath('ip');
  if (ip === undefined) {
    throw new Error('`ip` not found: install iproute2 (sudo apt-get install -y iproute2)');
  }
  return ip;
}

function run(ip: string, args: string[]): void {
  try {
    execFileSync(ip, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`ip ${args.join(' ')}: ${stderr || (err as Error).message}`);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Deletes what a killed test run left behind: its namespace and this side's ends of its links. */
function removeLeftovers(ip: string): void {
  const list = execFileSync(ip, ['netns', 'list'], { encoding: 'utf8' });
  for (const line of list.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    if (!name.startsWith(PREFIX)) continue;
    const pid = Number(name.slice(PREFIX.length));
    if (alive(pid)) continue;
    for (const link of [`cgwd${pid}`, `cgwc${pid}`]) {
      try {
        run(ip, ['link', 'del', link]);
      } catch {
        /* gone with the namespace already */
      }
    }
    run(ip, ['netns', 'del', name]);
  }
}

/**
 * Why this process cannot make an island, or undefined when it can: network namespaces need root
 * (CI runs as root; a developer's `npm test` as a plain user skips the partition test).
 */
export function islandUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) {
    return 'network namespaces need root (CAP_NET_ADMIN): run the tests as root to include it';
  }
  return undefined;
}

/** Creates the island (one per process). Its addresses differ per process id. */
export function createIsland(): Island {
  const ip = ipPath();
  removeLeftovers(ip);
  const pid = process.pid;
  const ns = `${PREFIX}${pid}`;
  // Interface names have at most 15 characters; pids at most 7 digits.
  const data = [`cgwd${pid}`, `cgwD${pid}`] as const;
  const client = [`cgwc${pid}`, `cgwC${pid}`] as const;
  // Two /30s of 198.18.0.0/15 per process, from its pid.
  const base = (pid % 16_000) * 8;
  const addr = (offset: number) =>
    `198.${18 + Math.floor((base + offset) / 65_536)}.${Math.floor(((base + offset) % 65_536) / 256)}.${(base + offset) % 256}`;
  const outsideAddr = addr(1);
  const insideAddr = addr(2);
  const clientOutside = addr(5);
  const clientAddr = addr(6);

  const destroy = () => {
    for (const link of [data[0], client[0]]) {
      try {
        run(ip, ['link', 'del', link]);
      } catch {
        /* never created */
      }
    }
    try {
      run(ip, ['netns', 'del', ns]);
    } catch {
      /* never created */
    }
  };

  try {
    run(ip, ['netns', 'add', ns]);
    run(ip, ['-n', ns, 'link', 'set', 'lo', 'up']);
    for (const [[outside, inside], outAddr, inAddr] of [
      [data, outsideAddr, insideAddr],
      [client, clientOutside, clientAddr],
    ] as const) {
      run(ip, ['link', 'add', outside, 'type', 'veth', 'peer', 'name', inside]);
      run(ip, ['link', 'set', inside, 'netns', ns]);
      run(ip, ['addr', 'add', `${outAddr}/30`, 'dev', outside]);
      run(ip, ['-n', ns, 'addr', 'add', `${inAddr}/30`, 'dev', inside]);
      run(ip, ['link', 'set', outside, 'up']);
      run(ip, ['-n', ns, 'link', 'set', inside, 'up']);
    }
  } catch (err) {
    destroy();
    throw err;
  }

  const routes = (verb: 'add' | 'del') => {
    run(ip, ['route', verb, 'blackhole', `${insideAddr}/32`]);
    run(ip, ['-n', ns, 'route', verb, 'blackhole', `${outsideAddr}/32`]);
  };
  let cut = false;
  return {
    ns,
    outsideAddr,
    insideAddr,
    clientAddr,
    command: (bin, args) => [ip, ['netns', 'exec', ns, bin, ...args]],
    partition() {
      if (cut) return;
      routes('add');
      cut = true;
    },
    heal() {
      if (!cut) return;
      routes('del');
      cut = false;
    },
    destroy() {
      if (cut) {
        try {
          routes('del');
        } catch {
          /* the links go with it */
        }
      }
      destroy();
    },
  };
}
