import { describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import { decodeEnvelope, encodeEnvelope, etagOf } from '../../src/modules/cache/envelope.js';

describe('cache envelope v1', () => {
  it('round-trips payload, expiry and tag byte for byte', () => {
    const payload = Buffer.from('{"a":"é€\\n,\\u0001"}', 'utf8');
    const buf = encodeEnvelope(payload, 1795304341086, etagOf(payload));
    const e = decodeEnvelope(buf);
    expect(e.expiresAtMs).toBe(1795304341086);
    expect(e.etag).toBe(etagOf(payload));
    expect(e.payload.equals(payload)).toBe(true);
  });

  it('encodes "no expiry" as 0', () => {
    const e = decodeEnvelope(encodeEnvelope(Buffer.from('1'), 0, 'tag'));
    expect(e.expiresAtMs).toBe(0);
  });

  it('gives equal payloads equal tags and different payloads different tags', () => {
    expect(etagOf(Buffer.from('[1]'))).toBe(etagOf(Buffer.from('[1]')));
    expect(etagOf(Buffer.from('[1]'))).not.toBe(etagOf(Buffer.from('[2]')));
  });

  it('refuses unknown versions, encodings and damaged headers as STORED_FORMAT_UNSUPPORTED', () => {
    const good = encodeEnvelope(Buffer.from('1'), 5, 't');
    const variants = [
      Buffer.from('{"legacy":"plain json"}'),
      Buffer.concat([Buffer.from([0x02]), good.subarray(1)]),
      Buffer.concat([Buffer.from([0x01, 0x62]), good.subarray(2)]),
      Buffer.from('\x01j12x,t\n1', 'latin1'),
      Buffer.from('\x01j12', 'latin1'),
      Buffer.from('\x01j12,tag-without-newline', 'latin1'),
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
