/**
 * The object tier: where sealed containers and catalogs live outside the data directory
 * (fs, S3, Azure Blob). Kopia-like: a flat namespace of immutable-by-convention objects.
 *
 * What every backend guarantees (the conformance suite in test/tier/ checks each one):
 * - Atomic put: an object is either absent, its old complete body or its new complete body.
 *   No reader, lister or head ever sees a partial object, also under concurrent puts of one key
 *   and after a crash mid-put. A put that fails (or whose body differs from contentLength)
 *   leaves the previous state.
 * - Read-after-write: once put() resolves, get/head/list from this process see the new body;
 *   once delete() resolves, they do not see the object.
 * - Durability: put() resolves only when the store has made the object durable (fs: file and
 *   directory fsynced; S3/Azure: the service acknowledged it).
 * - Ranges: get(key, {offset, length}) returns exactly `length` bytes or throws
 *   InvalidRangeError; a range reaching past the end is an error, never clamped. length 0 is
 *   allowed anywhere inside the object (offset <= size).
 * - Missing objects: get/getStream throw ObjectNotFoundError, head answers undefined,
 *   delete succeeds (delete is idempotent).
 * - list(prefix) yields every key starting with prefix exactly once, in byte order, with its
 *   size, paging through any number of keys.
 * - Keys follow keys.ts on every backend (a bad key throws InvalidKeyError before any I/O).
 * - Retention: put(..., {retainUntil}) on a tier whose supportsRetention() is false throws
 *   RetentionError (never ignored); on one that supports it, delete or overwrite before the date
 *   throws RetentionError and head reports retainUntil.
 * - `url` is the target without credentials; no method puts credentials in an error message.
 * - Opening never creates the bucket (S3), container (Azure) or directory (fs) the URL names
 *   unless the caller asks with `create: true`: a mistyped name must fail loudly, not become a
 *   new empty place that replication fills and DR restore never looks in. A missing one throws
 *   BucketNotFoundError, naming it and where it was looked for.
 * - Failures of the store surface as TierIOError with `transient` set when a retry may help.
 */
import type { Readable } from 'node:stream';
import type { ByteRange } from './keys.js';
import { TierConfigError } from './errors.js';
import { parseTierUrl } from './url.js';

export interface PutOptions {
  /** Keep the object undeletable until this date (S3 Object Lock, Azure immutability, fs sidecar). */
  retainUntil?: Date;
  /** Expected body length; a stream that ends short or long is refused and nothing is stored. */
  contentLength?: number;
}

export interface ObjectInfo {
  size: number;
  etag?: string;
  retainUntil?: Date;
}

export interface ListEntry {
  key: string;
  size: number;
}

export interface ObjectTier {
  /** The target as a URL, with no credentials in it. */
  readonly url: string;
  put(key: string, body: Buffer | Readable, opts?: PutOptions): Promise<void>;
  get(key: string, range?: ByteRange): Promise<Buffer>;
  getStream(key: string, range?: ByteRange): Promise<Readable>;
  head(key: string): Promise<ObjectInfo | undefined>;
  list(prefix: string): AsyncIterable<ListEntry>;
  /** Idempotent: deleting a missing key succeeds. */
  delete(key: string): Promise<void>;
  supportsRetention(): Promise<boolean>;
  close(): Promise<void>;
}

export interface OpenTierOptions {
  /**
   * Create the directory, bucket or container when it does not exist (default false). Set it
   * only on the operator's explicit request (`vtl replicate target add --create-bucket`).
   */
  create?: boolean;
  /** Where credentials are read from (default process.env). */
  env?: NodeJS.ProcessEnv;
}

/** What a tier URL names as the place for its objects. */
export type BucketKind = 'bucket' | 'container' | 'directory';

const KIND_LABEL: Record<BucketKind, string> = { bucket: 's3 bucket', container: 'azure container', directory: 'fs tier directory' };

/**
 * The bucket (S3), container (Azure) or directory (fs) a tier URL names does not exist, and the
 * caller did not ask to create it. A TierConfigError: the URL, not the store, is what is wrong.
 */
export class BucketNotFoundError extends TierConfigError {
  /**
   * @param bucket the bucket, container or directory as the URL names it
   * @param where where it was looked for, as a phrase ("at http://host:9000", "on this server")
   */
  constructor(readonly kind: BucketKind, readonly bucket: string, readonly where: string) {
    super(`${KIND_LABEL[kind]} "${bucket}" does not exist ${where}`);
  }
}

/**
 * Opens a tier from its URL (file://, s3://, azure://). SDKs are loaded only for the scheme in
 * use, so the embedded fs default starts without them.
 */
export async function openTier(url: string, opts: OpenTierOptions = {}): Promise<ObjectTier> {
  const target = parseTierUrl(url);
  switch (target.kind) {
    case 'fs': {
      const { FsTier } = await import('./fs.js');
      return FsTier.open(target, opts);
    }
    case 's3': {
      const { S3Tier } = await import('./s3.js');
      return S3Tier.open(target, opts);
    }
    case 'azure': {
      const { AzureTier } = await import('./azure.js');
      return AzureTier.open(target, opts);
    }
    default:
      throw new TierConfigError('unknown tier kind');
  }
}

export type { ByteRange } from './keys.js';
export { validateKey, validatePrefix } from './keys.js';
export { parseTierUrl } from './url.js';
export type { TierTarget } from './url.js';
export {
  TierError, ObjectNotFoundError, InvalidRangeError, InvalidKeyError, RetentionError,
  LengthMismatchError, TierConfigError, TierIOError, TierAccessError,
} from './errors.js';
export { withRetry, isTransient } from './retry.js';
export type { RetryOptions } from './retry.js';
export { withMetrics } from './metrics.js';
export type { MeteredTier, TierMetrics, OperationMetrics } from './metrics.js';
