import { join } from 'node:path';
import { Level } from 'level';
import { describe, expect, it } from 'vitest';
import type { StoredChunk } from '../../src/dedup/store.js';
import { initDataStore, openDataStore } from '../../src/stream/store.js';
import { randomBytes, withTempDir } from '../helpers/data.js';
import { withStore } from '../helpers/store.js';

const KiB = 1024;

/** Chunks of 4-12 KiB from a seed (random, so each is new unless repeated on purpose). */
function chunks(seed: number, count: number): Buffer[] {
  return Array.from({ length: count }, (_, i) => randomBytes(4 * KiB + ((seed * 7919 + i * 104729) % (8 * KiB)), seed * 100_000 + i));
}

// Puts overlap: one plans while earlier ones are sealed and appended (store.ts). These check
// what that must not change.
describe('overlapping puts', () => {
  it('store a chunk once when a later put meets it before the earlier put has appended it', async () => {
    await withTempDir(async (dir) => {
      await initDataStore(dir);
      const s = await openDataStore(dir);
      let all: StoredChunk[] = [];
      let want: Buffer[] = [];
      try {
        const store = s.chunks;
        const a = chunks(1, 600);
        const b = chunks(2, 600);
        // The second and third puts repeat chunks that are new in the first, and in each other.
        const second = [...b.slice(0, 300), ...a.slice(100, 400), b[5], a[7]];
        const third = [...a.slice(0, 50), ...b.slice(250, 400), a[599]];
        want = [...a, ...second, ...third];
        const before = store.getStats().chunks;
        const puts = [store.putChunks(a), store.putChunks(second), store.putChunks(third)];
        const [ra, rs, rt] = await Promise.all(puts);
        await store.commit();
        // Unique: all of a, and b[0..400).
        expect(store.getStats().chunks - before).toBe(600 + 400);
        const key = (r: { ref: { container: number; offset: number } }) => `${r.ref.container}/${r.ref.offset}`;
        expect(rs.slice(300, 600).map(key)).toEqual(ra.slice(100, 400).map(key));
        expect(key(rs[601])).toBe(key(ra[7]));
        expect(key(rs[600])).toBe(key(rs[5]));
        expect(rt.slice(0, 50).map(key)).toEqual(ra.slice(0, 50).map(key));
        expect(rt.slice(50, 100).map(key)).toEqual(rs.slice(250, 300).map(key));
        all = [...ra, ...rs, ...rt];
        const got = await store.readChunks(all);
        got.forEach((g, i) => expect(g.equals(want[i]), `chunk ${i}`).toBe(true));
      } finally {
        await s.close();
      }
      // And after reopening: everything was committed.
      const s2 = await openDataStore(dir);
      try {
        expect(s2.chunks.getStats().chunks).toBe(1000);
        const got = await s2.chunks.readChunks(all);
        got.forEach((g, i) => expect(g.equals(want[i]), `chunk ${i} after reopening`).toBe(true));
      } finally {
        await s2.close();
      }
    });
  });

  it('rolls containers while puts overlap, and every chunk reads back after a commit', async () => {
    await withStore(async (s) => {
      const store = s.chunks;
      // About 20 MiB of incompressible chunks in 10 overlapping puts: several containers.
      const sets = Array.from({ length: 10 }, (_, k) => chunks(10 + k, 250));
      const puts = sets.map((c) => store.putChunks(c));
      await store.commit();
      const results = await Promise.all(puts);
      const containers = new Set(results.flat().map((r) => r.ref.container));
      expect(containers.size).toBeGreaterThanOrEqual(2);
      const got = await store.readChunks(results.flat());
      const want = sets.flat();
      got.forEach((g, i) => expect(g.equals(want[i]), `chunk ${i}`).toBe(true));
    });
  });
});

describe('space figures', () => {
  it('are counted again from the container files at open when a crash left the saved ones behind', async () => {
    await withTempDir(async (dir) => {
      await initDataStore(dir);
      let s = await openDataStore(dir);
      const w = await s.streams.openWriter(await s.streams.create());
      await w.write(randomBytes(20 * 1024 * 1024, 5)); // random: more than one container
      await w.close();
      await s.close();
      s = await openDataStore(dir);
      const right = s.chunks.getStats();
      expect(right.containers).toBeGreaterThanOrEqual(2);
      await s.close();
      // what a crash between a seal (or a GC) and the next saved batch leaves: figures behind
      const db = new Level<string, unknown>(join(dir, 'index'), { valueEncoding: 'json' });
      await db.sublevel<string, unknown>('chunkstore', { valueEncoding: 'json' }).put('stats', { ...right, storedBytes: 1_595_493, containers: right.containers + 1 });
      await db.close();
      const said: string[] = [];
      const log = console.error;
      console.error = (...a: unknown[]) => void said.push(a.join(' '));
      try {
        s = await openDataStore(dir);
      } finally {
        console.error = log;
      }
      expect(s.chunks.getStats()).toMatchObject({ storedBytes: right.storedBytes, containers: right.containers });
      expect(said.join('\n')).toMatch(/stored bytes 1595493 -> \d+, containers \d+ -> \d+: counted again from the container files/);
      await s.close();
    });
  });
});
