/**
 * Key and range rules shared by every backend, so a key valid on one tier is valid on all
 * (replication copies keys between tiers unchanged) and no key can escape an fs root.
 *
 * A key is 1..1024 bytes of '/'-separated segments; each segment is 1..255 characters of
 * [A-Za-z0-9._~=+@,-] and does not start with '.' (so no '.', '..' or hidden names: the fs
 * backend keeps its temp and sidecar files under dot-names that no key can reach).
 * No leading or trailing '/', no empty segment. Listing order is byte order of keys.
 */
import { InvalidKeyError, InvalidRangeError } from './errors.js';

const SEGMENT = /^[A-Za-z0-9_~=+@,-][A-Za-z0-9._~=+@,-]{0,254}$/;
const PREFIX_CHARS = /^[A-Za-z0-9._~=+@,/-]*$/;
export const MAX_KEY_LENGTH = 1024;

export function validateKey(key: string): string {
  if (typeof key !== 'string' || key.length === 0) throw new InvalidKeyError(String(key), 'empty');
  if (key.length > MAX_KEY_LENGTH) throw new InvalidKeyError(key, `longer than ${MAX_KEY_LENGTH}`);
  if (key.startsWith('/')) throw new InvalidKeyError(key, 'absolute path');
  for (const segment of key.split('/')) {
    if (segment === '') throw new InvalidKeyError(key, 'empty segment');
    if (segment === '..' || segment === '.') throw new InvalidKeyError(key, `'${segment}' segment`);
    if (!SEGMENT.test(segment)) {
      throw new InvalidKeyError(key, `segment ${JSON.stringify(segment.slice(0, 64))} must match [A-Za-z0-9._~=+@,-] and not start with '.'`);
    }
  }
  return key;
}

/**
 * A list prefix is any leading part of a valid key ('' lists everything): it may end in '/' or
 * in the middle of a segment, but every complete segment must be valid.
 */
export function validatePrefix(prefix: string): string {
  if (typeof prefix !== 'string') throw new InvalidKeyError(String(prefix), 'prefix must be a string');
  if (prefix === '') return prefix;
  if (prefix.length > MAX_KEY_LENGTH) throw new InvalidKeyError(prefix, `longer than ${MAX_KEY_LENGTH}`);
  if (!PREFIX_CHARS.test(prefix)) throw new InvalidKeyError(prefix, 'prefix has characters no key can have');
  const segments = prefix.split('/');
  const complete = segments.slice(0, -1);
  const last = segments[segments.length - 1];
  for (const segment of complete) validateKey(segment);
  if (last !== '' && last.startsWith('.')) throw new InvalidKeyError(prefix, "segment starts with '.'");
  return prefix;
}

export interface ByteRange {
  offset: number;
  length: number;
}

/** Rejects malformed ranges before any request is made. */
export function validateRange(key: string, range: ByteRange): void {
  const { offset, length } = range;
  if (!Number.isSafeInteger(offset) || offset < 0) throw new InvalidRangeError(key, `offset ${offset} is not a non-negative integer`);
  if (!Number.isSafeInteger(length) || length < 0) throw new InvalidRangeError(key, `length ${length} is not a non-negative integer`);
}

/** The one rule all backends agree on: a range must lie wholly inside the object. */
export function checkRangeInside(key: string, range: ByteRange, size: number): void {
  if (range.offset + range.length > size) {
    throw new InvalidRangeError(key, `bytes ${range.offset}..${range.offset + range.length} past the end (size ${size})`);
  }
}
