/**
 * TLS for the gRPC rate limit service: the server's certificate and key, and for mutual TLS the CA
 * that client certificates must chain to, from PEM files. The files are read again every
 * `reloadIntervalMs`, so that a renewed certificate (cert-manager, a Kubernetes Secret update) is
 * served to new connections without a restart; connections already open keep their session.
 *
 * At start a file that cannot be read or does not load is an error (the process stops). Later,
 * files that cannot be read, or changed files that do not load (a key from another pair, a
 * half-written file), are reported once each and the certificate being served stays.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type SecureContextOptions, createSecureContext } from 'node:tls';
import * as grpc from '@grpc/grpc-js';

export interface RlsTlsOptions {
  certFile: string;
  keyFile: string;
  /** Mutual TLS: a client must present a certificate that chains to a CA in this file. */
  clientCaFile?: string | undefined;
  /** How often the files are read again; default 30 s. */
  reloadIntervalMs?: number;
  /**
   * Certificates now served (at start and after each renewal): when the server's certificate and
   * the client CA (if any) expire, in ms since the epoch.
   */
  onLoaded?(expiry: { server: number; clientCa?: number }): void;
  /** Files that could not be read, or changed files that did not load; the old certificate stays. */
  onReloadError?(err: Error): void;
}

const DEFAULT_RELOAD_MS = 30_000;

/** Server credentials whose certificate can be replaced: grpc-js applies it to its TLS server. */
class ReloadableCredentials extends grpc.ServerCredentials {
  constructor(mutual: boolean, context: SecureContextOptions) {
    super({ requestCert: mutual, rejectUnauthorized: mutual }, context);
  }

  replace(context: SecureContextOptions): void {
    this.updateSecureContextOptions(context);
  }

  _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}

interface Files {
  cert: Buffer;
  key: Buffer;
  ca: Buffer | undefined;
}

function readAll(opts: RlsTlsOptions): Files {
  const read = (path: string, what: string) => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new Error(`cannot read the gRPC TLS ${what} ${path}: ${(err as Error).message}`);
    }
  };
  return {
    cert: read(opts.certFile, 'certificate'),
    key: read(opts.keyFile, 'key'),
    ca: opts.clientCaFile === undefined ? undefined : read(opts.clientCaFile, 'client CA'),
  };
}

/** The TLS context for these files and their expiry; throws when they do not make one. */
function load(files: Files, opts: RlsTlsOptions) {
  const expiry = (pem: Buffer, what: string, path: string) => {
    try {
      return Date.parse(new X509Certificate(pem).validTo);
    } catch (err) {
      throw new Error(
        `the gRPC TLS ${what} ${path} is not a PEM certificate: ${(err as Error).message}`,
      );
    }
  };
  const server = expiry(files.cert, 'certificate', opts.certFile);
  const clientCa =
    files.ca === undefined ? undefined : expiry(files.ca, 'client CA', opts.clientCaFile ?? '');
  const context: SecureContextOptions = {
    cert: files.cert,
    key: files.key,
    ...(files.ca === undefined ? {} : { ca: files.ca }),
  };
  try {
    createSecureContext(context);
  } catch (err) {
    throw new Error(
      `the gRPC TLS certificate ${opts.certFile} and key ${opts.keyFile} do not load: ${(err as Error).message}`,
    );
  }
  return { context, expiry: clientCa === undefined ? { server } : { server, clientCa } };
}

const same = (a: Files, b: Files) =>
  a.cert.equals(b.cert) &&
  a.key.equals(b.key) &&
  (a.ca === undefined ? b.ca === undefined : b.ca !== undefined && a.ca.equals(b.ca));

/** Credentials for the files, kept up to date until stop(). Throws when they do not load now. */
export function reloadingTlsCredentials(opts: RlsTlsOptions): {
  credentials: grpc.ServerCredentials;
  stop(): void;
} {
  let seen = readAll(opts);
  const first = load(seen, opts);
  const credentials = new ReloadableCredentials(opts.clientCaFile !== undefined, first.context);
  opts.onLoaded?.(first.expiry);
  // Each failure once, not at every interval while it lasts.
  let lastError: string | undefined;
  const report = (err: Error) => {
    if (err.message === lastError) return;
    lastError = err.message;
    opts.onReloadError?.(err);
  };
  const timer = setInterval(() => {
    let files: Files;
    try {
      files = readAll(opts);
    } catch (err) {
      // Say, files swapped one by one: read again at the next interval.
      report(err as Error);
      return;
    }
    if (same(files, seen)) {
      lastError = undefined;
      return;
    }
    seen = files; // files that do not load are tried again only once they change
    try {
      const next = load(files, opts);
      credentials.replace(next.context);
      lastError = undefined;
      opts.onLoaded?.(next.expiry);
    } catch (err) {
      report(err as Error);
    }
  }, opts.reloadIntervalMs ?? DEFAULT_RELOAD_MS);
  timer.unref();
  return { credentials, stop: () => clearInterval(timer) };
}
