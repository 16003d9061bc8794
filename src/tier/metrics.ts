/**
 * Metrics decorator: counts requests, errors, bytes and time per operation in a plain object
 * (the api layer turns it into Prometheus series). Bytes are body bytes: written by put, read by
 * get/getStream (counted as the stream is consumed). A missing object (head answering undefined,
 * get throwing ObjectNotFoundError) counts as a request, not as an error.
 */
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { ObjectNotFoundError } from './errors.js';
import type { ListEntry, ObjectInfo, ObjectTier, PutOptions } from './index.js';
import type { ByteRange } from './keys.js';

export interface OperationMetrics {
  requests: number;
  errors: number;
  bytes: number;
  /** Sum of wall-clock time of the calls, in seconds (list: until the iteration ends). */
  seconds: number;
}

export type TierOperation = 'put' | 'get' | 'head' | 'list' | 'delete';
export type TierMetrics = Record<TierOperation, OperationMetrics>;

export interface MeteredTier extends ObjectTier {
  readonly metrics: TierMetrics;
}

export function withMetrics(tier: ObjectTier): MeteredTier {
  return new MeteringTier(tier);
}

function emptyMetrics(): TierMetrics {
  const zero = (): OperationMetrics => ({ requests: 0, errors: 0, bytes: 0, seconds: 0 });
  return { put: zero(), get: zero(), head: zero(), list: zero(), delete: zero() };
}

class MeteringTier implements MeteredTier {
  readonly url: string;
  readonly metrics = emptyMetrics();

  constructor(private readonly inner: ObjectTier) {
    this.url = inner.url;
  }

  put(key: string, body: Buffer | Readable, opts?: PutOptions): Promise<void> {
    if (Buffer.isBuffer(body)) {
      return this.timed('put', () => this.inner.put(key, body, opts), () => body.length);
    }
    const counter = new ByteCounter();
    body.on('error', (err) => counter.destroy(err));
    return this.timed('put', () => this.inner.put(key, body.pipe(counter), opts), () => counter.bytes);
  }

  get(key: string, range?: ByteRange): Promise<Buffer> {
    return this.timed('get', () => this.inner.get(key, range), (buf) => buf.length);
  }

  async getStream(key: string, range?: ByteRange): Promise<Readable> {
    const stream = await this.timed('get', () => this.inner.getStream(key, range), () => 0);
    const counter = new ByteCounter((n) => { this.metrics.get.bytes += n; });
    stream.on('error', (err) => counter.destroy(err));
    return stream.pipe(counter);
  }

  head(key: string): Promise<ObjectInfo | undefined> {
    return this.timed('head', () => this.inner.head(key), () => 0);
  }

  async *list(prefix: string): AsyncIterable<ListEntry> {
    const m = this.metrics.list;
    const start = performance.now();
    m.requests++;
    try {
      yield* this.inner.list(prefix);
    } catch (err) {
      m.errors++;
      throw err;
    } finally {
      m.seconds += (performance.now() - start) / 1000;
    }
  }

  delete(key: string): Promise<void> {
    return this.timed('delete', () => this.inner.delete(key), () => 0);
  }

  supportsRetention(): Promise<boolean> {
    return this.inner.supportsRetention();
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private async timed<T>(op: TierOperation, fn: () => Promise<T>, bytesOf: (result: T) => number): Promise<T> {
    const m = this.metrics[op];
    const start = performance.now();
    m.requests++;
    try {
      const result = await fn();
      m.bytes += bytesOf(result);
      return result;
    } catch (err) {
      if (!(err instanceof ObjectNotFoundError)) m.errors++;
      throw err;
    } finally {
      m.seconds += (performance.now() - start) / 1000;
    }
  }
}

class ByteCounter extends Transform {
  bytes = 0;

  constructor(private readonly onBytes?: (n: number) => void) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    this.onBytes?.(chunk.length);
    done(null, chunk);
  }
}
