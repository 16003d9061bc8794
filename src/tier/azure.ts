/**
 * azure backend (@azure/storage-blob): block blobs in one container, under a prefix.
 *
 * Atomic put: a body up to the single-shot size is one Put Blob; a larger one is staged as
 * uncommitted blocks and published by one Put Block List. Either way readers see the old blob
 * or the new one, never a partial one; uncommitted blocks of a failed put are invisible and
 * expire on their own.
 *
 * Retention: when the container has version-level immutability (immutable storage with
 * versioning), retainUntil is set in the same request that publishes the blob (Put Blob or
 * Put Block List), so no moment exists where the blob is there without its policy. As on S3,
 * delete and overwrite before the date are refused by this backend (RetentionError), and the
 * service refuses deletes itself too.
 *
 * The SDK's own retries are off (maxTries 1): the retry decorator is the one retry policy.
 * Credentials, first match: AZURE_STORAGE_CONNECTION_STRING; the account (URL ?account= or
 * AZURE_STORAGE_ACCOUNT) with AZURE_STORAGE_KEY (or AZURE_STORAGE_ACCESS_KEY); or
 * AZURE_STORAGE_SAS_TOKEN.
 */
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  AnonymousCredential, BlobServiceClient, StorageSharedKeyCredential,
  type BlobImmutabilityPolicy, type BlockBlobClient, type ContainerClient, type StoragePipelineOptions,
} from '@azure/storage-blob';
import { checkLength, checkRetainDate, emptyStream, readAll } from './body.js';
import {
  InvalidRangeError, LengthMismatchError, ObjectNotFoundError, RetentionError, TierConfigError,
  TierIOError, redactSecrets, tierErrorIn,
} from './errors.js';
import { emptyRange, refuseIfRetained } from './guards.js';
import { BucketNotFoundError, type ListEntry, type ObjectInfo, type ObjectTier, type OpenTierOptions, type PutOptions } from './index.js';
import { validateKey, validatePrefix, validateRange, type ByteRange } from './keys.js';
import { isTransient } from './retry.js';
import type { AzureTarget } from './url.js';

const MiB = 1024 * 1024;
const SINGLE_SHOT_MAX = 16 * MiB;
const BLOCK_SIZE = 8 * MiB;
const BLOCKS_IN_FLIGHT = 2;
const PIPELINE: StoragePipelineOptions = { retryOptions: { maxTries: 1 } };

export class AzureTier implements ObjectTier {
  readonly url: string;
  private retention: boolean | undefined;

  private constructor(private readonly container: ContainerClient, private readonly target: AzureTarget) {
    this.url = target.redacted;
  }

  static async open(target: AzureTarget, opts: OpenTierOptions = {}): Promise<AzureTier> {
    const service = serviceClient(target, opts.env ?? process.env);
    const tier = new AzureTier(service.getContainerClient(target.container), target);
    await tier.checkContainer(opts.create ?? false);
    return tier;
  }

  async put(key: string, body: Buffer | Readable, opts: PutOptions = {}): Promise<void> {
    const blob = this.blob(key);
    checkRetainDate(opts.retainUntil);
    if (opts.retainUntil && !(await this.supportsRetention())) {
      throw new RetentionError(`put ${key}: ${this.url} has no version-level immutability, retention cannot be enforced`);
    }
    await refuseIfRetained(this, key, 'overwrite');
    const policy: BlobImmutabilityPolicy | undefined = opts.retainUntil ? { expiriesOn: opts.retainUntil, policyMode: 'Unlocked' } : undefined;
    try {
      if (Buffer.isBuffer(body)) {
        checkLength(key, opts.contentLength, body.length);
        await this.putBuffer(blob, body, policy);
      } else {
        await this.putStream(key, blob, body, opts.contentLength, policy);
      }
    } catch (err) {
      throw this.wrap('put', key, err);
    }
  }

  async get(key: string, range?: ByteRange): Promise<Buffer> {
    if (range?.length === 0) return emptyRange(this, key, range);
    return readAll(await this.download(key, range));
  }

  async getStream(key: string, range?: ByteRange): Promise<Readable> {
    if (range?.length === 0) {
      await emptyRange(this, key, range);
      return emptyStream();
    }
    return this.download(key, range);
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const blob = this.blob(key);
    try {
      const props = await blob.getProperties();
      const info: ObjectInfo = { size: props.contentLength ?? 0 };
      if (props.etag) info.etag = props.etag.replace(/"/g, '');
      if (props.immutabilityPolicyExpiresOn) info.retainUntil = new Date(props.immutabilityPolicyExpiresOn);
      return info;
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw this.wrap('head', key, err);
    }
  }

  async *list(prefix: string): AsyncIterable<ListEntry> {
    validatePrefix(prefix);
    const base = this.target.prefix;
    const pages = this.container.listBlobsFlat({ prefix: base + prefix }).byPage({ maxPageSize: 5000 });
    while (true) {
      let page;
      try {
        page = await pages.next();
      } catch (err) {
        throw this.wrap('list', prefix, err);
      }
      if (page.done) return;
      for (const item of page.value.segment.blobItems) {
        if (!item.name.startsWith(base)) continue;
        yield { key: item.name.slice(base.length), size: item.properties.contentLength ?? 0 };
      }
    }
  }

  async delete(key: string): Promise<void> {
    const blob = this.blob(key);
    await refuseIfRetained(this, key, 'delete');
    try {
      await blob.deleteIfExists();
    } catch (err) {
      throw this.wrap('delete', key, err);
    }
  }

  /** True when the container has version-level immutability (needed for per-blob retention). */
  async supportsRetention(): Promise<boolean> {
    if (this.retention !== undefined) return this.retention;
    try {
      const props = await this.container.getProperties();
      this.retention = props.isImmutableStorageWithVersioningEnabled === true;
    } catch (err) {
      throw this.wrap('supportsRetention', '', err);
    }
    return this.retention;
  }

  async close(): Promise<void> {}

  private blob(key: string): BlockBlobClient {
    return this.container.getBlockBlobClient(this.target.prefix + validateKey(key));
  }

  /** A missing container is created only when asked (see OpenTierOptions.create). */
  private async checkContainer(create: boolean): Promise<void> {
    try {
      if (create) await this.container.createIfNotExists();
      else if (!(await this.container.exists())) throw new BucketNotFoundError('container', this.target.container, `at ${this.accountUrl()}`);
    } catch (err) {
      throw this.wrap('open', '', err);
    }
  }

  /** The storage account's blob endpoint, without a SAS token or any other query. */
  private accountUrl(): string {
    const url = new URL(this.container.url);
    return `${url.origin}${url.pathname.replace(/\/[^/]*\/?$/, '')}`;
  }

  private async putBuffer(blob: BlockBlobClient, body: Buffer, policy: BlobImmutabilityPolicy | undefined): Promise<void> {
    if (body.length <= SINGLE_SHOT_MAX) {
      await blob.upload(body, body.length, { immutabilityPolicy: policy });
      return;
    }
    await this.putBlocks(blob, splitBuffer(body), policy);
  }

  /** A stream of at most one block is one Put Blob; a longer one is staged block by block as it arrives. */
  private async putStream(key: string, blob: BlockBlobClient, body: Readable, expected: number | undefined, policy: BlobImmutabilityPolicy | undefined): Promise<void> {
    const blocks = rechunk(body, BLOCK_SIZE, (total) => {
      if (expected !== undefined && total > expected) throw new LengthMismatchError(`put ${key}: body longer than contentLength ${expected}; nothing stored`);
    });
    const first = await blocks.next();
    const second = first.done ? first : await blocks.next();
    if (second.done) {
      const whole = first.done ? Buffer.alloc(0) : first.value;
      checkLength(key, expected, whole.length);
      await blob.upload(whole, whole.length, { immutabilityPolicy: policy });
      return;
    }
    let total = 0;
    async function* all(): AsyncGenerator<Buffer> {
      for (const block of [first.value as Buffer, second.value as Buffer]) {
        total += block.length;
        yield block;
      }
      for await (const block of blocks) {
        total += block.length;
        yield block;
      }
      checkLength(key, expected, total);
    }
    await this.putBlocks(blob, all(), policy);
  }

  /** Stages blocks (a few in flight) and commits them in one request; ids are unique per put. */
  private async putBlocks(blob: BlockBlobClient, blocks: AsyncIterable<Buffer> | Iterable<Buffer>, policy: BlobImmutabilityPolicy | undefined): Promise<void> {
    const upload = randomBytes(12).toString('hex');
    const ids: string[] = [];
    const inFlight = new Set<Promise<unknown>>();
    let failure: unknown;
    for await (const block of blocks) {
      if (failure) break;
      const id = Buffer.from(`${upload}-${String(ids.length).padStart(6, '0')}`).toString('base64');
      ids.push(id);
      const staged: Promise<unknown> = blob.stageBlock(id, block, block.length).catch((err) => { failure ??= err; });
      inFlight.add(staged);
      void staged.finally(() => inFlight.delete(staged));
      if (inFlight.size >= BLOCKS_IN_FLIGHT) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    if (failure) throw failure;
    await blob.commitBlockList(ids, { immutabilityPolicy: policy });
  }

  private async download(key: string, range?: ByteRange): Promise<Readable> {
    const blob = this.blob(key);
    if (range) validateRange(key, range);
    let res;
    try {
      res = range ? await blob.download(range.offset, range.length) : await blob.download();
    } catch (err) {
      if (statusOf(err) === 416) throw new InvalidRangeError(key, `offset ${range?.offset} at or past the end`);
      throw this.wrap('get', key, err);
    }
    const stream = res.readableStreamBody as Readable | undefined;
    if (!stream) throw new TierIOError(`azure get ${key}: no body in the response`, { transient: true });
    // The service clamps a range that runs past the end; the tier contract does not.
    if (range && res.contentLength !== range.length) {
      stream.destroy();
      throw new InvalidRangeError(key, `bytes ${range.offset}..${range.offset + range.length} past the end (${res.contentRange ?? 'short'})`);
    }
    return stream;
  }

  private wrap(op: string, key: string, err: unknown): Error {
    const known = tierErrorIn(err);
    if (known) return known;
    const status = statusOf(err);
    const code = (err as { code?: string }).code;
    if (status === 404 && (op === 'get' || op === 'getStream')) return new ObjectNotFoundError(key);
    if (status === 409 && code !== undefined && /Immutab|Legal/i.test(code)) {
      return new RetentionError(`${op} of ${key} refused by the service: ${code}`, { cause: err });
    }
    const detail = redactSecrets(err instanceof Error ? err.message.split('\n')[0] : String(err));
    return new TierIOError(`azure ${op} ${key} on ${this.url}: ${code ?? 'error'}${status ? ` (HTTP ${status})` : ''}: ${detail}`, {
      transient: isTransient(err), status, cause: err,
    });
  }
}

function serviceClient(target: AzureTarget, env: NodeJS.ProcessEnv): BlobServiceClient {
  const connection = env.AZURE_STORAGE_CONNECTION_STRING;
  if (connection && !target.endpoint) {
    try {
      return BlobServiceClient.fromConnectionString(connection, PIPELINE);
    } catch {
      throw new TierConfigError('AZURE_STORAGE_CONNECTION_STRING is malformed');
    }
  }
  const fromConnection = connection ? parseConnectionString(connection) : {};
  const account = target.account ?? fromConnection.AccountName ?? env.AZURE_STORAGE_ACCOUNT;
  if (!account) throw new TierConfigError('azure tier needs an account: ?account= in the URL, AZURE_STORAGE_ACCOUNT or AZURE_STORAGE_CONNECTION_STRING');
  const endpoint = target.endpoint ?? `https://${account}.blob.core.windows.net`;
  const key = fromConnection.AccountKey ?? env.AZURE_STORAGE_KEY ?? env.AZURE_STORAGE_ACCESS_KEY;
  if (key) return new BlobServiceClient(endpoint, new StorageSharedKeyCredential(account, key), PIPELINE);
  const sas = env.AZURE_STORAGE_SAS_TOKEN;
  if (sas) return new BlobServiceClient(`${endpoint}?${sas.replace(/^\?/, '')}`, new AnonymousCredential(), PIPELINE);
  throw new TierConfigError('no Azure credentials: set AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN');
}

function parseConnectionString(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) out[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return out;
}

function* splitBuffer(body: Buffer): Generator<Buffer> {
  for (let off = 0; off < body.length; off += BLOCK_SIZE) yield body.subarray(off, off + BLOCK_SIZE);
}

/** Regroups a stream into blocks of `size` bytes (the last may be shorter). */
async function* rechunk(stream: Readable, size: number, onTotal: (total: number) => void): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let held = 0;
  let total = 0;
  for await (const chunk of stream) {
    let buf: Buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
    total += buf.length;
    onTotal(total);
    while (held + buf.length >= size) {
      const take = size - held;
      parts.push(buf.subarray(0, take));
      yield Buffer.concat(parts);
      parts = [];
      held = 0;
      buf = buf.subarray(take);
    }
    if (buf.length > 0) {
      parts.push(buf);
      held += buf.length;
    }
  }
  if (held > 0) yield Buffer.concat(parts);
}

function statusOf(err: unknown): number | undefined {
  const status = (err as { statusCode?: unknown } | undefined)?.statusCode;
  return typeof status === 'number' ? status : undefined;
}
