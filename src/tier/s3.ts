/**
 * s3 backend (AWS SDK v3): any S3-compatible endpoint, path-style addressing, multipart upload
 * for bodies over a threshold, Object Lock retention when the bucket has it enabled.
 *
 * Atomic put comes from S3 itself: PutObject and CompleteMultipartUpload publish a whole object
 * or nothing, and a failed multipart upload is aborted. S3 is strongly consistent
 * (read-after-write, list-after-write) since 2020; other endpoints must be too.
 *
 * Retention: with Object Lock (the bucket is then versioned) a delete only adds a delete
 * marker and the locked version survives; this backend refuses delete and overwrite of an object
 * retained into the future itself (RetentionError), so callers see the same rule on every tier.
 * On a bucket without Object Lock, supportsRetention() is false and retainUntil is refused.
 *
 * The SDK's own retries are off (maxAttempts 1): the retry decorator is the one retry policy.
 * Credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY(/AWS_SESSION_TOKEN) from the given
 * environment, else the SDK's default chain (environment, ~/.aws files, AWS_PROFILE, roles).
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  type BucketLocationConstraint, CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, GetObjectLockConfigurationCommand,
  HeadBucketCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client,
  type GetObjectCommandOutput, type PutObjectCommandInput, type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { LengthGuard, checkLength, checkRetainDate, emptyStream, readAll } from './body.js';
import { InvalidRangeError, ObjectNotFoundError, RetentionError, TierAccessError, TierConfigError, TierIOError, redactSecrets, tierErrorIn, unreachableCause } from './errors.js';
import { emptyRange, refuseIfRetained } from './guards.js';
import { BucketNotFoundError, type ListEntry, type ObjectInfo, type ObjectTier, type OpenTierOptions, type PutOptions } from './index.js';
import { validateKey, validatePrefix, validateRange, type ByteRange } from './keys.js';
import { isTransient } from './retry.js';
import type { S3Target } from './url.js';

const MiB = 1024 * 1024;
const DEFAULT_MULTIPART_THRESHOLD = 16 * MiB;
const DEFAULT_PART_SIZE = 8 * MiB;

export class S3Tier implements ObjectTier {
  readonly url: string;
  /** Requests sent, by command name (e.g. UploadPartCommand): shows how puts were split. */
  readonly requests: Record<string, number> = {};
  private retention: boolean | undefined;
  private readonly threshold: number;
  private readonly partSize: number;

  private constructor(private readonly client: S3Client, private readonly target: S3Target, private readonly region: string) {
    this.url = target.redacted;
    this.threshold = target.multipartThreshold ?? DEFAULT_MULTIPART_THRESHOLD;
    this.partSize = target.partSize ?? DEFAULT_PART_SIZE;
    client.middlewareStack.add((next, context) => (args) => {
      const name = context.commandName ?? 'unknown';
      this.requests[name] = (this.requests[name] ?? 0) + 1;
      return next(args);
    }, { step: 'initialize', name: 'vtlRequestCounter' });
  }

  static async open(target: S3Target, opts: OpenTierOptions = {}): Promise<S3Tier> {
    const env = opts.env ?? process.env;
    const region = target.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? (target.endpoint ? 'us-east-1' : undefined);
    if (!region) throw new TierConfigError('s3 tier needs a region: ?region=... in the URL or AWS_REGION');
    const config: S3ClientConfig = { region, forcePathStyle: target.pathStyle, maxAttempts: 1 };
    if (target.endpoint) {
      config.endpoint = target.endpoint;
      // Many S3-compatible servers reject the SDK's default trailing checksums (aws-chunked).
      config.requestChecksumCalculation = 'WHEN_REQUIRED';
      config.responseChecksumValidation = 'WHEN_REQUIRED';
    }
    if (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) {
      config.credentials = {
        accessKeyId: env.AWS_ACCESS_KEY_ID,
        secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
        ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}),
      };
    }
    const tier = new S3Tier(new S3Client(config), target, region);
    try {
      await tier.checkBucket(opts.create ?? false);
    } catch (err) {
      tier.client.destroy();
      throw err;
    }
    return tier;
  }

  async put(key: string, body: Buffer | Readable, opts: PutOptions = {}): Promise<void> {
    const Key = this.fullKey(key);
    checkRetainDate(opts.retainUntil);
    if (opts.retainUntil && !(await this.supportsRetention())) {
      throw new RetentionError(`put ${key}: ${this.url} has no Object Lock, retention cannot be enforced`);
    }
    await refuseIfRetained(this, key, 'overwrite');
    const params: PutObjectCommandInput = { Bucket: this.target.bucket, Key };
    if (opts.retainUntil) {
      Object.assign(params, { ObjectLockMode: this.target.lockMode, ObjectLockRetainUntilDate: opts.retainUntil, ChecksumAlgorithm: 'CRC32' });
    }
    if (Buffer.isBuffer(body)) {
      checkLength(key, opts.contentLength, body.length);
      if (body.length <= this.threshold) return this.putSingle(key, { ...params, Body: body }, body);
      return this.putMultipart(key, { ...params, Body: body });
    }
    const guard = new LengthGuard(key, opts.contentLength);
    body.on('error', (err) => guard.destroy(err));
    // Remember why the body failed: lib-storage may report its failed abort request instead.
    let bodyError: unknown;
    guard.on('error', (err) => { bodyError ??= err; });
    return this.putMultipart(key, { ...params, Body: body.pipe(guard) }, () => bodyError);
  }

  async get(key: string, range?: ByteRange): Promise<Buffer> {
    if (range?.length === 0) return emptyRange(this, key, range);
    const res = await this.getObject(key, range);
    return readAll(res.Body as Readable);
  }

  async getStream(key: string, range?: ByteRange): Promise<Readable> {
    if (range?.length === 0) {
      await emptyRange(this, key, range);
      return emptyStream();
    }
    return (await this.getObject(key, range)).Body as Readable;
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const Key = this.fullKey(key);
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.target.bucket, Key }));
      const info: ObjectInfo = { size: res.ContentLength ?? 0 };
      if (res.ETag) info.etag = res.ETag.replace(/"/g, '');
      if (res.ObjectLockRetainUntilDate) info.retainUntil = new Date(res.ObjectLockRetainUntilDate);
      return info;
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw this.wrap('head', key, err);
    }
  }

  async *list(prefix: string): AsyncIterable<ListEntry> {
    validatePrefix(prefix);
    const base = this.target.prefix;
    let token: string | undefined;
    do {
      const page = await this.client
        .send(new ListObjectsV2Command({ Bucket: this.target.bucket, Prefix: base + prefix, ContinuationToken: token }))
        .catch((err) => { throw this.wrap('list', prefix, err); });
      for (const obj of page.Contents ?? []) {
        if (obj.Key === undefined || !obj.Key.startsWith(base)) continue;
        yield { key: obj.Key.slice(base.length), size: obj.Size ?? 0 };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async delete(key: string): Promise<void> {
    const Key = this.fullKey(key);
    await refuseIfRetained(this, key, 'delete');
    await this.client
      .send(new DeleteObjectCommand({ Bucket: this.target.bucket, Key }))
      .catch((err) => {
        if (statusOf(err) !== 404) throw this.wrap('delete', key, err);
      });
  }

  /** True when the bucket has Object Lock enabled; any definite "no" (incl. NotImplemented) is false. */
  async supportsRetention(): Promise<boolean> {
    if (this.retention !== undefined) return this.retention;
    try {
      const res = await this.client.send(new GetObjectLockConfigurationCommand({ Bucket: this.target.bucket }));
      this.retention = res.ObjectLockConfiguration?.ObjectLockEnabled === 'Enabled';
    } catch (err) {
      if (isTransient(err)) throw this.wrap('supportsRetention', '', err);
      this.retention = false;
    }
    return this.retention;
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  private fullKey(key: string): string {
    return this.target.prefix + validateKey(key);
  }

  /** A missing bucket is created only when asked (see OpenTierOptions.create). */
  private async checkBucket(create: boolean): Promise<void> {
    const Bucket = this.target.bucket;
    try {
      await this.client.send(new HeadBucketCommand({ Bucket }));
      return;
    } catch (err) {
      if (statusOf(err) !== 404) throw this.wrap('open', '', err);
      if (!create) throw new BucketNotFoundError('bucket', Bucket, this.where());
    }
    await this.createBucket();
  }

  private async createBucket(): Promise<void> {
    const Bucket = this.target.bucket;
    // Outside us-east-1, S3 refuses a CreateBucket that does not repeat the region.
    const location = this.region === 'us-east-1' ? {} : { CreateBucketConfiguration: { LocationConstraint: this.region as BucketLocationConstraint } };
    await this.client.send(new CreateBucketCommand({ Bucket, ...location })).catch((err) => {
      // Bucket names are global: "already exists" is someone else's bucket, ours would be
      // BucketAlreadyOwnedByYou (a concurrent create, harmless).
      if ((err as Error).name === 'BucketAlreadyExists') {
        throw new TierConfigError(`s3 bucket "${Bucket}" ${this.where()} belongs to another account (bucket names are global): choose another name`);
      }
      if (statusOf(err) !== 409) throw this.wrap('create bucket', '', err);
    });
  }

  /** Where the bucket is looked for, for messages: the endpoint, or AWS and the region. */
  private where(): string {
    return this.target.endpoint ? `at ${this.target.endpoint}` : `in AWS S3 region ${this.region}`;
  }

  private async putSingle(key: string, params: PutObjectCommandInput, body: Buffer): Promise<void> {
    // Content-MD5 lets the server reject a body damaged in transit.
    if (!params.ChecksumAlgorithm) params.ContentMD5 = createHash('md5').update(body).digest('base64');
    params.ContentLength = body.length;
    await this.client.send(new PutObjectCommand(params)).catch((err) => { throw this.wrap('put', key, err); });
  }

  /** lib-storage splits the body into parts (a small stream becomes one PutObject) and aborts on failure. */
  private async putMultipart(key: string, params: PutObjectCommandInput, bodyError?: () => unknown): Promise<void> {
    const upload = new Upload({ client: this.client, params, partSize: this.partSize, queueSize: 2, leavePartsOnError: false });
    await upload.done().catch((err) => { throw this.wrap('put', key, bodyError?.() ?? err); });
  }

  private async getObject(key: string, range?: ByteRange): Promise<GetObjectCommandOutput> {
    const Key = this.fullKey(key);
    if (range) validateRange(key, range);
    const Range = range ? `bytes=${range.offset}-${range.offset + range.length - 1}` : undefined;
    let res: GetObjectCommandOutput;
    try {
      res = await this.client.send(new GetObjectCommand({ Bucket: this.target.bucket, Key, Range }));
    } catch (err) {
      if (statusOf(err) === 416) throw new InvalidRangeError(key, `offset ${range?.offset} at or past the end`);
      throw this.wrap('get', key, err);
    }
    // S3 clamps a range that runs past the end; the tier contract does not.
    if (range && res.ContentLength !== range.length) {
      (res.Body as Readable | undefined)?.destroy();
      throw new InvalidRangeError(key, `bytes ${range.offset}..${range.offset + range.length} past the end (${res.ContentRange ?? 'short'})`);
    }
    return res;
  }

  private wrap(op: string, key: string, err: unknown): Error {
    const known = tierErrorIn(err);
    if (known) return known;
    if (statusOf(err) === 404 && (op === 'get' || op === 'getStream')) return new ObjectNotFoundError(key);
    const status = statusOf(err);
    const what = `s3 ${op}${key ? ` ${key}` : ''}`;
    const name = err instanceof Error ? err.name : 'Error';
    const detail = redactSecrets(err instanceof Error ? err.message : String(err));
    // A HEAD answer has no body: the SDK then says only "Unknown: UnknownError"; the status says it all.
    const vague = (t: string) => !t || t === 'Unknown' || t === 'UnknownError';
    const label = vague(name) ? (status ? `HTTP ${status}` : 'Error') : status ? `${name} (HTTP ${status})` : name;
    const said = vague(detail) || detail === name ? label : `${label}: ${detail}`;
    if (status === 401 || status === 403) {
      return new TierAccessError(
        `access denied by ${this.url}: the credentials were refused (${what}: ${said}). ` +
          'Check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the profile or role in use) and the bucket policy',
        { transient: false, status, cause: err },
      );
    }
    const down = unreachableCause(err);
    if (down) {
      const cause = detail.includes(down) ? detail : detail ? `${down}: ${detail}` : down;
      return new TierIOError(`${this.url} cannot be reached (${what}: ${cause}): is the endpoint up and reachable from this server?`, {
        transient: isTransient(err), cause: err,
      });
    }
    return new TierIOError(`${what} on ${this.url}: ${said}`, { transient: isTransient(err), status, cause: err });
  }
}

function statusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}
