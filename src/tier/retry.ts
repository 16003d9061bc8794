/**
 * Retry decorator: repeats an operation that failed transiently (network reset, 5xx,
 * throttling) with exponential backoff and full jitter, and never one that failed for a reason a
 * retry cannot change (not found, bad key or range, retention, any other 4xx).
 *
 * What it can and cannot replay: a put with a Buffer body is retried; a put with a stream body
 * is tried once (the stream is consumed). getStream retries opening the stream, not a failure in
 * the middle of reading it. A list that fails midway restarts and skips the keys it already
 * yielded (lists are in byte order), so callers still see each key once.
 */
import type { Readable } from 'node:stream';
import { TierError } from './errors.js';
import type { ListEntry, ObjectInfo, ObjectTier, PutOptions } from './index.js';
import type { ByteRange } from './keys.js';

export interface RetryOptions {
  /** Retries after the first attempt (default 5). */
  retries?: number;
  /** First backoff ceiling in ms (default 100); doubles each retry. */
  baseMs?: number;
  /** Largest backoff in ms (default 10,000). */
  maxMs?: number;
  /** Called before each retry, e.g. to log or count. */
  onRetry?: (info: { op: string; key: string; attempt: number; delayMs: number; error: unknown }) => void;
  /** For tests: the source of jitter in [0, 1) and the sleep. */
  random?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

const NETWORK_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENETUNREACH',
  'EHOSTUNREACH', 'ENETDOWN', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT', 'EMFILE', 'ENFILE', 'EBUSY', 'EAGAIN', 'REQUEST_SEND_ERROR',
]);
const TRANSIENT_STATUS = new Set([408, 429, 500, 502, 503, 504]);
const TRANSIENT_NAMES = new Set([
  'SlowDown', 'Throttling', 'ThrottlingException', 'RequestTimeout',
  'InternalError', 'ServiceUnavailable', 'ServerBusy', 'OperationTimedOut', 'TimeoutError',
]);

/** Whether repeating the request may help. Tier errors say so themselves; raw errors are classified. */
export function isTransient(err: unknown): boolean {
  if (err instanceof TierError) return err.transient;
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { code?: unknown; name?: unknown; statusCode?: unknown; $metadata?: { httpStatusCode?: number }; cause?: unknown };
  if (typeof e.code === 'string' && (NETWORK_CODES.has(e.code) || TRANSIENT_NAMES.has(e.code))) return true;
  if (typeof e.name === 'string' && TRANSIENT_NAMES.has(e.name)) return true;
  const status = e.$metadata?.httpStatusCode ?? (typeof e.statusCode === 'number' ? e.statusCode : undefined);
  if (status !== undefined) return TRANSIENT_STATUS.has(status);
  return e.cause !== undefined && e.cause !== err ? isTransient(e.cause) : false;
}

export function withRetry(tier: ObjectTier, opts: RetryOptions = {}): ObjectTier {
  return new RetryingTier(tier, opts);
}

class RetryingTier implements ObjectTier {
  readonly url: string;
  private readonly retries: number;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly random: () => number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(private readonly inner: ObjectTier, private readonly opts: RetryOptions) {
    this.url = inner.url;
    this.retries = opts.retries ?? 5;
    this.baseMs = opts.baseMs ?? 100;
    this.maxMs = opts.maxMs ?? 10_000;
    this.random = opts.random ?? Math.random;
    this.sleep = opts.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    if (!Number.isInteger(this.retries) || this.retries < 0) throw new RangeError('retries must be a non-negative integer');
  }

  put(key: string, body: Buffer | Readable, opts?: PutOptions): Promise<void> {
    if (!Buffer.isBuffer(body)) return this.inner.put(key, body, opts);
    return this.attempt('put', key, () => this.inner.put(key, body, opts));
  }

  get(key: string, range?: ByteRange): Promise<Buffer> {
    return this.attempt('get', key, () => this.inner.get(key, range));
  }

  getStream(key: string, range?: ByteRange): Promise<Readable> {
    return this.attempt('getStream', key, () => this.inner.getStream(key, range));
  }

  head(key: string): Promise<ObjectInfo | undefined> {
    return this.attempt('head', key, () => this.inner.head(key));
  }

  async *list(prefix: string): AsyncIterable<ListEntry> {
    let last: string | undefined;
    for (let attempt = 0; ; attempt++) {
      try {
        for await (const entry of this.inner.list(prefix)) {
          if (last !== undefined && entry.key <= last) continue;
          last = entry.key;
          yield entry;
        }
        return;
      } catch (err) {
        if (attempt >= this.retries || !isTransient(err)) throw err;
        await this.backoff('list', prefix, attempt, err);
      }
    }
  }

  delete(key: string): Promise<void> {
    return this.attempt('delete', key, () => this.inner.delete(key));
  }

  supportsRetention(): Promise<boolean> {
    return this.attempt('supportsRetention', '', () => this.inner.supportsRetention());
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private async attempt<T>(op: string, key: string, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (attempt >= this.retries || !isTransient(err)) throw err;
        await this.backoff(op, key, attempt, err);
      }
    }
  }

  /** Full jitter: a uniform delay below the exponential ceiling spreads retrying clients apart. */
  private async backoff(op: string, key: string, attempt: number, error: unknown): Promise<void> {
    const ceiling = Math.min(this.maxMs, this.baseMs * 2 ** attempt);
    const delayMs = Math.floor(this.random() * ceiling);
    this.opts.onRetry?.({ op, key, attempt: attempt + 1, delayMs, error });
    await this.sleep(delayMs);
  }
}
