/**
 * The stored form of a cache entry, versioned so the format can change without a migration:
 *
 *   v1:  0x01 <encoding> <expiresAtMs in decimal, empty = none> ',' <etag> '\n' <payload>
 *
 * `encoding` is one byte: 'j' = the payload is the value's JSON text, stored exactly as it will be
 * sent (reads never parse or re-serialize it). The expiry instant is in the envelope so that a
 * read is one plain GET (replica-friendly, no script) and still reports the remaining TTL. A
 * reader that meets a version or encoding it does not know fails loudly
 * (STORED_FORMAT_UNSUPPORTED) instead of serving bytes it cannot interpret: that is what an older
 * replica does during a rolling upgrade that introduced a newer format.
 */
import { createHash } from 'node:crypto';
import { AppError } from '../../errors.js';

export const ENVELOPE_V1 = 0x01;
export const ENCODING_JSON = 0x6a; // 'j'

const COMMA = 0x2c;
const NEWLINE = 0x0a;

export interface Envelope {
  readonly encoding: number;
  /** Unix ms; 0 when the entry never expires. */
  readonly expiresAtMs: number;
  readonly etag: string;
  readonly payload: Buffer;
}

/** A strong entity tag derived from the payload: equal values have equal tags. */
export function etagOf(payload: Buffer): string {
  return createHash('sha256').update(payload).digest('base64url').slice(0, 22);
}

export function encodeEnvelope(payload: Buffer, expiresAtMs: number, etag: string): Buffer {
  const header = Buffer.from(
    `\x01j${expiresAtMs > 0 ? String(expiresAtMs) : ''},${etag}\n`,
    'latin1',
  );
  return Buffer.concat([header, payload], header.length + payload.length);
}

function unsupported(): AppError {
  return new AppError(
    'STORED_FORMAT_UNSUPPORTED',
    'The stored value was written in a format this gateway version cannot read; retry against an upgraded replica.',
  );
}

export function decodeEnvelope(buf: Buffer): Envelope {
  if (buf.length < 4 || buf[0] !== ENVELOPE_V1) throw unsupported();
  const encoding = buf[1] as number;
  if (encoding !== ENCODING_JSON) throw unsupported();
  const comma = buf.indexOf(COMMA, 2);
  if (comma === -1) throw unsupported();
  const newline = buf.indexOf(NEWLINE, comma + 1);
  if (newline === -1) throw unsupported();
  let expiresAtMs = 0;
  for (let i = 2; i < comma; i++) {
    const d = (buf[i] as number) - 48;
    if (d < 0 || d > 9) throw unsupported();
    expiresAtMs = expiresAtMs * 10 + d;
  }
  return {
    encoding,
    expiresAtMs,
    etag: buf.toString('latin1', comma + 1, newline),
    payload: buf.subarray(newline + 1),
  };
}
