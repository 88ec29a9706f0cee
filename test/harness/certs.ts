/**
 * Throwaway X.509 certificates for TLS tests, made with the openssl CLI (EC P-256, fast): a CA, and
 * certificates it signs for localhost / 127.0.0.1, usable by servers and clients alike.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Pem {
  cert: string;
  key: string;
  certFile: string;
  keyFile: string;
}

const openssl = (args: string[]) => {
  try {
    return execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error('openssl not found: install it (sudo apt-get install -y openssl)');
    }
    throw err;
  }
};

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A directory of certificates; remove() deletes it. */
export function certificateDir() {
  const dir = mkdtempSync(join(tmpdir(), 'cache-gateway-certs-'));
  const files = (name: string) => ({
    certFile: join(dir, `${name}.crt`),
    keyFile: join(dir, `${name}.key`),
  });
  const readPem = (name: string): Pem => {
    const f = files(name);
    return {
      ...f,
      cert: readFileSync(f.certFile, 'utf8'),
      key: readFileSync(f.keyFile, 'utf8'),
    };
  };
  return {
    dir,
    /** A self-signed CA. */
    ca(name: string): Pem {
      const f = files(name);
      openssl(
        ['req', '-x509', ...EC, '-keyout', f.keyFile, '-out', f.certFile].concat([
          '-days',
          '30',
          '-subj',
          `/CN=${name}`,
        ]),
      );
      return readPem(name);
    },
    /** A certificate `ca` signs, for DNS:localhost and IP:127.0.0.1, valid for `days`. */
    signed(name: string, ca: Pem, days = 2): Pem {
      const f = files(name);
      const csr = join(dir, `${name}.csr`);
      const ext = join(dir, `${name}.ext`);
      writeFileSync(
        ext,
        'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n',
      );
      openssl(['req', ...EC, '-keyout', f.keyFile, '-out', csr, '-subj', `/CN=${name}`]);
      const serial = `0x${Date.now().toString(16)}${Math.floor(Math.random() * 1e6).toString(16)}`;
      openssl(
        ['x509', '-req', '-in', csr, '-CA', ca.certFile, '-CAkey', ca.keyFile].concat([
          '-set_serial',
          serial,
          '-days',
          String(days),
          '-extfile',
          ext,
          '-out',
          f.certFile,
        ]),
      );
      return readPem(name);
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
