/**
 * The stored form of a cache entry, versioned so the format can change without a migration:
 *
 *   v1:  0x01 <encoding> <compression> <freshUntilMs>,<expiresAtMs>,<etag>,<tags>\n<payload>
 *
 * - encoding, one byte: 'j' the payload is the value's JSON text; 'b' raw bytes (octet-stream).
 * - compression, one byte: '-' none; 'd' raw DEFLATE (zlib level 1: the fastest decompression of
 *   the codecs Node ships, about 15 µs for 8 KiB). Values below CACHE_COMPRESS_MIN_BYTES, or that
 *   do not shrink, are stored as they are.
 * - freshUntilMs / expiresAtMs: Unix ms; 0 = never. The value is fresh until freshUntil, then
 *   served as stale (stale-while-revalidate) until expiresAt, when Redis drops it (PXAT).
 * - etag: derived from the encoding and the uncompressed payload (equal values, equal tags).
 * - tags: '|'-separated (tags never contain '|', ',' or a newline); the Lua scripts read them to
 *   keep tag sets exact when an entry is replaced or deleted.
 *
 * A reader that meets a version, encoding or compression it does not know fails loudly
 * (STORED_FORMAT_UNSUPPORTED) instead of serving bytes it cannot interpret: that is what an older
 * replica does during a rolling upgrade that introduced a newer format. The Lua scripts in lua/
 * parse the same header; keep both in step.
 */
import { hash } from 'node:crypto';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { AppError } from '../../errors.js';

export const ENVELOPE_V1 = 0x01;
export type Encoding = 'json' | 'binary';

const ENC_JSON = 0x6a; // 'j'
const ENC_BINARY = 0x62; // 'b'
const CMP_NONE = 0x2d; // '-'
const CMP_DEFLATE = 0x64; // 'd'
const COMMA = 0x2c;
const NEWLINE = 0x0a;

export interface EntryMeta {
  readonly encoding: Encoding;
  /** Unix ms; 0 = never stale. */
  readonly freshUntilMs: number;
  /** Unix ms; 0 = never expires. */
  readonly expiresAtMs: number;
  readonly etag: string;
  readonly tags: readonly string[];
}

export interface Envelope extends EntryMeta {
  /** The value's bytes, decompressed. */
  readonly payload: Buffer;
  /** Bytes compression saved when it was stored (0 when stored as is). */
  readonly savedBytes: number;
}

/**
 * A strong entity tag: the same encoding and bytes give the same tag. A JSON payload may come as
 * its text (hashed as UTF-8, the bytes it is stored as).
 */
export function etagOf(encoding: Encoding, payload: Buffer | string): string {
  const data =
    typeof payload === 'string'
      ? (encoding === 'json' ? 'j' : 'b') + payload
      : Buffer.concat([encoding === 'json' ? J_PREFIX : B_PREFIX, payload]);
  return hash('sha256', data, 'base64url').slice(0, 22);
}

const J_PREFIX = Buffer.from('j');
const B_PREFIX = Buffer.from('b');

/**
 * Encodes an entry; compresses payloads of at least `compressMinBytes` when that saves space. A
 * JSON payload given as text (`bytes` its UTF-8 length) that stays uncompressed is stored as a
 * string, header and text together: one string argument is the cheapest thing to hand ioredis
 * (no Buffer to allocate, copy and concatenate on every PUT). The bytes in Redis are the same.
 */
export function encodeEnvelope(
  meta: EntryMeta,
  payload: Buffer,
  compressMinBytes: number,
  bytes?: number,
): { stored: Buffer; savedBytes: number };
export function encodeEnvelope(
  meta: EntryMeta,
  payload: Buffer | string,
  compressMinBytes: number,
  bytes?: number,
): { stored: Buffer | string; savedBytes: number };
export function encodeEnvelope(
  meta: EntryMeta,
  payload: Buffer | string,
  compressMinBytes: number,
  bytes: number = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length,
): { stored: Buffer | string; savedBytes: number } {
  const compress = compressMinBytes > 0 && bytes >= compressMinBytes;
  if (typeof payload === 'string') {
    if (!compress) return { stored: header(meta, '-') + payload, savedBytes: 0 };
    payload = Buffer.from(payload, 'utf8');
  }
  let body = payload;
  let cmp: '-' | 'd' = '-';
  if (compress) {
    const z = deflateRawSync(payload, { level: 1 });
    if (z.length < payload.length) {
      body = z;
      cmp = 'd';
    }
  }
  const head = Buffer.from(header(meta, cmp), 'latin1');
  return {
    stored: Buffer.concat([head, body], head.length + body.length),
    savedBytes: payload.length - body.length,
  };
}

/** The v1 header line: ASCII only (digits, base64url, tags of [A-Za-z0-9:._/@#=+-]). */
function header(meta: EntryMeta, cmp: '-' | 'd'): string {
  return `\x01${meta.encoding === 'json' ? 'j' : 'b'}${cmp}${meta.freshUntilMs},${meta.expiresAtMs},${meta.etag},${meta.tags.join('|')}\n`;
}

function unsupported(): AppError {
  return new AppError(
    'STORED_FORMAT_UNSUPPORTED',
    'The stored value was written in a format this gateway version cannot read; retry against an upgraded replica.',
  );
}

function digits(buf: Buffer, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) {
    const d = (buf[i] as number) - 48;
    if (d < 0 || d > 9) throw unsupported();
    n = n * 10 + d;
  }
  return n;
}

/** Decodes a stored entry (decompressing it). Throws STORED_FORMAT_UNSUPPORTED on anything unknown. */
export function decodeEnvelope(buf: Buffer): Envelope {
  if (buf.length < 8 || buf[0] !== ENVELOPE_V1) throw unsupported();
  const enc = buf[1];
  const cmp = buf[2];
  if ((enc !== ENC_JSON && enc !== ENC_BINARY) || (cmp !== CMP_NONE && cmp !== CMP_DEFLATE))
    throw unsupported();
  const c1 = buf.indexOf(COMMA, 3);
  const c2 = c1 === -1 ? -1 : buf.indexOf(COMMA, c1 + 1);
  const c3 = c2 === -1 ? -1 : buf.indexOf(COMMA, c2 + 1);
  const nl = c3 === -1 ? -1 : buf.indexOf(NEWLINE, c3 + 1);
  if (nl === -1) throw unsupported();
  const raw = buf.subarray(nl + 1);
  let payload = raw;
  if (cmp === CMP_DEFLATE) {
    try {
      payload = inflateRawSync(raw);
    } catch {
      throw unsupported();
    }
  }
  const tagText = nl > c3 + 1 ? buf.toString('latin1', c3 + 1, nl) : '';
  return {
    encoding: enc === ENC_JSON ? 'json' : 'binary',
    freshUntilMs: digits(buf, 3, c1),
    expiresAtMs: digits(buf, c1 + 1, c2),
    etag: buf.toString('latin1', c2 + 1, c3),
    tags: tagText === '' ? [] : tagText.split('|'),
    payload,
    savedBytes: payload.length - raw.length,
  };
}
