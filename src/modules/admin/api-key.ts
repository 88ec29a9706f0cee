/**
 * The API key format: `cgk_<keyId>_<secret>`. The id routes the lookup; the whole key is stored
 * only as its SHA-256 and compared in constant time.
 */
import { hash, randomBytes } from 'node:crypto';

export const KEY_PREFIX = 'cgk_';
export const KEY_ID_PATTERN = /^[A-Za-z0-9]{1,64}$/;
const SECRET_PATTERN = /^[A-Za-z0-9_-]{16,256}$/;

/** Splits a presented key into its id; undefined when it is not of our format. */
export function keyIdOf(presented: string): string | undefined {
  if (!presented.startsWith(KEY_PREFIX)) return undefined;
  const end = presented.indexOf('_', KEY_PREFIX.length);
  if (end === -1) return undefined;
  const id = presented.slice(KEY_PREFIX.length, end);
  const secret = presented.slice(end + 1);
  if (!KEY_ID_PATTERN.test(id) || !SECRET_PATTERN.test(secret)) return undefined;
  return id;
}

/** SHA-256 of the whole key, as 64 lowercase hex digits (the form stored and provisioned). */
export function hashKey(presented: string): string {
  // The one-shot hash() with a string result is several times faster than createHash() or a
  // Buffer result, and this runs on every authenticated request.
  return hash('sha256', presented, 'hex');
}

/**
 * Compares two equal-length strings in time independent of where they differ (the digests are
 * public-length hex; only their content is secret). Same guarantee as crypto.timingSafeEqual,
 * without allocating Buffers on the hot path.
 */
export function constantTimeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/** Constant-time check of a presented key against a stored SHA-256 hex digest. */
export function keyMatches(presented: string, digestHex: string): boolean {
  return constantTimeEqual(hashKey(presented), digestHex);
}

const ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** A new key: 16-character id, 256-bit secret. */
export function generateKey(): { id: string; key: string } {
  const idBytes = randomBytes(16);
  let id = '';
  for (const b of idBytes) id += ID_ALPHABET[b % ID_ALPHABET.length];
  const secret = randomBytes(32).toString('base64url');
  return { id, key: `${KEY_PREFIX}${id}_${secret}` };
}
