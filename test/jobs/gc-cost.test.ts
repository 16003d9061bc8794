/**
 * GC's cost model and its reverse map: after erasing one cartridge among many untouched ones,
 * GC examines only the containers and reads only the recipe pages related to it, however much
 * untouched data the store holds; a store made before the map existed gets it built once
 * (resumably); a location hint whose container is gone (its chunk compacted twice) still reads
 * back and keeps its chunk live.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { BloomFilter } from '../../src/dedup/bloom.js';
import { containerPath } from '../../src/dedup/container.js';
import type { BinarySublevel } from '../../src/dedup/fingerprint-index.js';
import { pageKey, RECIPE_ENTRY, recipePageAccess } from '../../src/stream/recipes.js';
import type { GcReport } from '../../src/jobs/index.js';
import { bytesOf, openEnv, readFiles, writeFiles, type Env } from './gc-util.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
const quiet = { progress: () => undefined, checkCancelled: () => undefined };
const MiB = 1 << 20;

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'vtl-gccost-'));
  dirs.push(dir);
  return dir;
}

test('GC after erasing one cartridge reads only what relates to it, not the untouched data', async () => {
  const dir = await tempDir();
  const env = await openEnv(dir, true);
  let seed = 1;
  const untouched = new Map<string, Buffer[]>();
  /** Adds `n` untouched cartridges, then writes, settles, erases and collects the target one. */
  const round = async (n: number, from: number): Promise<GcReport> => {
    const barcodes = Array.from({ length: n }, (_, i) => `UT${String(from + i).padStart(4, '0')}L7`);
    await env.libs.createCartridges({ library: 'cost', barcodes });
    for (const bc of barcodes) {
      const files = [bytesOf(seed++, 2 * MiB), bytesOf(seed++, MiB + 999)];
      await writeFiles(env.libs, bc, files);
      untouched.set(bc, files);
    }
    await writeFiles(env.libs, 'TGT001L7', [bytesOf(seed++, 6 * MiB), bytesOf(seed++, 6 * MiB)]);
    await env.gc.run(quiet); // examines what was written since the last run
    await env.libs.eraseCartridge('TGT001L7');
    return env.gc.run(quiet);
  };
  try {
    await env.libs.createLibrary({ name: 'cost', drives: 1, slots: 64, mailslots: 0 });
    await env.libs.createCartridges({ library: 'cost', barcodes: ['TGT001L7'] });
    const small = await round(4, 0); // about 12 MiB untouched
    const large = await round(24, 4); // about 96 MiB untouched
    const total = env.store.chunks.getStats().containers;
    for (const r of [small, large]) {
      expect(r.skipped).toEqual([]);
      expect(r.deleted + r.compacted).toBeGreaterThan(0); // the target's 12 MiB are reclaimed
      // the target's containers (12 MiB in 8 MiB containers, two of them shared with neighbours)
      expect(r.containers).toBeLessThanOrEqual(4);
      // pages read: those of neighbouring cartridges in shared containers, never all of them
      expect(r.recipePages).toBeLessThanOrEqual(8);
    }
    let pagesInStore = 0;
    for await (const _ of env.store.streams.pages.keys()) pagesInStore++;
    expect(total).toBeGreaterThanOrEqual(10);
    expect(pagesInStore).toBeGreaterThanOrEqual(25); // one page per small cartridge
    expect(large.containers).toBeLessThanOrEqual(small.containers + 1);
    expect(large.recipePages).toBeLessThanOrEqual(small.recipePages + 2);
    for (const [bc, files] of untouched) {
      const got = await readFiles(env.libs, bc);
      got.forEach((f, k) => expect(f.equals(files[k]), `${bc} file ${k}`).toBe(true));
    }
  } finally {
    await env.close();
  }
}, 60_000);

/** Writes `n` small streams directly (each its own recipe page). */
async function smallStreams(env: Env, n: number, seed: number): Promise<Array<[string, Buffer]>> {
  const out: Array<[string, Buffer]> = [];
  for (let i = 0; i < n; i++) {
    const id = await env.store.streams.create();
    const data = bytesOf(seed + i, 20_000);
    const w = await env.store.streams.openWriter(id);
    await w.write(data);
    await w.close();
    out.push([id, data]);
  }
  return out;
}

async function readStream(env: Env, id: string): Promise<Buffer> {
  const r = await env.store.streams.openReader(id);
  return r.read(await env.store.streams.length(id));
}

test('a store made before the reverse map gets it built once, resumably, and GC then reclaims', async () => {
  const dir = await tempDir();
  let env = await openEnv(dir, true);
  let streams: Array<[string, Buffer]>;
  try {
    streams = await smallStreams(env, 300, 500);
  } finally {
    await env.close();
  }
  // what a store written by an older vtl looks like: no map, no candidates, no map state
  env = await openEnv(dir);
  try {
    await env.store.db.sublevel('containerpages').clear();
    await env.store.db.sublevel('gccandidates').clear();
    await env.store.db.sublevel('chunkstore', { valueEncoding: 'json' }).del('pageRefs');
  } finally {
    await env.close();
  }
  env = await openEnv(dir);
  try {
    const chunks = env.store.chunks;
    const pages = recipePageAccess(env.store.streams.pages as BinarySublevel);
    expect(await chunks.pageRefsReady()).toBe(false);
    // an interrupted build (a cancel after the first 256 pages) resumes where it stood
    await expect(
      chunks.buildPageRefs(pages, () => {
        throw new Error('cancelled');
      }),
    ).rejects.toThrow('cancelled');
    expect(await chunks.pageRefsReady()).toBe(false);
    const first = await env.gc.run(quiet);
    expect(first.mapBuiltFromPages).toBe(300 - 256);
    expect(await chunks.pageRefsReady()).toBe(true);
    expect(first.containers).toBeGreaterThan(0); // every container was examined once
    expect(first.deleted + first.compacted).toBe(0); // all of it is live
    // the map is complete: deleting most streams makes their container collectable
    for (const [id] of streams.slice(0, 250)) await env.store.streams.delete(id);
    const second = await env.gc.run(quiet);
    expect(second.mapBuiltFromPages).toBe(0);
    expect(second.compacted + second.deleted).toBeGreaterThan(0);
    expect(second.recipePages).toBeGreaterThanOrEqual(50);
    for (const [id, data] of streams.slice(250)) expect((await readStream(env, id)).equals(data)).toBe(true);
  } finally {
    await env.close();
  }
  // after a restart, the kept streams read back and a GC finds nothing more to do
  env = await openEnv(dir);
  try {
    for (const [id, data] of streams.slice(250)) expect((await readStream(env, id)).equals(data)).toBe(true);
    const again = await env.gc.run(quiet);
    expect(again.deleted + again.compacted).toBe(0);
  } finally {
    await env.close();
  }
}, 60_000);

/** Location hint containers of a stream's stored pages. */
async function hintsOf(env: Env, id: string): Promise<Set<number>> {
  const out = new Set<number>();
  for await (const page of env.store.streams.pages.values({ gte: pageKey(id, 0), lte: pageKey(id, Number.MAX_SAFE_INTEGER) })) {
    for (let at = 0; at < page.length; at += RECIPE_ENTRY) out.add(page.readUInt32BE(at + 16));
  }
  return out;
}

test('a hint whose container is gone (its chunk compacted twice) reads back and keeps the chunk live', async () => {
  const dir = await tempDir();
  let env = await openEnv(dir, true);
  const x1 = bytesOf(901, 3 * (MiB / 2));
  const x2 = bytesOf(902, MiB / 2);
  const ids: string[] = [];
  try {
    const st = env.store.streams;
    for (const data of [x1, x2, bytesOf(903, 4 * MiB), Buffer.alloc(0)]) {
      const id = await st.create();
      ids.push(id);
      const w = await st.openWriter(id);
      await w.write(data);
      await w.close();
    }
  } finally {
    await env.close(); // seals the one container holding all of it
  }
  const [s1, s2, filler, s3] = ids;
  // s3 gets 8 MiB of x2's chunks (stored during GC, before the compaction: hints to c), then
  // 4 MiB of new data (stored after it, in the open container): no entry of s3 ever names d
  const repeat = Buffer.concat([...Array.from({ length: 16 }, () => x2), bytesOf(904, 4 * MiB)]);
  env = await openEnv(dir);
  try {
    const { chunks, streams } = env.store;
    const pages = recipePageAccess(streams.pages as BinarySublevel);
    const [c] = [...(await hintsOf(env, s1))];
    expect([...(await hintsOf(env, filler))]).toEqual([c]);
    await streams.delete(filler); // container c is two-thirds garbage now

    // GC compacts c into d while a writer of the empty stream s3 holds references to c's
    // chunks in pages that exist only in its memory (GC cannot know them)
    await chunks.beginGc(new BloomFilter(1024));
    const w = await streams.openWriter(s3);
    await w.write(repeat.subarray(0, 8 * MiB));
    await w.write(repeat.subarray(8 * MiB)); // returns once the first 8 MiB are stored
    const r1 = await chunks.collectContainer(c, 0.5, pages);
    expect(r1.action).toBe('compacted');
    const d = r1.into!;
    await w.close(); // its page is stored naming c, which is gone
    chunks.endGc();
    await expect(stat(containerPath(chunks.containersDir, c, true))).rejects.toThrow();
    expect(await hintsOf(env, s3)).toContain(c);
    expect((await readStream(env, s3)).equals(repeat)).toBe(true);

    // second compaction: d keeps only x2's chunks, which only s3 (hinted to c) refers to: the
    // map entry (d, s3's pages) was made when s3's pages were committed, from the index
    await streams.delete(s1);
    await streams.delete(s2);
    const r2 = await env.gc.run(quiet);
    expect(r2.compacted).toBeGreaterThanOrEqual(1);
    await expect(stat(containerPath(chunks.containersDir, d, true))).rejects.toThrow();
    const hints = await hintsOf(env, s3);
    expect(hints).not.toContain(c);
    expect(hints).not.toContain(d);
    expect((await readStream(env, s3)).equals(repeat)).toBe(true);
  } finally {
    await env.close();
  }
  env = await openEnv(dir);
  try {
    const r3 = await env.gc.run(quiet);
    expect(r3.deleted + r3.compacted).toBe(0);
    expect((await readStream(env, s3)).equals(repeat)).toBe(true);
  } finally {
    await env.close();
  }
}, 60_000);
