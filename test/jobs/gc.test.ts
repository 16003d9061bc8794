/**
 * Space reclamation: rounds of erase and rewrite keep disk use bounded and every live cartridge
 * reads back bit for bit; chunks re-used by a backup while GC runs survive it; stale location
 * hints in recipes fall back to the index once their container is gone.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import type { BinarySublevel } from '../../src/dedup/fingerprint-index.js';
import type { ChunkStore } from '../../src/dedup/store.js';
import { GarbageCollector, Jobs } from '../../src/jobs/index.js';
import { RecipeStreams, recipePageAccess } from '../../src/stream/recipes.js';
import { bytesOf, containerBytes, openEnv, readFiles, writeFiles } from './gc-util.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
const quiet = { progress: () => undefined, checkCancelled: () => undefined };
const MiB = 1 << 20;

test('rounds of erase and rewrite: disk use stays bounded, every cartridge reads back bit for bit', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vtl-gc-'));
  dirs.push(dir);
  const env = await openEnv(dir, true);
  try {
    await env.libs.createLibrary({ name: 'gc', drives: 1, slots: 4, mailslots: 0 });
    const carts = ['GC0001L7', 'GC0002L7', 'GC0003L7'];
    await env.libs.createCartridges({ library: 'gc', barcodes: carts });
    const expected = new Map<string, Buffer[]>();
    let seed = 1;
    let written = 0;
    let maxDisk = 0;
    for (let round = 0; round < 6; round++) {
      for (const [i, bc] of carts.entries()) {
        if (round > 0 && (round + i) % 3 === 0) continue; // some cartridges are left alone for a round
        const old = expected.get(bc);
        if (old) await env.libs.eraseCartridge(bc);
        // a third of the new backup repeats the old one (dedup against garbage), the rest is new
        const files = [old ? old[0].subarray(0, 2 * MiB) : bytesOf(seed++, 2 * MiB), bytesOf(seed++, 3 * MiB), bytesOf(seed++, MiB + 12345)];
        await writeFiles(env.libs, bc, files);
        expected.set(bc, files);
        written += files.reduce((n, f) => n + f.length, 0);
      }
      const report = await env.gc.run(quiet);
      expect(report.skipped).toEqual([]);
      const disk = await containerBytes(dir);
      maxDisk = Math.max(maxDisk, disk);
      const live = [...expected.values()].flat().reduce((n, f) => n + f.length, 0);
      // compaction below 50% live: at most twice the live data, plus the open container's slack
      expect(disk, `round ${round}`).toBeLessThanOrEqual(2 * live + 16 * MiB);
      for (const bc of carts) {
        const got = await readFiles(env.libs, bc);
        const want = expected.get(bc)!;
        expect(got.length).toBe(want.length);
        got.forEach((f, k) => expect(f.equals(want[k]), `${bc} file ${k} round ${round}`).toBe(true));
      }
    }
    // GC did real work: far more was written than is kept (without GC the disk would hold about
    // all of it; how much the open container holds at each round varies with timing, so the
    // margin is 2.5x rather than the 3x seen on a quiet machine)
    expect(written).toBeGreaterThan(2.5 * maxDisk);
    const stats = env.store.chunks.getStats();
    expect(stats.storedBytes).toBeLessThanOrEqual((await containerBytes(dir)) + 1);
  } finally {
    await env.close();
  }
  // after a restart everything still reads back (index and keys agree with the files)
  const again = await openEnv(dir);
  try {
    for (const bc of ['GC0001L7', 'GC0002L7', 'GC0003L7']) expect((await readFiles(again.libs, bc)).length).toBe(3);
    const r = await again.gc.run(quiet);
    expect(r.deleted + r.compacted).toBe(0); // nothing left to collect
  } finally {
    await again.close();
  }
}, 120_000);

test('a backup that re-uses erased chunks while GC runs keeps them, also when GC compacts their container; GC does not wait for its filemark', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vtl-gc-'));
  dirs.push(dir);
  const env = await openEnv(dir, true);
  try {
    await env.libs.createLibrary({ name: 'gc', drives: 1, slots: 4, mailslots: 0 });
    await env.libs.createCartridges({ library: 'gc', barcodes: ['RACE01', 'RACE02', 'FILL01'], mediaType: 'LTO-7' });
    // RACE01's first container (8 MiB) holds A and most of B
    const [a, b, c] = [bytesOf(1000, 2 * MiB), bytesOf(1001, 6 * MiB), bytesOf(1002, 2 * MiB)];
    await writeFiles(env.libs, 'RACE01', [a, b, c]);
    const fill = bytesOf(5000, 12 * MiB);
    await writeFiles(env.libs, 'FILL01', [fill]); // seals RACE01's containers
    await env.libs.eraseCartridge('RACE01'); // all of RACE01's chunks are garbage now

    // A GC over the same store and streams whose first container waits at a gate: it has begun
    // (its live set taken, open writers asked for what they hold) and swept nothing yet
    let begun!: () => void;
    const started = new Promise<void>((r) => (begun = r));
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const chunks = env.store.chunks;
    const held = new Proxy(chunks, {
      get(target, key) {
        if (key === 'collectContainer') {
          return async (...args: Parameters<ChunkStore['collectContainer']>) => {
            begun();
            await gate;
            return target.collectContainer(...args);
          };
        }
        const v = Reflect.get(target, key, target) as unknown;
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    const gc = new GarbageCollector(new Jobs(env.store.db), held, env.store.streams);

    const m = await env.libs.tapes.mount('RACE02');
    const put = async (bytes: Buffer): Promise<void> => {
      for (let at = 0; at < bytes.length; at += MiB) expect((await m.write(bytes.subarray(at, at + MiB))).ok).toBe(true);
    };
    // The backup starts its first file with A (dedup hits on erased chunks), then bytes FILL01
    // holds too (live chunks: so the only chunks GC could wrongly sweep are erased ones). The
    // stream's writer stores 4 MiB batches, three buffers in turn: the write that fills the
    // third (at 12 MiB) returns once the first batch is stored and its entries are in the
    // writer's page. So when GC begins, A's chunks are named only in the writer's memory.
    const n1 = fill.subarray(0, 10 * MiB);
    await put(a);
    await put(n1);
    const report = gc.run(quiet);
    await started;

    // While GC runs, the backup re-uses more erased chunks: S, 1 MiB of B (the store records
    // what it hands out during GC); the two batches after S's make sure it was handed out
    const s = b.subarray(2 * MiB, 3 * MiB);
    const n2 = fill.subarray(MiB);
    await put(s);
    await put(n2);

    // Now GC sweeps, the tape still between filemarks: RACE01's first container is live only
    // through A (held by the writer) and S, under half of it: GC compacts it, moving them while
    // the writer's page still names the old container
    open();
    const r = await report;
    expect(r.compacted).toBeGreaterThan(0);
    expect(r.movedChunks).toBeGreaterThan(0);

    // the filemark, after GC, commits those stale hints (nothing stores A again: a lost chunk
    // of A could not be found through the index)
    expect((await m.writeFilemarks(1)).ok).toBe(true);
    await m.unload();
    const want = Buffer.concat([a, n1, s, n2]);
    const check = async (when: string): Promise<void> => {
      const got = await readFiles(env.libs, 'RACE02');
      expect(got.length, when).toBe(1);
      expect(got[0].equals(want), when).toBe(true);
    };
    await check('after the GC that ran during the file');
    // a second GC with everything quiet (the map must name the container the copies are in)
    await env.gc.run(quiet);
    await check('after a quiet GC');
  } finally {
    await env.close();
  }
}, 60_000);

test('a tape left loaded after a filemark does not hold GC back; appending after GC moved its chunks reads back', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vtl-gc-'));
  dirs.push(dir);
  const env = await openEnv(dir, true);
  try {
    await env.libs.createLibrary({ name: 'gc', drives: 1, slots: 4, mailslots: 0 });
    await env.libs.createCartridges({ library: 'gc', barcodes: ['OLD001', 'KEEP01', 'FILL01'], mediaType: 'LTO-7' });
    await writeFiles(env.libs, 'OLD001', [bytesOf(2000, 6 * MiB)]);
    // KEEP01 stays loaded after its filemark (a drive waiting for the next backup)
    const first = bytesOf(2001, MiB);
    const m = await env.libs.tapes.mount('KEEP01');
    for (let at = 0; at < first.length; at += 256 * 1024) await m.write(first.subarray(at, at + 256 * 1024));
    expect((await m.writeFilemarks(1)).ok).toBe(true);
    await writeFiles(env.libs, 'FILL01', [bytesOf(2002, 9 * MiB)]); // seals the container KEEP01's file is in
    await env.libs.eraseCartridge('OLD001'); // that container is now mostly garbage

    // GC neither waits nor gives up: it compacts the container, moving KEEP01's chunks
    const report = await env.gc.run(quiet);
    expect(report.compacted + report.deleted).toBeGreaterThan(0);
    expect(report.movedChunks).toBeGreaterThan(0);

    // the same writer goes on: a repeat of the moved file (dedup hits) and new bytes
    const second = Buffer.concat([first, bytesOf(2003, MiB)]);
    for (let at = 0; at < second.length; at += 256 * 1024) await m.write(second.subarray(at, at + 256 * 1024));
    expect((await m.writeFilemarks(1)).ok).toBe(true);
    await m.unload();
    await env.gc.run(quiet);
    const got = await readFiles(env.libs, 'KEEP01');
    expect(got.length).toBe(2);
    expect(got[0].equals(first)).toBe(true);
    expect(got[1].equals(second)).toBe(true);
  } finally {
    await env.close();
  }
}, 60_000);

test('GC during a tape file keeps the chunks the writer refers to only in memory', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vtl-gc-'));
  dirs.push(dir);
  const env = await openEnv(dir, true);
  try {
    await env.libs.createLibrary({ name: 'gc', drives: 1, slots: 4, mailslots: 0 });
    await env.libs.createCartridges({ library: 'gc', barcodes: ['OLD001', 'BUSY01', 'FILL01'], mediaType: 'LTO-7' });
    const old = bytesOf(3000, 12 * MiB);
    await writeFiles(env.libs, 'OLD001', [old]);
    await writeFiles(env.libs, 'FILL01', [bytesOf(3001, 9 * MiB)]); // seals OLD001's containers
    await env.libs.eraseCartridge('OLD001'); // nothing in the database refers to its chunks now

    // BUSY01 writes the same bytes and stays between filemarks: its references to those chunks
    // are in its memory only (pages, batches in flight) while GC runs to the end
    const m = await env.libs.tapes.mount('BUSY01');
    for (let at = 0; at < old.length; at += MiB) expect((await m.write(old.subarray(at, at + MiB))).ok).toBe(true);
    const report = await env.gc.run(quiet);
    expect(report.containers).toBeGreaterThan(0);
    expect(report.deleted + report.compacted + report.kept).toBe(report.containers);

    // the file ends after GC, with new bytes; everything reads back, also after a quiet GC
    const tail = bytesOf(3002, 3 * MiB);
    for (let at = 0; at < tail.length; at += MiB) expect((await m.write(tail.subarray(at, at + MiB))).ok).toBe(true);
    expect((await m.writeFilemarks(1)).ok).toBe(true);
    await m.unload();
    const want = Buffer.concat([old, tail]);
    expect((await readFiles(env.libs, 'BUSY01'))[0].equals(want)).toBe(true);
    await env.gc.run(quiet);
    const got = await readFiles(env.libs, 'BUSY01');
    expect(got.length).toBe(1);
    expect(got[0].equals(want)).toBe(true);
  } finally {
    await env.close();
  }
}, 60_000);

test('chunk store: a chunk handed out during GC stays live; stale hints read through the index', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vtl-gc-'));
  dirs.push(dir);
  const env = await openEnv(dir, true);
  const chunks = Array.from({ length: 40 }, (_, i) => bytesOf(7000 + i, 64 * 1024));
  let refs: Awaited<ReturnType<typeof env.store.chunks.putChunks>> = [];
  try {
    const cs = env.store.chunks;
    refs = await cs.putChunks(chunks);
    await cs.commit();
    await env.store.chunks.close(); // seals the container
  } finally {
    await env.store.db.close();
  }
  const env2 = await openEnv(dir);
  try {
    const cs = env2.store.chunks;
    const { BloomFilter } = await import('../../src/dedup/bloom.js');
    const live = new BloomFilter(1024);
    await cs.beginGc(live);
    // no recipe refers to any chunk; a backup stores chunk 3 again during GC (a dedup hit)
    const [hit] = await cs.putChunks([chunks[3]]);
    const old = hit.ref.container;
    const [id] = await cs.gcCandidates();
    expect(id).toBe(old);
    const r = await cs.collectContainer(id, 0.5, recipePageAccess(env2.store.streams.pages as BinarySublevel));
    cs.endGc();
    expect(r).toMatchObject({ action: 'compacted', chunks: 40, liveChunks: 1, movedChunks: 1 });
    expect(r.into).toBeGreaterThan(id);
    // the stale reference (old container) is served through the index
    const [back] = await cs.readChunks([hit]);
    expect(back.equals(chunks[3])).toBe(true);
    // a chunk that was garbage is gone for good, with a clear message, and its index entry too
    await expect(cs.readChunks([refs[5]])).rejects.toThrow(/missing from the store/);
    const [again] = await cs.putChunks([chunks[5]]);
    expect([id, r.into]).not.toContain(again.ref.container);
    expect(refs[3].ref.container).toBe(id);
  } finally {
    await env2.close();
  }
});

test('GC keeps the chunks of a batch the store answered and the writer has not put in a page yet', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vtl-gc-'));
  dirs.push(dir);
  const env = await openEnv(dir, true);
  try {
    const { streams, chunks, db } = env.store;
    const writeStream = async (on: RecipeStreams, data: Buffer): Promise<string> => {
      const id = await on.create();
      const w = await on.openWriter(id);
      await w.write(data);
      await w.close();
      return id;
    };
    const old = bytesOf(4000, 6 * MiB);
    const gone = await writeStream(streams, old);
    await writeStream(streams, bytesOf(4001, 9 * MiB)); // seals the containers `old` is in
    await streams.delete(gone); // nothing in the database refers to its chunks now

    // streams over the same store whose batches wait, once the store has answered, at a gate
    let answered = 0;
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const gated = new Proxy(chunks, {
      get(target, key) {
        if (key === 'putCut') {
          return async (...args: Parameters<ChunkStore['putCut']>) => {
            const refs = await target.putCut(...args);
            answered++;
            await gate;
            return refs;
          };
        }
        const v = Reflect.get(target, key, target) as unknown;
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    const held = new RecipeStreams(db, gated);
    const id = await held.create();
    const w = await held.openWriter(id);
    await w.write(old.subarray(0, 4 * MiB)); // one whole batch: cut, fingerprinted, handed to the store
    while (answered === 0) await new Promise((r) => setTimeout(r, 5));

    // its references exist only as the answer the writer waits for
    const report = await new GarbageCollector(new Jobs(db), chunks, held).run(quiet);
    expect(report.containers).toBeGreaterThan(0);
    open();
    await w.write(old.subarray(4 * MiB));
    await w.close();
    const r = await held.openReader(id);
    expect((await r.read(old.length)).equals(old)).toBe(true);
  } finally {
    await env.close();
  }
}, 60_000);

/** Files under `dir` deleted but still open in this process (workers' descriptors included). */
async function deletedButOpen(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target.startsWith(dir) && target.endsWith(' (deleted)')) out.push(target);
  }
  return out;
}

test.skipIf(!existsSync('/proc/self/fd'))('GC lets go of the containers it deletes: no reader keeps one open, or its disk space', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vtl-gc-'));
  dirs.push(dir);
  const env = await openEnv(dir, true);
  try {
    await env.libs.createLibrary({ name: 'gc', drives: 1, slots: 4, mailslots: 0 });
    await env.libs.createCartridges({ library: 'gc', barcodes: ['HOLD01', 'KEEP01'], mediaType: 'LTO-7' });
    const held = bytesOf(7000, 24 * MiB);
    await writeFiles(env.libs, 'HOLD01', [held]);
    await writeFiles(env.libs, 'KEEP01', [bytesOf(7001, 9 * MiB)]); // seals HOLD01's containers
    // read back: the codec workers now hold HOLD01's containers open
    expect((await readFiles(env.libs, 'HOLD01'))[0].equals(held)).toBe(true);
    await env.libs.eraseCartridge('HOLD01');
    const report = await env.gc.run(quiet);
    expect(report.deleted).toBeGreaterThanOrEqual(2);
    expect(await deletedButOpen(dir)).toEqual([]);
    expect((await readFiles(env.libs, 'KEEP01'))[0].equals(bytesOf(7001, 9 * MiB))).toBe(true);
  } finally {
    await env.close();
  }
});
