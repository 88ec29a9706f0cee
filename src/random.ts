/**
 * Random tokens (session ids, lock tokens, lease tokens) from a pool of CSPRNG bytes refilled
 * 4 KiB at a time: `randomBytes` per token cost ~7 us of the ~100 us of an idempotency `_begin`
 * (a call into OpenSSL each time), the pool a copy. Every byte is handed out once and zeroed as it
 * is, so the pool never holds a token already issued.
 */
import { randomBytes, randomFillSync } from 'node:crypto';

const POOL_BYTES = 4096;
const pool = Buffer.alloc(POOL_BYTES);
let offset = POOL_BYTES;

/** `bytes` random bytes as base64url (43 characters for 32 bytes). */
export function randomToken(bytes: number): string {
  if (bytes > POOL_BYTES / 4) return randomBytes(bytes).toString('base64url');
  if (offset + bytes > POOL_BYTES) {
    randomFillSync(pool);
    offset = 0;
  }
  const end = offset + bytes;
  const token = pool.toString('base64url', offset, end);
  pool.fill(0, offset, end);
  offset = end;
  return token;
}
