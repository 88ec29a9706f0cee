import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import {
  type EntryMeta,
  decodeEnvelope,
  encodeEnvelope,
  etagOf,
} from '../../src/modules/cache/envelope.js';

const meta = (over: Partial<EntryMeta> = {}): EntryMeta => ({
  encoding: 'json',
  freshUntilMs: 1795304341086,
  expiresAtMs: 1795304401086,
  etag: 'tag',
  tags: [],
  ...over,
});

describe('cache envelope v1', () => {
  it('round-trips JSON payload, times, tag and tags byte for byte', () => {
    const payload = Buffer.from('{"a":"é€\\n,\\u0001|"}', 'utf8');
    const { stored, savedBytes } = encodeEnvelope(
      meta({ etag: etagOf('json', payload), tags: ['org:42', 'x/y'] }),
      payload,
      1024,
    );
    expect(savedBytes).toBe(0);
    const e = decodeEnvelope(stored);
    expect(e).toMatchObject({
      encoding: 'json',
      freshUntilMs: 1795304341086,
      expiresAtMs: 1795304401086,
      etag: etagOf('json', payload),
      tags: ['org:42', 'x/y'],
    });
    expect(e.payload.equals(payload)).toBe(true);
  });

  it('stores binary values as they are, and "never" as 0', () => {
    const payload = randomBytes(300);
    const e = decodeEnvelope(
      encodeEnvelope(meta({ encoding: 'binary', freshUntilMs: 0, expiresAtMs: 0 }), payload, 1024)
        .stored,
    );
    expect(e.encoding).toBe('binary');
    expect([e.freshUntilMs, e.expiresAtMs]).toEqual([0, 0]);
    expect(e.payload.equals(payload)).toBe(true);
  });

  it('compresses from the threshold on, only when that saves bytes, and decompresses transparently', () => {
    const text = Buffer.from(
      JSON.stringify({ rows: Array.from({ length: 200 }, (_, i) => ({ id: i, name: 'row' })) }),
    );
    const big = encodeEnvelope(meta(), text, 1024);
    expect(big.savedBytes).toBeGreaterThan(text.length / 2);
    expect(big.stored[2]).toBe(0x64); // 'd'
    expect(decodeEnvelope(big.stored).payload.equals(text)).toBe(true);
    expect(decodeEnvelope(big.stored).savedBytes).toBe(big.savedBytes);
    // Incompressible bytes are stored as they are.
    const noise = randomBytes(4096);
    const raw = encodeEnvelope(meta({ encoding: 'binary' }), noise, 1024);
    expect(raw.savedBytes).toBe(0);
    expect(raw.stored[2]).toBe(0x2d); // '-'
    // 0 disables compression.
    expect(encodeEnvelope(meta(), text, 0).savedBytes).toBe(0);
  });

  it('gives equal values equal tags, and a binary value another tag than the same JSON text', () => {
    expect(etagOf('json', Buffer.from('[1]'))).toBe(etagOf('json', Buffer.from('[1]')));
    expect(etagOf('json', Buffer.from('[1]'))).not.toBe(etagOf('json', Buffer.from('[2]')));
    expect(etagOf('json', Buffer.from('[1]'))).not.toBe(etagOf('binary', Buffer.from('[1]')));
  });

  it('stores JSON given as text byte for byte as the same JSON given as bytes, compressed or not', () => {
    const small = '{"a":"é€\\n,|","n":[1,2,3]}';
    const big = JSON.stringify({
      rows: Array.from({ length: 200 }, (_, i) => ({ id: i, x: 'é' })),
    });
    for (const text of [small, big]) {
      const bytes = Buffer.from(text, 'utf8');
      const m = meta({ etag: etagOf('json', text), tags: ['org:42'] });
      const fromText = encodeEnvelope(m, text, 1024);
      const fromBytes = encodeEnvelope(m, bytes, 1024);
      expect(fromText.savedBytes).toBe(fromBytes.savedBytes);
      const stored =
        typeof fromText.stored === 'string'
          ? Buffer.from(fromText.stored, 'utf8')
          : fromText.stored;
      expect(stored.equals(fromBytes.stored)).toBe(true);
      expect(decodeEnvelope(stored).payload.equals(bytes)).toBe(true);
    }
    // Small text stays a string (handed to Redis as is); big text is compressed into bytes.
    expect(typeof encodeEnvelope(meta(), small, 1024).stored).toBe('string');
    expect(Buffer.isBuffer(encodeEnvelope(meta(), big, 1024).stored)).toBe(true);
  });

  it('keeps the ETag of earlier versions: SHA-256 of the encoding letter and the bytes, text or not', () => {
    const text = '{"price":42.5,"name":"é"}';
    const before = createHash('sha256')
      .update('j')
      .update(Buffer.from(text))
      .digest('base64url')
      .slice(0, 22);
    expect(etagOf('json', text)).toBe(before);
    expect(etagOf('json', Buffer.from(text))).toBe(before);
  });

  it('refuses unknown versions, encodings, compressions and damaged data as STORED_FORMAT_UNSUPPORTED', () => {
    const good = encodeEnvelope(meta(), Buffer.from('1'), 0).stored;
    const variants = [
      Buffer.from('{"legacy":"plain json"}'),
      Buffer.concat([Buffer.from([0x02]), good.subarray(1)]),
      Buffer.concat([Buffer.from([0x01, 0x78]), good.subarray(2)]),
      Buffer.concat([Buffer.from([0x01, 0x6a, 0x7a]), good.subarray(3)]),
      Buffer.from('\x01j-12x,5,t,\n1', 'latin1'),
      Buffer.from('\x01j-12,5,tag-without-newline', 'latin1'),
      Buffer.from('\x01jd1,2,t,\nnot deflate data', 'latin1'),
    ];
    for (const v of variants) {
      try {
        decodeEnvelope(v);
        expect.unreachable(v.toString('latin1'));
      } catch (e) {
        expect(e).toBeInstanceOf(AppError);
        expect((e as AppError).code).toBe('STORED_FORMAT_UNSUPPORTED');
      }
    }
  });
});
