/**
 * The one conformance suite every tier backend runs (fs, s3 via s3rver, azure via Azurite):
 * it checks the guarantees written at the top of src/tier/index.ts. A backend whose server
 * cannot start here reports every test SKIPPED with the reason.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import {
  InvalidKeyError, InvalidRangeError, LengthMismatchError, ObjectNotFoundError, RetentionError,
  type ObjectTier,
} from '../../src/tier/index.js';

export interface Fixture {
  tier: ObjectTier;
  /** Secret values the fixture used (keys, connection strings): must never appear in tier.url. */
  secrets: string[];
  teardown(): Promise<void>;
  /**
   * Known ways a stand-in server departs from the real service, each with the reason; the tests
   * that depend on them are reported SKIPPED with it (the real service must pass them).
   */
  quirks?: { listOrder?: string; atomicOverwrite?: string };
}

export type Setup = () => Promise<Fixture>;

const MiB = 1024 * 1024;

export function describeConformance(name: string, setup: Setup): void {
  describe(`tier conformance: ${name}`, () => {
    let fx: Fixture | undefined;
    let skipReason: string | undefined;

    beforeAll(async () => {
      try {
        fx = await setup();
      } catch (err) {
        skipReason = `${name} backend unavailable: ${(err as Error).message}`;
        console.warn(`SKIPPED ${skipReason}`);
      }
    });
    afterAll(async () => {
      await fx?.tier.close();
      await fx?.teardown();
    });

    /** Every test goes through here, so an unavailable backend shows as skipped, not passed. */
    const test = (title: string, fn: (tier: ObjectTier, fx: Fixture) => Promise<void>, timeout?: number, quirk?: 'listOrder' | 'atomicOverwrite'): void => {
      it(title, async (ctx: TestContext) => {
        if (!fx) ctx.skip(skipReason ?? 'setup failed');
        const reason = quirk && fx!.quirks?.[quirk];
        if (reason) {
          console.warn(`SKIPPED ${name}: ${title}: ${reason}`);
          ctx.skip(reason);
        }
        await fn(fx!.tier, fx!);
      }, timeout);
    };

    test('put then get returns the same bytes; head reports the size', async (tier) => {
      const body = randomBytes(100_003);
      await tier.put('rt/one', body);
      expect((await tier.get('rt/one')).equals(body)).toBe(true);
      expect((await tier.head('rt/one'))?.size).toBe(body.length);
      expect((await readStream(await tier.getStream('rt/one'))).equals(body)).toBe(true);
    });

    test('empty objects and stream bodies with contentLength round-trip', async (tier) => {
      await tier.put('rt/empty', Buffer.alloc(0));
      expect((await tier.get('rt/empty')).length).toBe(0);
      expect((await tier.head('rt/empty'))?.size).toBe(0);
      const body = randomBytes(300_000);
      await tier.put('rt/stream', chunked(body, 65_536), { contentLength: body.length });
      expect((await tier.get('rt/stream')).equals(body)).toBe(true);
    });

    test('overwrite replaces the whole body', async (tier) => {
      await tier.put('ow/k', randomBytes(50_000));
      const second = randomBytes(1_000);
      await tier.put('ow/k', second);
      expect((await tier.get('ow/k')).equals(second)).toBe(true);
      expect((await tier.head('ow/k'))?.size).toBe(1_000);
    });

    test('byte ranges: start, middle, end, whole, empty; past the end is InvalidRangeError', async (tier) => {
      const body = randomBytes(100_000);
      await tier.put('range/k', body);
      const cases = [[0, 10], [40_000, 1_234], [99_990, 10], [0, 100_000], [99_999, 1]];
      for (const [offset, length] of cases) {
        expect((await tier.get('range/k', { offset, length })).equals(body.subarray(offset, offset + length))).toBe(true);
        const streamed = await readStream(await tier.getStream('range/k', { offset, length }));
        expect(streamed.equals(body.subarray(offset, offset + length))).toBe(true);
      }
      expect((await tier.get('range/k', { offset: 100_000, length: 0 })).length).toBe(0);
      expect((await tier.get('range/k', { offset: 5, length: 0 })).length).toBe(0);
      await expect(tier.get('range/k', { offset: 99_995, length: 10 })).rejects.toBeInstanceOf(InvalidRangeError);
      await expect(tier.get('range/k', { offset: 100_000, length: 1 })).rejects.toBeInstanceOf(InvalidRangeError);
      await expect(tier.get('range/k', { offset: 200_000, length: 5 })).rejects.toBeInstanceOf(InvalidRangeError);
      await expect(tier.get('range/k', { offset: 100_001, length: 0 })).rejects.toBeInstanceOf(InvalidRangeError);
      await expect(tier.get('range/k', { offset: -1, length: 5 })).rejects.toBeInstanceOf(InvalidRangeError);
      await expect(tier.get('range/k', { offset: 1.5, length: 5 })).rejects.toBeInstanceOf(InvalidRangeError);
      await expect(tier.getStream('range/k', { offset: 99_995, length: 10 })).rejects.toBeInstanceOf(InvalidRangeError);
      await expect(tier.get('range/missing', { offset: 0, length: 1 })).rejects.toBeInstanceOf(ObjectNotFoundError);
      await expect(tier.get('range/missing', { offset: 0, length: 0 })).rejects.toBeInstanceOf(ObjectNotFoundError);
    });

    test('missing objects: get throws ObjectNotFoundError, head is undefined, delete succeeds', async (tier) => {
      await expect(tier.get('missing/k')).rejects.toBeInstanceOf(ObjectNotFoundError);
      await expect(tier.getStream('missing/k')).rejects.toBeInstanceOf(ObjectNotFoundError);
      expect(await tier.head('missing/k')).toBeUndefined();
      await tier.delete('missing/k');
      expect(await collect(tier.list('missing/'))).toEqual([]);
    });

    test('delete removes the object and is idempotent', async (tier) => {
      await tier.put('del/k', randomBytes(10));
      await tier.put('del/keep', randomBytes(10));
      await tier.delete('del/k');
      expect(await tier.head('del/k')).toBeUndefined();
      await expect(tier.get('del/k')).rejects.toBeInstanceOf(ObjectNotFoundError);
      expect((await collect(tier.list('del/'))).map((e) => e.key)).toEqual(['del/keep']);
      await tier.delete('del/k');
    });

    test('large object (24 MiB) as a buffer and as a stream, ranges across part boundaries', async (tier) => {
      const body = randomBytes(24 * MiB);
      const digest = sha256(body);
      await tier.put('large/buf', body);
      expect((await tier.head('large/buf'))?.size).toBe(body.length);
      expect(sha256(await tier.get('large/buf'))).toBe(digest);
      const across = { offset: 8 * MiB - 1000, length: 2000 };
      expect((await tier.get('large/buf', across)).equals(body.subarray(across.offset, across.offset + across.length))).toBe(true);
      const tail = { offset: 24 * MiB - 5, length: 5 };
      expect((await tier.get('large/buf', tail)).equals(body.subarray(tail.offset))).toBe(true);
      await tier.put('large/stream', chunked(body, MiB), { contentLength: body.length });
      expect(sha256(await readStream(await tier.getStream('large/stream')))).toBe(digest);
    }, 90_000);

    test('a body that differs from contentLength is refused and stores nothing', async (tier) => {
      const original = randomBytes(1_000);
      await tier.put('len/k', original);
      await expect(tier.put('len/k', chunked(randomBytes(900), 100), { contentLength: 1_000 })).rejects.toBeInstanceOf(LengthMismatchError);
      await expect(tier.put('len/k', chunked(randomBytes(1_100), 100), { contentLength: 1_000 })).rejects.toBeInstanceOf(LengthMismatchError);
      await expect(tier.put('len/k', randomBytes(10), { contentLength: 11 })).rejects.toBeInstanceOf(LengthMismatchError);
      await expect(tier.put('len/new', chunked(randomBytes(10 * MiB), MiB), { contentLength: 12 * MiB })).rejects.toBeInstanceOf(LengthMismatchError);
      expect((await tier.get('len/k')).equals(original)).toBe(true);
      expect(await tier.head('len/new')).toBeUndefined();
    }, 60_000);

    test('list: 2,500 keys in byte order with sizes, by prefix, across pages', async (tier) => {
      const keys = Array.from({ length: 2_500 }, (_, i) => `many/${String(i).padStart(5, '0')}`);
      await mapLimit(keys, 16, (key, i) => tier.put(key, Buffer.alloc(i % 7, i % 251)));
      const all = await collect(tier.list('many/'));
      expect(all.map((e) => e.key)).toEqual(keys);
      expect(all.every((e, i) => e.size === i % 7)).toBe(true);
      expect((await collect(tier.list('many/0012'))).map((e) => e.key)).toEqual(keys.slice(120, 130));
      expect((await collect(tier.list('many/02'))).length).toBe(500);
      expect(await collect(tier.list('many/x'))).toEqual([]);
      expect((await collect(tier.list(''))).some((e) => e.key === 'many/02499')).toBe(true);
    }, 90_000);

    test('list yields every key under a prefix once, across folders', async (tier) => {
      const keys = ['all/a.c', 'all/a-x', 'all/aa', 'all/a/b/c', 'all/B', 'all/a/bb'];
      for (const key of keys) await tier.put(key, Buffer.from(key));
      const listed = (await collect(tier.list('all/'))).map((e) => e.key);
      expect([...listed].sort()).toEqual([...keys].sort());
      expect((await collect(tier.list('all/a'))).length).toBe(keys.length - 1);
      expect((await collect(tier.list('all/a/'))).map((e) => e.key).sort()).toEqual(['all/a/b/c', 'all/a/bb']);
    });

    test('list orders whole keys bytewise across folders', async (tier) => {
      const keys = ['order/a.c', 'order/a-x', 'order/aa', 'order/a/b/c', 'order/B', 'order/a/bb'];
      for (const key of keys) await tier.put(key, Buffer.from(key));
      const listed = (await collect(tier.list('order/'))).map((e) => e.key);
      expect(listed).toEqual(['order/B', 'order/a-x', 'order/a.c', 'order/a/b/c', 'order/a/bb', 'order/aa']);
      expect((await collect(tier.list('order/a/'))).map((e) => e.key)).toEqual(['order/a/b/c', 'order/a/bb']);
    }, undefined, 'listOrder');

    test('concurrent puts of one key never expose a partial object', async (tier) => {
      const size = 2 * MiB;
      const bodies = Array.from({ length: 6 }, (_, i) => Buffer.alloc(size, i + 1));
      await tier.put('race/k', Buffer.alloc(size, 0));
      let reading = true;
      let reads = 0;
      const reader = (async () => {
        while (reading) {
          const got = await tier.get('race/k');
          expect(got.length).toBe(size);
          expect(got.every((b) => b === got[0])).toBe(true);
          reads++;
        }
      })();
      await Promise.all(bodies.map((b) => tier.put('race/k', b)));
      reading = false;
      await reader;
      const final = await tier.get('race/k');
      expect(final.length).toBe(size);
      expect(bodies.some((b) => b.equals(final))).toBe(true);
      expect(reads).toBeGreaterThan(0);
      expect((await collect(tier.list('race/'))).map((e) => e.key)).toEqual(['race/k']);
    }, 60_000, 'atomicOverwrite');

    test('bad keys are refused before any I/O', async (tier) => {
      const bad = ['', '/abs', 'a//b', '../x', 'a/../b', 'a/./b', 'a/', '.hidden', 'a/.tmp', 'a\\b', 'a b', 'é', 'x'.repeat(1_100)];
      for (const key of bad) {
        await expect(tier.put(key, Buffer.from('x')), key).rejects.toBeInstanceOf(InvalidKeyError);
        await expect(tier.get(key), key).rejects.toBeInstanceOf(InvalidKeyError);
        await expect(tier.head(key), key).rejects.toBeInstanceOf(InvalidKeyError);
        await expect(tier.delete(key), key).rejects.toBeInstanceOf(InvalidKeyError);
      }
      await expect(collect(tier.list('../'))).rejects.toBeInstanceOf(InvalidKeyError);
      await expect(collect(tier.list('a//'))).rejects.toBeInstanceOf(InvalidKeyError);
    });

    test('retention: enforced when supported, refused (not ignored) when not', async (tier) => {
      const until = new Date(Date.now() + 3_600_000);
      if (!(await tier.supportsRetention())) {
        await expect(tier.put('ret/k', randomBytes(10), { retainUntil: until })).rejects.toBeInstanceOf(RetentionError);
        expect(await tier.head('ret/k')).toBeUndefined();
        return;
      }
      const body = randomBytes(10);
      await tier.put('ret/k', body, { retainUntil: until });
      expect(Math.abs((await tier.head('ret/k'))!.retainUntil!.getTime() - until.getTime())).toBeLessThan(1_000);
      await expect(tier.delete('ret/k')).rejects.toBeInstanceOf(RetentionError);
      await expect(tier.put('ret/k', randomBytes(10))).rejects.toBeInstanceOf(RetentionError);
      expect((await tier.get('ret/k')).equals(body)).toBe(true);
      await expect(tier.put('ret/bad', body, { retainUntil: new Date('nope') })).rejects.toThrow(/valid Date/);
    });

    test('the url carries no credentials', async (tier, f) => {
      expect(tier.url).toMatch(/^(file|s3|azure):\/\//);
      for (const secret of f.secrets) expect(tier.url).not.toContain(secret);
    });
  });
}

function chunked(body: Buffer, size: number): Readable {
  const parts: Buffer[] = [];
  for (let off = 0; off < body.length; off += size) parts.push(body.subarray(off, off + size));
  return Readable.from(parts);
}

async function readStream(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(Buffer.from(part));
  return Buffer.concat(parts);
}

export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

async function mapLimit<T>(items: T[], limit: number, fn: (item: T, i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
}
