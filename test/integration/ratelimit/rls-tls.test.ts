/**
 * TLS on the gRPC rate limit service (RLS_GRPC_TLS_*): TLS with the server's certificate, mutual
 * TLS with a client CA, certificates renewed on disk served to new connections without a restart
 * (a renewal that does not load keeps the old one), and files that do not load at start refused.
 */
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import { HEALTH_SERVICE } from '../../../src/modules/ratelimit/rls-grpc.js';
import type { RlsTlsOptions } from '../../../src/modules/ratelimit/rls-tls.js';
import { newTenant, testEnv, useTestApp, writePoliciesFile } from '../../harness/app.js';
import { type Pem, certificateDir } from '../../harness/certs.js';
import { rlsClient, startTestRlsServer } from '../../harness/rls.js';
import { freePort } from '../../harness/topology.js';

const policiesFile = writePoliciesFile([
  'envoy:',
  '  - domain: edge',
  '    descriptors:',
  '      - key: remote_address',
  '        rate_limit: { unit: minute, requests_per_unit: 100 }',
]);
const t = useTestApp({ env: { RATELIMIT_POLICIES_FILE: policiesFile } });

const certs = certificateDir();
const ca = certs.ca('rls-ca');
const serverA = certs.signed('server-a', ca);
const otherCa = certs.ca('other-ca');
const client = certs.signed('client', ca);
const stranger = certs.signed('stranger', otherCa);

const servers: { close(graceMs: number): Promise<void> }[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close(500)));
  certs.remove();
});

async function start(tls: RlsTlsOptions) {
  const server = await startTestRlsServer(t.deps, { tls });
  servers.push(server);
  return server;
}

const tlsFor = (server: Pem, clientCa?: Pem): RlsTlsOptions => ({
  certFile: server.certFile,
  keyFile: server.keyFile,
  ...(clientCa ? { clientCaFile: clientCa.certFile } : {}),
});

const credentials = (as?: Pem, trust: Pem = ca) =>
  as
    ? grpc.credentials.createSsl(Buffer.from(trust.cert), Buffer.from(as.key), Buffer.from(as.cert))
    : grpc.credentials.createSsl(Buffer.from(trust.cert));

const Health = grpc.makeGenericClientConstructor(HEALTH_SERVICE, 'Health');

/** A health Check over these credentials: SERVING, or the gRPC error's code name. */
function healthCheck(port: number, creds: grpc.ChannelCredentials): Promise<string> {
  const c = new Health(`127.0.0.1:${port}`, creds, {
    'grpc.ssl_target_name_override': 'localhost',
  }) as unknown as {
    Check(
      r: object,
      m: grpc.Metadata,
      o: grpc.CallOptions,
      cb: (e: grpc.ServiceError | null, r?: { status?: string }) => void,
    ): void;
    close(): void;
  };
  return new Promise((resolve) => {
    c.Check({ service: '' }, new grpc.Metadata(), { deadline: Date.now() + 3000 }, (e, r) => {
      c.close();
      resolve(e ? grpc.status[e.code] : (r?.status ?? 'UNKNOWN'));
    });
  });
}

/** The CN of the certificate a new TLS connection to the port is served. */
function servedCertificate(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: '127.0.0.1',
      port,
      ca: ca.cert,
      servername: 'localhost',
      ALPNProtocols: ['h2'],
    });
    socket.once('secureConnect', () => {
      const cn = socket.getPeerCertificate().subject.CN;
      socket.destroy();
      resolve(String(cn));
    });
    socket.once('error', reject);
  });
}

async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const expiryOf = (pem: Pem) => Date.parse(new X509Certificate(pem.cert).validTo);

describe('gRPC rate limit service over TLS', () => {
  it('serves TLS with the certificate files, and decides over it; plaintext clients get nothing', async () => {
    const loaded: { server: number; clientCa?: number }[] = [];
    const server = await start({ ...tlsFor(serverA), onLoaded: (e) => loaded.push(e) });
    expect(loaded).toEqual([{ server: expiryOf(serverA) }]);
    expect(await healthCheck(server.port, credentials())).toBe('SERVING');
    expect(await servedCertificate(server.port)).toBe('server-a');

    const tenant = await newTenant(t.deps, ['ratelimit:check']);
    const key = tenant.auth.authorization.slice('Bearer '.length);
    const rls = rlsClient(server.port, credentials());
    try {
      const res = await rls.call(
        { domain: 'edge', descriptors: [{ entries: [{ key: 'remote_address', value: 'tls-1' }] }] },
        { 'x-gateway-key': key },
      );
      expect(res.response?.overallCode).toBe('OK');
      expect(res.response?.statuses?.[0]?.limitRemaining).toBe(99);
    } finally {
      rls.close();
    }

    expect(await healthCheck(server.port, grpc.credentials.createInsecure())).toBe('UNAVAILABLE');
    // A client that does not trust the CA refuses the server.
    expect(await healthCheck(server.port, credentials(undefined, otherCa))).toBe('UNAVAILABLE');
  });

  it('with a client CA, answers only clients with a certificate that CA signed (mutual TLS)', async () => {
    const loaded: { server: number; clientCa?: number }[] = [];
    const server = await start({ ...tlsFor(serverA, ca), onLoaded: (e) => loaded.push(e) });
    expect(loaded).toEqual([{ server: expiryOf(serverA), clientCa: expiryOf(ca) }]);
    expect(await healthCheck(server.port, credentials(client))).toBe('SERVING');
    expect(await healthCheck(server.port, credentials())).toBe('UNAVAILABLE');
    expect(await healthCheck(server.port, credentials(stranger))).toBe('UNAVAILABLE');
    expect(await healthCheck(server.port, grpc.credentials.createInsecure())).toBe('UNAVAILABLE');
  });

  it('serves a renewed certificate to new connections without a restart; one that does not load is reported and the old one stays', async () => {
    // The files the server reads, replaced the way a Secret volume update does (a rename).
    const live = { certFile: join(certs.dir, 'live.crt'), keyFile: join(certs.dir, 'live.key') };
    const put = (from: Pem, what: 'cert' | 'key' | 'both') => {
      for (const part of what === 'both' ? (['cert', 'key'] as const) : [what]) {
        const src = part === 'cert' ? from.certFile : from.keyFile;
        const dst = part === 'cert' ? live.certFile : live.keyFile;
        copyFileSync(src, `${dst}.new`);
        renameSync(`${dst}.new`, dst);
      }
    };
    put(serverA, 'both');
    const loaded: number[] = [];
    const errors: string[] = [];
    const server = await start({
      ...live,
      reloadIntervalMs: 100,
      onLoaded: (e) => loaded.push(e.server),
      onReloadError: (err) => errors.push(err.message),
    });
    expect(await servedCertificate(server.port)).toBe('server-a');
    // A connection opened before the renewal (answered UNAUTHENTICATED: no key, but answered).
    const open = rlsClient(server.port, credentials());
    const unauthenticated = { domain: 'edge', descriptors: [] };
    expect((await open.call(unauthenticated, {})).error?.code).toBe(grpc.status.UNAUTHENTICATED);

    const serverB = certs.signed('server-b', ca, 3);
    put(serverB, 'both');
    await eventually(async () => (await servedCertificate(server.port)) === 'server-b', 'server-b');
    expect(loaded.at(-1)).toBe(expiryOf(serverB));
    // The connection opened before goes on.
    expect((await open.call(unauthenticated, {})).error?.code).toBe(grpc.status.UNAUTHENTICATED);
    open.close();

    // A certificate whose key is not the one on disk: reported once, server-b stays.
    const serverC = certs.signed('server-c', ca);
    const errorsBefore = errors.length;
    const loadsBefore = loaded.length;
    put(serverC, 'cert');
    await eventually(async () => errors.length > errorsBefore, 'the reload error');
    await new Promise((r) => setTimeout(r, 500)); // five more intervals
    expect(errors.slice(errorsBefore)).toHaveLength(1);
    expect(errors.at(-1)).toMatch(/do not load/);
    expect(loaded).toHaveLength(loadsBefore);
    expect(await servedCertificate(server.port)).toBe('server-b');

    // Its key arrives: now it loads.
    put(serverC, 'key');
    await eventually(async () => (await servedCertificate(server.port)) === 'server-c', 'server-c');
    expect(loaded.at(-1)).toBe(expiryOf(serverC));
  });

  it('refuses to start with files that do not load, saying which', async () => {
    await expect(start({ certFile: serverA.certFile, keyFile: client.keyFile })).rejects.toThrow(
      /certificate .*server-a\.crt and key .*client\.key do not load/,
    );
    await expect(
      start({ certFile: join(certs.dir, 'missing.crt'), keyFile: serverA.keyFile }),
    ).rejects.toThrow(/cannot read the gRPC TLS certificate .*missing\.crt/);
    await expect(start({ certFile: serverA.keyFile, keyFile: serverA.keyFile })).rejects.toThrow(
      /is not a PEM certificate/,
    );
  });

  it('the real process: serves TLS from the RLS_GRPC_TLS_* files, exports their expiry, and stops on files that do not load', async () => {
    const root = new URL('../../../', import.meta.url);
    const run = (env: Record<string, string>) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
        cwd: root,
        env: { ...process.env, ...testEnv({ HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env }) },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr.on('data', (d: Buffer) => (output += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      return { child, exited, output: () => output };
    };

    const [port, rlsPort, metricsPort] = await Promise.all([freePort(), freePort(), freePort()]);
    const gw = run({
      PORT: String(port),
      METRICS_PORT: String(metricsPort),
      RLS_GRPC_PORT: String(rlsPort),
      RLS_GRPC_TLS_CERT_FILE: serverA.certFile,
      RLS_GRPC_TLS_KEY_FILE: serverA.keyFile,
      RLS_GRPC_TLS_CLIENT_CA_FILE: ca.certFile,
    });
    try {
      await eventually(
        async () => (await healthCheck(rlsPort, credentials(client))) === 'SERVING',
        `the gateway's TLS health check\n${gw.output()}`,
        30_000,
      );
      expect(await healthCheck(rlsPort, credentials())).toBe('UNAVAILABLE'); // no client certificate
      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      expect(metrics).toContain(
        `gateway_rls_tls_certificate_expiry_timestamp_seconds{certificate="server"} ${expiryOf(serverA) / 1000}`,
      );
      expect(metrics).toContain(
        `gateway_rls_tls_certificate_expiry_timestamp_seconds{certificate="client_ca"} ${expiryOf(ca) / 1000}`,
      );
      expect(gw.output()).toMatch(
        /"tls":"mutual".*gRPC rate limit service \(Envoy RLS\) listening/,
      );
    } finally {
      gw.child.kill('SIGKILL');
    }

    const bad = run({
      PORT: String(await freePort()),
      METRICS_PORT: '0',
      RLS_GRPC_PORT: String(await freePort()),
      RLS_GRPC_TLS_CERT_FILE: serverA.certFile,
      RLS_GRPC_TLS_KEY_FILE: client.keyFile,
    });
    expect(await bad.exited).toBe(1);
    expect(bad.output()).toMatch(/fatal: .*server-a\.crt and key .*client\.key do not load/);
  });
});
