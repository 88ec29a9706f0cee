/**
 * A fake sentinel on loopback, for the answers a real one gives only when something is wrong: a
 * stale master address, no such master, an error, or no answer at all. It speaks just enough RESP
 * for ioredis's sentinel lookups and failover detector and for the gateway's sentinel probe.
 */
import { type AddressInfo, type Server, type Socket, createServer } from 'node:net';
import { HOST, encode, parseResp } from './topology.js';

/** What the fake answers to `SENTINEL get-master-addr-by-name`. */
export type MockMasterAnswer =
  /** `noQuorum`: CKQUORUM says too few sentinels are usable for a failover. */
  | { kind: 'master'; host: string; port: number; noQuorum?: boolean }
  | { kind: 'none' }
  | { kind: 'error'; message: string }
  | { kind: 'silent' };

export interface MockSentinel {
  readonly host: string;
  readonly port: number;
  /** Every command received, upper-cased name first. */
  readonly commands: string[][];
  close(): Promise<void>;
}

const bulk = (s: string) => `$${Buffer.byteLength(s)}\r\n${s}\r\n`;

export async function startMockSentinel(answer: MockMasterAnswer): Promise<MockSentinel> {
  const commands: string[][] = [];
  const sockets = new Set<Socket>();
  const reply = (cmd: string[]): string | undefined => {
    const name = (cmd[0] ?? '').toUpperCase();
    const sub = (cmd[1] ?? '').toLowerCase();
    if (name === 'SENTINEL' && sub === 'get-master-addr-by-name') {
      switch (answer.kind) {
        case 'master':
          return encode([answer.host, String(answer.port)]);
        case 'none':
          return '*-1\r\n';
        case 'error':
          return `-${answer.message}\r\n`;
        case 'silent':
          return undefined;
      }
    }
    if (answer.kind === 'silent') return undefined;
    if (name === 'SENTINEL' && sub === 'ckquorum') {
      return answer.kind === 'master' && answer.noQuorum === true
        ? '-NOQUORUM 1 usable Sentinels. Not enough available Sentinels to reach the specified quorum for this master. Not enough available Sentinels to reach the majority and authorize a failover\r\n'
        : '+OK 3 usable Sentinels. Quorum and failover authorization can be reached\r\n';
    }
    if (name === 'SENTINEL') return '*0\r\n'; // `sentinels`, `replicas`: none known
    if (name === 'SUBSCRIBE' || name === 'PSUBSCRIBE') {
      return cmd
        .slice(1)
        .map((ch, i) => `*3\r\n${bulk(name.toLowerCase())}${bulk(ch)}:${i + 1}\r\n`)
        .join('');
    }
    return '+OK\r\n';
  };
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let pending: Buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      for (
        let parsed = parseResp(pending, 0);
        parsed !== undefined;
        parsed = parseResp(pending, 0)
      ) {
        pending = pending.subarray(parsed[1]);
        const cmd = (parsed[0] as string[]).map(String);
        commands.push([(cmd[0] ?? '').toUpperCase(), ...cmd.slice(1)]);
        const r = reply(cmd);
        if (r !== undefined) socket.write(r);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: HOST,
    port,
    commands,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
