import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  ObjectNotFoundError, TierIOError, isTransient, openTier, withRetry,
  type ByteRange, type ListEntry, type ObjectTier, type PutOptions,
} from '../../src/tier/index.js';
import { collect } from './conformance.js';

/** A real fs tier that fails the next N calls of an operation with a chosen error. */
class FlakyTier implements ObjectTier {
  readonly url: string;
  readonly calls: Record<string, number> = {};
  private failures: Record<string, { left: number; error: () => unknown }> = {};
  listFailAfter: number | undefined;

  constructor(private readonly inner: ObjectTier) {
    this.url = inner.url;
  }

  failNext(op: string, times: number, error: () => unknown): void {
    this.failures[op] = { left: times, error };
  }

  private hit(op: string): void {
    this.calls[op] = (this.calls[op] ?? 0) + 1;
    const f = this.failures[op];
    if (f && f.left > 0) {
      f.left--;
      throw f.error();
    }
  }

  async put(key: string, body: Buffer | Readable, opts?: PutOptions): Promise<void> { this.hit('put'); return this.inner.put(key, body, opts); }
  async get(key: string, range?: ByteRange): Promise<Buffer> { this.hit('get'); return this.inner.get(key, range); }
  async getStream(key: string, range?: ByteRange): Promise<Readable> { this.hit('getStream'); return this.inner.getStream(key, range); }
  async head(key: string) { this.hit('head'); return this.inner.head(key); }
  async delete(key: string): Promise<void> { this.hit('delete'); return this.inner.delete(key); }
  async supportsRetention(): Promise<boolean> { return this.inner.supportsRetention(); }
  async close(): Promise<void> {}

  async *list(prefix: string): AsyncIterable<ListEntry> {
    this.calls.list = (this.calls.list ?? 0) + 1;
    let n = 0;
    for await (const entry of this.inner.list(prefix)) {
      if (this.listFailAfter !== undefined && n === this.listFailAfter) {
        this.listFailAfter = undefined;
        throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
      }
      n++;
      yield entry;
    }
  }
}

const reset = (): unknown => Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
const s3Error = (status: number, name: string): unknown => Object.assign(new Error(name), { name, $metadata: { httpStatusCode: status } });
const azureError = (status: number, code: string): unknown => Object.assign(new Error(code), { name: 'RestError', code, statusCode: status });

describe('withRetry', () => {
  let dir: string;
  let flaky: FlakyTier;
  let delays: number[];
  let tier: ObjectTier;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vtl-tier-retry-'));
    flaky = new FlakyTier(await openTier(pathToFileURL(dir).href));
    delays = [];
    tier = withRetry(flaky, { retries: 4, baseMs: 100, maxMs: 1_000, random: () => 0.5, sleep: async (ms) => { delays.push(ms); } });
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('retries transient failures with exponential backoff and jitter, then succeeds', async () => {
    flaky.failNext('put', 3, reset);
    await tier.put('k', Buffer.from('body'));
    expect(flaky.calls.put).toBe(4);
    expect(delays).toEqual([50, 100, 200]); // random 0.5 x ceiling 100, 200, 400
    expect((await tier.get('k')).toString()).toBe('body');
  });

  it('caps the backoff at maxMs and gives up after the retries, with the last error', async () => {
    flaky.failNext('get', 10, () => s3Error(503, 'SlowDown'));
    await tier.put('k', Buffer.from('x'));
    await expect(tier.get('k')).rejects.toMatchObject({ name: 'SlowDown' });
    expect(flaky.calls.get).toBe(5);
    expect(delays).toEqual([50, 100, 200, 400]);
    const capped = withRetry(flaky, { retries: 6, baseMs: 100, maxMs: 1_000, random: () => 0.999, sleep: async (ms) => { delays.push(ms); } });
    delays.length = 0;
    flaky.failNext('head', 6, () => azureError(500, 'InternalError'));
    expect(await capped.head('k')).toMatchObject({ size: 1 });
    expect(delays).toEqual([99, 199, 399, 799, 999, 999]);
  });

  it('never retries not-found, bad requests, auth failures or retention', async () => {
    await expect(tier.get('missing')).rejects.toBeInstanceOf(ObjectNotFoundError);
    expect(flaky.calls.get).toBe(1);
    for (const error of [() => s3Error(403, 'AccessDenied'), () => s3Error(400, 'InvalidArgument'), () => azureError(409, 'BlobImmutableDueToPolicy'), () => new TierIOError('disk full', { transient: false })]) {
      flaky.calls.delete = 0;
      flaky.failNext('delete', 1, error);
      await expect(tier.delete('k')).rejects.toBeDefined();
      expect(flaky.calls.delete).toBe(1);
    }
    expect(delays).toEqual([]);
  });

  it('does not replay a stream body (it is consumed), but does retry opening a stream', async () => {
    flaky.failNext('put', 1, reset);
    await expect(tier.put('s', Readable.from([Buffer.from('x')]))).rejects.toMatchObject({ code: 'ECONNRESET' });
    expect(flaky.calls.put).toBe(1);
    await tier.put('s', Buffer.from('stream me'));
    flaky.failNext('getStream', 2, () => s3Error(429, 'TooManyRequests'));
    const chunks: Buffer[] = [];
    for await (const c of await tier.getStream('s')) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('stream me');
    expect(flaky.calls.getStream).toBe(3);
  });

  it('a list that fails midway resumes without repeating or losing keys', async () => {
    const keys = Array.from({ length: 50 }, (_, i) => `l/${String(i).padStart(3, '0')}`);
    for (const key of keys) await tier.put(key, Buffer.from(key));
    flaky.listFailAfter = 20;
    const listed = (await collect(tier.list('l/'))).map((e) => e.key);
    expect(listed).toEqual(keys);
    expect(flaky.calls.list).toBe(2);
    expect(delays).toHaveLength(1);
  });
});

describe('isTransient', () => {
  it('classifies network, HTTP and SDK errors', () => {
    expect(isTransient(reset())).toBe(true);
    expect(isTransient(Object.assign(new Error('x'), { code: 'ETIMEDOUT' }))).toBe(true);
    expect(isTransient(s3Error(500, 'InternalError'))).toBe(true);
    expect(isTransient(s3Error(503, 'SlowDown'))).toBe(true);
    expect(isTransient(azureError(503, 'ServerBusy'))).toBe(true);
    expect(isTransient(azureError(429, 'TooManyRequests'))).toBe(true);
    expect(isTransient(s3Error(404, 'NoSuchKey'))).toBe(false);
    expect(isTransient(s3Error(403, 'AccessDenied'))).toBe(false);
    expect(isTransient(azureError(412, 'ConditionNotMet'))).toBe(false);
    expect(isTransient(new ObjectNotFoundError('k'))).toBe(false);
    expect(isTransient(new TierIOError('x', { transient: true }))).toBe(true);
    expect(isTransient(new Error('plain'))).toBe(false);
    expect(isTransient(Object.assign(new Error('wrapped'), { cause: reset() }))).toBe(true);
  });
});
