/**
 * An open-loop load generator for fixed-rate runs (BENCH_RATE): request i is due at
 * start + i / rate, whatever happened to the requests before it. A timer releases the due
 * requests every millisecond, and each one's latency runs from its release to the end of its
 * answer. A request that finds every connection busy waits for one, and the wait counts: this is
 * the latency a client sending at that rate would see (a stalled server makes requests queue up
 * here, so they are not omitted). What is not counted: the generator's own timer lateness.
 *
 * Why not autocannon's `overallRate`: it lets each connection send up to rate/connections
 * requests as fast as it can at the start of every second and then pause, so a "5 000 req/s" run
 * is a closed-loop burst at full speed for part of each second (and its coordinated-omission
 * correction then assumes a 1 ms interval per connection). Its p99 describes those bursts, not a
 * steady rate. Here requests are released every millisecond (rate / 1000 at a time).
 *
 * HTTP/1.1 over keep-alive sockets, one request in flight per socket; answers must carry
 * Content-Length (every server the bench measures sends it). Loopback only, bounded in time.
 */
import { type Socket, connect } from 'node:net';
import type { Request } from 'autocannon';

/** Answers slower than this are reported with when in the run they were sent. */
export const SLOW_MS = 5;

export interface PacedRequest {
  method: string;
  path: string;
  headers?: Record<string, string> | undefined;
  body?: string | undefined;
  setupRequest?: ((req: Request) => Request) | undefined;
}

export interface PacedOptions {
  /** http://127.0.0.1:<port> */
  url: string;
  /** Requests per second. */
  rate: number;
  durationSeconds: number;
  /** Sockets in the pool: the most requests in flight at once. */
  connections: number;
  request: PacedRequest;
  /** How long to wait for the last answers once every request is sent (default 1000 ms). */
  drainMs?: number;
}

export interface PacedResult {
  /** Requests answered. */
  total: number;
  /** Answers per second over the run. */
  rps: number;
  /** Latency from each request's release to its answer, ms. */
  latency: { p50: number; p90: number; p99: number; max: number };
  /**
   * Answers slower than SLOW_MS, and the first and last second of the run in which such a request
   * was sent: a tail from a start-up backlog, from one stall or spread over the run reads apart.
   */
  slow: { count: number; firstS: number; lastS: number };
  /**
   * The longest gap between two of the generator's 1 ms ticks: its own stalls. They delay the
   * release of requests (not counted) and the reading of answers (counted), so a tail no longer
   * than this may be the generator's.
   */
  generatorMaxGapMs: number;
  non2xx: number;
  errors: number;
  /** Requests still unanswered when the run ended (the server fell behind the rate). */
  unanswered: number;
}

function serialize(req: PacedRequest, host: string): Buffer {
  let r: PacedRequest = req;
  if (req.setupRequest) {
    const made = req.setupRequest({
      method: req.method,
      path: req.path,
      headers: req.headers,
      body: req.body,
    } as Request);
    r = {
      method: made.method ?? req.method,
      path: made.path ?? req.path,
      headers: (made.headers as Record<string, string> | undefined) ?? req.headers,
      body: typeof made.body === 'string' ? made.body : req.body,
    };
  }
  let head = `${r.method} ${r.path} HTTP/1.1\r\nhost: ${host}\r\n`;
  for (const [k, v] of Object.entries(r.headers ?? {})) head += `${k}: ${v}\r\n`;
  const body = r.body === undefined ? undefined : Buffer.from(r.body);
  if (body !== undefined) head += `content-length: ${body.length}\r\n`;
  head += '\r\n';
  return body === undefined ? Buffer.from(head) : Buffer.concat([Buffer.from(head), body]);
}

const HEADER_END = Buffer.from('\r\n\r\n');

/** Parses the answers in `buf`; returns the status of each complete one and the rest. */
export function takeResponses(buf: Buffer, statuses: number[]): Buffer {
  let at = 0;
  for (;;) {
    const end = buf.indexOf(HEADER_END, at);
    if (end === -1) break;
    const head = buf.toString('latin1', at, end);
    const status = Number(head.slice(9, 12));
    const len = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    if (len === null) throw new Error(`an answer without Content-Length: ${head.slice(0, 200)}`);
    const next = end + 4 + Number(len[1]);
    if (next > buf.length) break;
    statuses.push(status);
    at = next;
  }
  return at === 0 ? buf : buf.subarray(at);
}

interface Conn {
  socket: Socket;
  buf: Buffer;
  /** Due time (ms, performance.now) of the request in flight, or undefined when idle. */
  due: number | undefined;
}

export async function runPaced(opts: PacedOptions): Promise<PacedResult> {
  const { hostname, port } = new URL(opts.url);
  const host = `${hostname}:${port}`;
  const latencies: number[] = [];
  const slow = { count: 0, firstS: Infinity, lastS: -Infinity };
  let start = 0;
  let non2xx = 0;
  let errors = 0;
  const idle: Conn[] = [];
  const backlog: number[] = []; // due times of requests waiting for a socket
  let stopping = false;
  let lastAnswerAt = 0;
  const fixed = opts.request.setupRequest ? undefined : serialize(opts.request, host);

  const send = (c: Conn, due: number) => {
    c.due = due;
    c.socket.write(fixed ?? serialize(opts.request, host));
  };
  const release = (c: Conn) => {
    c.due = undefined;
    const due = backlog.shift();
    if (due !== undefined && !stopping) send(c, due);
    else idle.push(c);
  };

  const conns = await Promise.all(
    Array.from(
      { length: opts.connections },
      () =>
        new Promise<Conn>((resolve, reject) => {
          const socket = connect({ host: hostname, port: Number(port), noDelay: true });
          const c: Conn = { socket, buf: Buffer.alloc(0), due: undefined };
          socket.once('connect', () => resolve(c));
          socket.once('error', reject);
          socket.on('data', (d: Buffer) => {
            c.buf = c.buf.length === 0 ? d : Buffer.concat([c.buf, d]);
            const statuses: number[] = [];
            c.buf = takeResponses(c.buf, statuses);
            for (const status of statuses) {
              if (c.due === undefined) throw new Error('an answer nobody asked for');
              lastAnswerAt = performance.now();
              const latency = lastAnswerAt - c.due;
              latencies.push(latency);
              if (latency > SLOW_MS) {
                const at = (c.due - start) / 1000;
                slow.count++;
                slow.firstS = Math.min(slow.firstS, at);
                slow.lastS = Math.max(slow.lastS, at);
              }
              if (status < 200 || status >= 300) non2xx++;
              release(c);
            }
          });
          socket.on('close', () => {
            if (!stopping) errors++;
          });
        }),
    ),
  );
  for (const c of conns) {
    c.socket.on('error', () => {
      if (!stopping) errors++;
    });
    idle.push(c);
  }

  start = performance.now();
  const total = Math.floor(opts.rate * opts.durationSeconds);
  const interval = 1000 / opts.rate;
  let issued = 0;
  let lastTick = start;
  let maxGap = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - lastTick);
      lastTick = now;
      const due = Math.min(total, Math.floor((now - start) / interval) + 1);
      for (; issued < due; issued++) {
        // Measured from its release by this tick, not from its exact due time: a timer fires up
        // to a millisecond or two late, and that is the generator's lateness, not the server's.
        const at = now;
        const c = idle.pop();
        if (c === undefined) backlog.push(at);
        else send(c, at);
      }
      if (issued < total) setTimeout(tick, 1);
      else resolve();
    };
    tick();
  });
  // Give the last requests a moment to be answered, then stop.
  const deadline = performance.now() + (opts.drainMs ?? 1000);
  while (latencies.length + errors < total && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
  }
  const elapsed = (Math.max(lastAnswerAt, start + opts.durationSeconds * 1000) - start) / 1000;
  stopping = true;
  const unanswered = total - latencies.length;
  for (const c of conns) c.socket.destroy();

  const sorted = Float64Array.from(latencies).sort();
  const pct = (p: number) =>
    sorted.length === 0
      ? NaN
      : Number(
          (sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN).toFixed(2),
        );
  return {
    total: latencies.length,
    rps: latencies.length / elapsed,
    latency: { p50: pct(0.5), p90: pct(0.9), p99: pct(0.99), max: pct(1 - 1e-12) },
    slow,
    generatorMaxGapMs: Number(maxGap.toFixed(1)),
    non2xx,
    errors,
    unanswered,
  };
}
