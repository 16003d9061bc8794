/**
 * Checks the SDK-backed tiers share: both services answer a zero-length range and a write
 * over a retained object differently from the tier contract, so these ask `head` first.
 */
import { ObjectNotFoundError, RetentionError } from './errors.js';
import type { ObjectTier } from './index.js';
import { checkRangeInside, validateRange, type ByteRange } from './keys.js';

/** A zero-length range: valid anywhere up to the object's size, for an object that exists. */
export async function emptyRange(tier: ObjectTier, key: string, range: ByteRange): Promise<Buffer> {
  validateRange(key, range);
  const info = await tier.head(key);
  if (!info) throw new ObjectNotFoundError(key);
  checkRangeInside(key, range, info.size);
  return Buffer.alloc(0);
}

/** Refuses a delete or overwrite of an object whose retention has not expired. */
export async function refuseIfRetained(tier: ObjectTier, key: string, what: 'delete' | 'overwrite'): Promise<void> {
  if (!(await tier.supportsRetention())) return;
  const until = (await tier.head(key))?.retainUntil;
  if (until && until.getTime() > Date.now()) {
    throw new RetentionError(`${what} of ${key} refused: retained until ${until.toISOString()}`);
  }
}
