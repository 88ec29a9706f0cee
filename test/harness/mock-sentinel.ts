/**
 * A fake sentinel on loopback, for the answers a real one gives only when something is wrong: a
 * stale master address, no such master, an error, or no answer at all. It speaks just enough RESP
 * for ioredis's sentinel lookups and failover detector and for the gateway's sentinel probe.
 */
import { type AddressInfo, type Server, type Socket, createServer } from 'node:net';
import { HOST } from './topology.js';

/** What the fake answers to `SENTINEL get-master-addr-by-name`. */
export type MockMasterAnswer =
  | { kind: 'master'; host: string; port: number }
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
const array = (items: string[]) => `*${items.length}\r\n${items.map(bulk).join('')}`;

/** Parses the complete RESP arrays of bulk strings at the start of `buf`; returns the rest. */
function parseCommands(buf: Buffer): { commands: string[][]; rest: Buffer } {
  const commands: string[][] = [];
  let at = 0;
  for (;;) {
    const start = at;
    const header = buf.indexOf('\r\n', at);
    if (header < 0 || buf[at] !== 0x2a) return { commands, rest: buf.subarray(start) };
    const n = Number(buf.subarray(at + 1, header).toString());
    at = header + 2;
    const parts: string[] = [];
    for (let i = 0; i < n; i++) {
      const lenEnd = buf.indexOf('\r\n', at);
      if (lenEnd < 0) return { commands, rest: buf.subarray(start) };
      const len = Number(buf.subarray(at + 1, lenEnd).toString());
      if (buf.length < lenEnd + 2 + len + 2) return { commands, rest: buf.subarray(start) };
      parts.push(buf.subarray(lenEnd + 2, lenEnd + 2 + len).toString());
      at = lenEnd + 2 + len + 2;
    }
    commands.push(parts);
  }
}

export async function startMockSentinel(answer: MockMasterAnswer): Promise<MockSentinel> {
  const commands: string[][] = [];
  const sockets = new Set<Socket>();
  const reply = (cmd: string[]): string | undefined => {
    const name = (cmd[0] ?? '').toUpperCase();
    const sub = (cmd[1] ?? '').toLowerCase();
    if (name === 'SENTINEL' && sub === 'get-master-addr-by-name') {
      switch (answer.kind) {
        case 'master':
          return array([answer.host, String(answer.port)]);
        case 'none':
          return '*-1\r\n';
        case 'error':
          return `-${answer.message}\r\n`;
        case 'silent':
          return undefined;
      }
    }
    if (answer.kind === 'silent') return undefined;
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
      const parsed = parseCommands(Buffer.concat([pending, chunk]));
      pending = parsed.rest;
      for (const cmd of parsed.commands) {
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
