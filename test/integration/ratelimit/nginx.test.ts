/**
 * The README's NGINX `auth_request` snippet, run by a real nginx in front of a real backend and
 * this gateway: the snippet is taken from README.md as it stands, with only the addresses, the
 * policy name and the key filled in, so a README that stops working breaks this test. (Envoy and
 * Traefik have no Debian package; their calls are reproduced in hook.test.ts.)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { type IncomingHttpHeaders, createServer } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, newTenant, rawHttp, useTestApp } from '../../harness/app.js';
import { freePort, programPath } from '../../harness/topology.js';

const t = useTestApp();

/** The ```nginx block under "Using the hook from your API gateway". */
function readmeSnippet(): string {
  const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf('## Using the hook from your API gateway'));
  const m = /```nginx\n([\s\S]*?)```/.exec(section);
  if (m === null) throw new Error('README.md has no ```nginx block in the hook section');
  return m[1] as string;
}

describe('NGINX auth_request with the README snippet', () => {
  const seen: { headers: IncomingHttpHeaders; body: string }[] = [];
  const backend = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      seen.push({ headers: req.headers, body });
      res.writeHead(200, { 'content-type': 'text/plain' }).end('from the backend');
    });
  });
  let nginx: ChildProcess | undefined;
  let nginxPort = 0;
  let dir = '';

  beforeAll(async () => {
    const bin = programPath('nginx');
    if (bin === undefined) {
      throw new Error(
        'nginx not found. Install it (Debian/Ubuntu): sudo apt-get install -y nginx-light',
      );
    }
    const a = await newTenant(t.deps, ['ratelimit:check']);
    const put = await t.app.inject({
      method: 'PUT',
      url: `/v1/admin/tenants/${a.tenant}/policies/public`,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      payload: { algorithm: 'fixed_window', limit: 2, windowMs: 60_000 },
    });
    expect(put.statusCode).toBe(201);
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const gwPort = (t.app.server.address() as AddressInfo).port;
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
    const backendPort = (backend.address() as AddressInfo).port;

    const snippet = readmeSnippet()
      .replace('http://cache-gateway:8080', `http://127.0.0.1:${gwPort}`)
      .replace('http://backend', `http://127.0.0.1:${backendPort}`)
      .replace('"cgk_..."', `"${a.key}"`);
    expect(snippet).not.toMatch(/cache-gateway:|cgk_\.\.\.|http:\/\/backend/);
    nginxPort = await freePort();
    dir = mkdtempSync(join(tmpdir(), 'cache-gateway-nginx-'));
    chmodSync(dir, 0o755); // nginx's workers may run as another user
    const conf = [
      'daemon off;',
      'master_process on;',
      'worker_processes 1;',
      `pid ${dir}/nginx.pid;`,
      `error_log ${dir}/error.log warn;`,
      'events { worker_connections 64; }',
      'http {',
      '  access_log off;',
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(
        (p) => `  ${p}_temp_path ${dir}/${p};`,
      ),
      `  server {`,
      `    listen 127.0.0.1:${nginxPort};`,
      snippet,
      '  }',
      '}',
    ].join('\n');
    writeFileSync(join(dir, 'nginx.conf'), conf);
    nginx = spawn(bin, ['-p', dir, '-e', `${dir}/error.log`, '-c', `${dir}/nginx.conf`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    nginx.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (nginx.exitCode !== null) throw new Error(`nginx exited: ${stderr}`);
      // A bare connect, so no request uses up the limit before the test's own.
      const up = await new Promise<boolean>((resolve) => {
        const s = connect(nginxPort, '127.0.0.1');
        s.once('connect', () => {
          s.destroy();
          resolve(true);
        });
        s.once('error', () => resolve(false));
      });
      if (up) break;
      if (Date.now() > deadline) throw new Error(`nginx did not listen: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  afterAll(async () => {
    if (nginx !== undefined && nginx.exitCode === null) {
      const exited = new Promise((r) => nginx?.once('exit', r));
      nginx.kill('SIGQUIT');
      await exited;
    }
    backend.close();
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  it('lets requests through to the backend until the limit, then answers 429 with Retry-After', async () => {
    const user = { authorization: 'Bearer end-user-token' };
    for (const remaining of [1, 0]) {
      const allowed = await rawHttp(
        nginxPort,
        'POST',
        '/api/orders?id=7',
        { ...user, 'content-type': 'application/json' },
        '{"order":7}',
      );
      expect(allowed.status).toBe(200);
      expect(allowed.body).toBe('from the backend');
      expect(allowed.headers.ratelimit).toMatch(new RegExp(`^"public";r=${remaining};t=\\d+$`));
    }
    // The backend got the end user's credentials and body, never the hook's key.
    expect(seen).toHaveLength(2);
    expect(seen[0]?.headers.authorization).toBe('Bearer end-user-token');
    expect(seen[0]?.headers['x-gateway-key']).toBeUndefined();
    expect(seen[0]?.body).toBe('{"order":7}');

    const denied = await rawHttp(nginxPort, 'GET', '/api/orders', user);
    expect(denied.status).toBe(429);
    expect(Number(denied.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(denied.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect(seen).toHaveLength(2);
  });
});
