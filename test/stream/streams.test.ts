import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { IntegrityError } from '../../src/dedup/container.js';
import { initDataStore, openDataStore, type DataStore } from '../../src/stream/store.js';
import { RECIPE_ENTRY, pageKey } from '../../src/stream/recipes.js';
import { recycleBuffer } from '../../src/stream/buffers.js';
import { backupLikeBytes, randomBytes, seededRng, withTempDir } from '../helpers/data.js';
import { withStore } from '../helpers/store.js';

async function writeAll(s: DataStore, data: Buffer, slice: number, syncEvery = Infinity): Promise<string> {
  const id = await s.streams.create();
  const w = await s.streams.openWriter(id);
  let sinceSync = 0;
  for (let at = 0; at < data.length; at += slice) {
    const piece = data.subarray(at, Math.min(at + slice, data.length));
    await w.write(piece);
    sinceSync += piece.length;
    if (sinceSync >= syncEvery) {
      await w.sync();
      sinceSync = 0;
    }
  }
  await w.close();
  return id;
}

async function readAll(s: DataStore, id: string, from = 0, readSize = 1 << 20): Promise<Buffer> {
  const r = await s.streams.openReader(id, from);
  const parts: Buffer[] = [];
  for (;;) {
    const b = await r.read(readSize);
    if (b.length === 0) break;
    parts.push(b);
  }
  return Buffer.concat(parts);
}

async function recipeFingerprints(s: DataStore, id: string): Promise<string[]> {
  const out: string[] = [];
  for await (const page of s.streams.pages.values({ gte: pageKey(id, 0), lte: pageKey(id, Number.MAX_SAFE_INTEGER) })) {
    for (let at = 0; at < page.length; at += RECIPE_ENTRY) out.push(page.subarray(at, at + 16).toString('hex'));
  }
  return out;
}

describe('recipe streams', () => {
  it('reads back bit for bit, from any offset', async () => {
    await withStore(async (s) => {
      const data = backupLikeBytes(9 * 1024 * 1024 + 12345, 7);
      const id = await writeAll(s, data, 100_000);
      expect(await s.streams.length(id)).toBe(data.length);
      expect((await readAll(s, id)).equals(data)).toBe(true);
      for (const off of [0, 1, 8191, 4 * 1024 * 1024 + 3, data.length - 1, data.length]) {
        expect((await readAll(s, id, off, 77_777)).equals(data.subarray(off))).toBe(true);
      }
      const r = await s.streams.openReader(id);
      r.seek(5_000_000);
      expect((await r.read(1000)).equals(data.subarray(5_000_000, 5_001_000))).toBe(true);
      r.seek(10);
      expect((await r.read(10)).equals(data.subarray(10, 20))).toBe(true);
    });
  });

  it('reads right with several windows in flight: random seeks back and forth, and across windows', async () => {
    await withStore(async (s) => {
      // 30 MiB: seven 4 MiB windows, so the reader's slabs are each reused more than once.
      const data = backupLikeBytes(30 * 1024 * 1024 + 4321, 11);
      const id = await writeAll(s, data, 1 << 20);
      const rng = seededRng(5);
      const r = await s.streams.openReader(id);
      for (let i = 0; i < 60; i++) {
        // Mostly sequential runs, sometimes a jump anywhere (backward too).
        if (i % 3 === 0) r.seek(rng.int(data.length));
        const at = r.position;
        const n = 1 + rng.int(6 * 1024 * 1024);
        const got = await r.read(n);
        expect(got.length).toBe(Math.min(n, data.length - at));
        expect(got.equals(data.subarray(at, at + got.length))).toBe(true);
      }
    });
  });

  it('lends views of its memory that keep their bytes until given back (readLent)', async () => {
    await withStore(async (s) => {
      const data = backupLikeBytes(30 * 1024 * 1024 + 999, 13);
      const id = await writeAll(s, data, 1 << 20);
      const rng = seededRng(9);
      const r = await s.streams.openReader(id);
      const kept: Array<{ view: Buffer; at: number }> = [];
      const onTheirWay: Buffer[] = []; // given back a few reads later, as a socket does
      let lentViews = 0;
      for (let i = 0; i < 700; i++) {
        if (i % 100 === 99) r.seek(rng.int(data.length)); // backward too
        const at = r.position;
        const n = rng.pick([512, 65_536, 65_536, 65_536, 262_144, 1 + rng.int(100_000)]);
        const got = await r.readLent(n);
        expect(got.length).toBe(Math.min(n, data.length - at));
        expect(got.equals(data.subarray(at, at + got.length))).toBe(true);
        if (got.buffer instanceof SharedArrayBuffer) lentViews++;
        if (rng.int(10) === 0) kept.push({ view: got, at }); // never given back
        else onTheirWay.push(got);
        while (onTheirWay.length > 3) recycleBuffer(onTheirWay.shift()!);
        if (got.length === 0) r.seek(0);
      }
      // The reader went on through many windows, reusing the slabs given back: the views it
      // still has out were not written over.
      for (const { view, at } of kept) expect(view.equals(data.subarray(at, at + view.length))).toBe(true);
      expect(kept.length).toBeGreaterThan(30);
      expect(lentViews).toBeGreaterThan(350); // most reads were lent, not copied
    });
  });

  it('a reader at the end of a stream continues when the writer syncs more (a tape appended to after it was read)', async () => {
    await withStore(async (s) => {
      const data = backupLikeBytes(14 * 1024 * 1024, 12);
      const id = await s.streams.create();
      const w = await s.streams.openWriter(id);
      await w.write(data.subarray(0, 9 * 1024 * 1024));
      await w.sync();
      const r = await s.streams.openReader(id);
      expect((await r.read(20 * 1024 * 1024)).equals(data.subarray(0, 9 * 1024 * 1024))).toBe(true);
      expect((await r.read(1024)).length).toBe(0);
      await w.write(data.subarray(9 * 1024 * 1024));
      await w.close();
      expect((await r.read(20 * 1024 * 1024)).equals(data.subarray(9 * 1024 * 1024))).toBe(true);
    });
  });

  it('gives the same chunks for any write slicing (1 B, 512 B, 10240 B, 1 MiB)', async () => {
    await withStore(async (s) => {
      const big = backupLikeBytes(3 * 1024 * 1024, 3);
      const reference = await recipeFingerprints(s, await writeAll(s, big, big.length));
      for (const slice of [512, 10240, 1 << 20]) {
        expect(await recipeFingerprints(s, await writeAll(s, big, slice))).toEqual(reference);
      }
      const small = big.subarray(0, 300 * 1024);
      const smallRef = await recipeFingerprints(s, await writeAll(s, small, small.length));
      expect(await recipeFingerprints(s, await writeAll(s, small, 1))).toEqual(smallRef);
    });
  });

  it('stores a repeated stream once', async () => {
    await withStore(async (s) => {
      const data = randomBytes(6 * 1024 * 1024, 11);
      await writeAll(s, data, 65536);
      const before = s.chunks.getStats();
      const id2 = await writeAll(s, data, 1 << 20);
      const after = s.chunks.getStats();
      expect(after.uniqueBytes - before.uniqueBytes).toBe(0);
      expect((await readAll(s, id2)).equals(data)).toBe(true);
      // Each stream's own figures count the chunks it refers to, shared or not.
      const st = await s.streams.stats(id2);
      expect(st.logicalBytes).toBe(data.length);
      expect(st.uniqueBytes).toBe(data.length); // random data: no chunk repeats within the stream
      expect(st.storedBytes).toBeGreaterThan(data.length); // incompressible: stored raw plus frame overhead
      expect(st.chunks).toBe((await recipeFingerprints(s, id2)).length);
      expect(st.exact).toBe(true);
    });
  });

  it('truncates at an offset and appends from there (tape overwrite)', async () => {
    await withStore(async (s) => {
      const data = backupLikeBytes(5 * 1024 * 1024, 5);
      const id = await writeAll(s, data, 1 << 20, 1 << 20);
      const cut = 2 * 1024 * 1024 + 777; // inside a chunk
      const tail = randomBytes(1_500_000, 99);
      const w = await s.streams.openWriter(id, cut);
      await w.write(tail);
      await w.close();
      const expected = Buffer.concat([data.subarray(0, cut), tail]);
      expect(await s.streams.length(id)).toBe(expected.length);
      expect((await readAll(s, id)).equals(expected)).toBe(true);
      // Record-sized reads from before the overwrite point across it, as a tape client reads.
      for (const size of [10240, 65536]) expect((await readAll(s, id, cut - 50_000, size)).equals(expected.subarray(cut - 50_000))).toBe(true);
      await s.streams.truncate(id, 1000);
      expect((await readAll(s, id)).equals(data.subarray(0, 1000))).toBe(true);
    });
  });

  it('keeps only synced bytes when a writer is abandoned, and survives reopening', async () => {
    await withTempDir(async (dir) => {
      await initDataStore(dir);
      const data = randomBytes(3 * 1024 * 1024, 21);
      let s = await openDataStore(dir);
      const id = await s.streams.create();
      const w = await s.streams.openWriter(id);
      await w.write(data.subarray(0, 2_000_000));
      await w.sync();
      await w.write(data.subarray(2_000_000));
      await w.abort();
      expect(await s.streams.length(id)).toBe(2_000_000);
      await s.close();
      s = await openDataStore(dir);
      try {
        expect((await readAll(s, id)).equals(data.subarray(0, 2_000_000))).toBe(true);
        const w2 = await s.streams.openWriter(id);
        await w2.write(data.subarray(2_000_000));
        await w2.close();
        expect((await readAll(s, id)).equals(data)).toBe(true);
      } finally {
        await s.close();
      }
    });
  });

  it('rebuilds a deleted index from container footers', async () => {
    await withStore(async (s) => {
      const data = backupLikeBytes(20 * 1024 * 1024, 8);
      const id = await writeAll(s, data, 1 << 20);
      const fp = s.db.sublevel('fingerprints', { keyEncoding: 'buffer', valueEncoding: 'buffer' });
      await fp.clear();
      const r = await s.chunks.rebuildIndex();
      expect(r.containers).toBeGreaterThan(1);
      let n = 0;
      for await (const _ of fp.keys()) n++;
      expect(n).toBe(s.chunks.getStats().chunks);
      const before = s.chunks.getStats().uniqueBytes;
      await writeAll(s, data, 1 << 20);
      expect(s.chunks.getStats().uniqueBytes).toBe(before);
      expect((await readAll(s, id)).equals(data)).toBe(true);
    });
  });

  it('refuses to return corrupted data', async () => {
    await withStore(async (s, dir) => {
      const data = randomBytes(2 * 1024 * 1024, 4);
      const id = await writeAll(s, data, 1 << 20);
      await s.chunks.close();
      const files = (await readdir(join(dir, 'containers'))).filter((f) => f.endsWith('.ctr'));
      const path = join(dir, 'containers', files[0]);
      const bytes = await readFile(path);
      bytes[Math.floor(bytes.length / 2)] ^= 0x10;
      await writeFile(path, bytes);
      const s2 = await reopenChunks(s, dir);
      await expect(readAll(s2, id)).rejects.toBeInstanceOf(IntegrityError);
      await s2.close();
    });
  });

  it('rejects bad offsets and a second writer', async () => {
    await withStore(async (s) => {
      const id = await writeAll(s, randomBytes(1000, 1), 1000);
      await expect(s.streams.openWriter(id, 1001)).rejects.toThrow(/length is 1000/);
      await expect(s.streams.openReader(id, -1)).rejects.toThrow(RangeError);
      const w = await s.streams.openWriter(id);
      await expect(s.streams.openWriter(id)).rejects.toThrow(/already has a writer/);
      await w.close();
      await expect(s.streams.length('00000000000000ff')).rejects.toThrow(/no stream/);
    });
  });
});

/** Closes a store and opens it again (to drop caches). */
async function reopenChunks(s: DataStore, dir: string): Promise<DataStore> {
  await s.db.close();
  return openDataStore(dir);
}

describe('master key rotation on a live store', () => {
  it('re-wraps every container key; data reads back after reopening', async () => {
    await withTempDir(async (dir) => {
      await initDataStore(dir);
      const data = backupLikeBytes(20 * 1024 * 1024, 77);
      let s = await openDataStore(dir);
      const id = await writeAll(s, data, 1 << 20);
      const containers = s.chunks.getStats().containers;
      expect(containers).toBeGreaterThan(1);
      const r = await s.chunks.rotateMasterKey();
      expect(r.rewrapped).toBe(containers);
      await s.close();
      s = await openDataStore(dir);
      try {
        expect((await readAll(s, id)).equals(data)).toBe(true);
      } finally {
        await s.close();
      }
    });
  });
});
