/**
 * The bench's open-loop generator (load/paced.ts): its HTTP answer parser, and one short run
 * against a local node:http server (no Redis) checking that every due request is sent once, with
 * its own setupRequest, and that statuses are counted; and that answers a server holds back are
 * reported as slow. Only lower bounds on time are asserted (a loaded machine only adds delay).
 */
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { type PacedResult, SLOW_MS, runPaced, takeResponses } from '../../load/paced.js';

describe('takeResponses', () => {
  it('splits answers that share a chunk and keeps an incomplete one for later', () => {
    const a = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';
    const b = 'HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n';
    const c = 'HTTP/1.1 201 Created\r\ncontent-length: 5\r\n\r\nab';
    const statuses: number[] = [];
    const rest = takeResponses(Buffer.from(a + b + c), statuses);
    expect(statuses).toEqual([200, 404]);
    expect(rest.toString()).toBe(c);
    expect(takeResponses(Buffer.concat([rest, Buffer.from('cde')]), statuses).length).toBe(0);
    expect(statuses).toEqual([200, 404, 201]);
  });

  it('refuses an answer without Content-Length instead of miscounting', () => {
    const chunked = 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n';
    expect(() => takeResponses(Buffer.from(chunked), [])).toThrow(/Content-Length/);
  });
});

/**
 * 200 requests at 200/s over 4 connections to a local server answering with `handler`; request
 * n (from 1) goes to `/x/<n>`.
 */
async function pacedAgainst(
  handler: (n: number, req: IncomingMessage, res: ServerResponse) => void,
  method: string,
  body?: string,
): Promise<PacedResult> {
  const server = createServer((req, res) => handler(Number(req.url?.split('/').pop()), req, res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    let i = 0;
    const { port } = server.address() as AddressInfo;
    return await runPaced({
      url: `http://127.0.0.1:${port}`,
      rate: 200,
      durationSeconds: 1,
      connections: 4,
      // A loaded CI machine may stall: wait for every answer rather than count stragglers.
      drainMs: 10_000,
      request: {
        method,
        path: '/x/0',
        body,
        setupRequest: (req) => ({ ...req, path: `/x/${++i}` }),
      },
    });
  } finally {
    server.close();
  }
}

describe('runPaced', () => {
  it('sends rate x duration requests, each built by setupRequest, and counts non-2xx', async () => {
    const seen: string[] = [];
    const r = await pacedAgainst(
      (n, req, res) => {
        seen.push(`${req.method} ${req.url}`);
        res.writeHead(n % 4 === 0 ? 404 : 200, { 'content-length': 2 }).end('ok');
      },
      'POST',
      '{}',
    );
    expect(r.total).toBe(200);
    expect(r.unanswered).toBe(0);
    expect(r.errors).toBe(0);
    expect(r.non2xx).toBe(50);
    expect(seen).toHaveLength(200);
    expect(new Set(seen).size).toBe(200);
    expect(seen.every((s) => s.startsWith('POST /x/'))).toBe(true);
    expect(r.latency.p50).toBeGreaterThan(0);
  });

  it('reports the answers slower than SLOW_MS and when in the run they were sent', async () => {
    // Requests 101-120 (due 0.5-0.6 s into the run) are answered 40 ms late: at least those 20
    // are slow, and the last slow one was sent no earlier than request 120 was due.
    const r = await pacedAgainst((n, _req, res) => {
      const answer = () => res.writeHead(200, { 'content-length': 2 }).end('ok');
      if (n > 100 && n <= 120) setTimeout(answer, SLOW_MS + 35);
      else answer();
    }, 'GET');
    expect(r.total).toBe(200);
    expect(r.slow.count).toBeGreaterThanOrEqual(20);
    expect(r.slow.firstS).toBeGreaterThanOrEqual(0);
    expect(r.slow.lastS).toBeGreaterThanOrEqual(119 / 200);
    expect(r.slow.firstS).toBeLessThanOrEqual(r.slow.lastS);
    expect(r.latency.max).toBeGreaterThan(SLOW_MS + 35);
    // Ticks are 1 ms apart at best: the longest gap is at least that.
    expect(r.generatorMaxGapMs).toBeGreaterThanOrEqual(1);
  });
});
