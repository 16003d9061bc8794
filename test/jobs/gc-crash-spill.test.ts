/**
 * Writes cut short past their last sync point leak no space for good. A stream writer spills
 * full recipe pages to LevelDB ahead of its sync point (memory stays bounded on long writes);
 * those pages name chunks, and GC counts every page its reverse map names. Here a child process
 * runs two backups side by side far past their sync points and is killed (SIGKILL): the
 * cartridges reopen as of their last sync point, and GC then reclaims everything the killed
 * writes stored, also when the open that recovers from the crash is itself killed midway, and
 * in a store from before the marks recovery goes by. A writer aborted in a running server
 * leaves nothing behind either.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Level } from 'level';
import { afterAll, expect, test } from 'vitest';
import { pageKey } from '../../src/stream/recipes.js';
import { initDataStore } from '../../src/stream/store.js';
import { bytesOf, containerBytes, openEnv, readFiles, writeFiles } from './gc-util.js';

const CHILD = fileURLToPath(new URL('./gc-spill-child.ts', import.meta.url));
const MiB = 1 << 20;
/**
 * Small chunks (1 KiB on average) make recipe pages of about 1 MiB of stream, so a writer
 * spills (16 full pages) after some 17 MiB instead of 140 MiB: the same code, a cheaper test.
 */
const CHUNKING = { min: 256, avg: 1024, max: 8192 };
/** MiB each backup writes before the child says READY: at least two spills per writer. */
const UNSYNCED_MIB = 40;
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
const quiet = { progress: () => undefined, checkCancelled: () => undefined };

/** Spawns the child; kills it `ms` after it printed `word` (or lets it end). Resolves its output. */
function runAndKill(args: string[], word: string, ms: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let armed = false;
    child.stderr.on('data', (d) => (err += d));
    child.stdout.on('data', (d) => {
      out += d;
      if (!armed && out.includes(`${word}\n`)) {
        armed = true;
        setTimeout(() => child.kill('SIGKILL'), ms);
      }
    });
    child.on('exit', (code, signal) => {
      if (signal === 'SIGKILL' || code === 0) resolve(out);
      else reject(new Error(`child failed (${code}): ${err}`));
    });
  });
}

/** Straight from LevelDB (the store closed), no vtl code in between: recipe pages at or past each stream's synced length. */
async function rawLevel<T>(dir: string, fn: (db: Level<string, unknown>) => Promise<T>): Promise<T> {
  const db = new Level<string, unknown>(join(dir, 'index'), { keyEncoding: 'utf8', valueEncoding: 'json' });
  await db.open();
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}

function pagesPastSync(dir: string): Promise<number> {
  return rawLevel(dir, async (db) => {
    const streams = db.sublevel<string, { length: number }>('streams', { valueEncoding: 'json' });
    const pages = db.sublevel<Buffer, Buffer>('recipes', { keyEncoding: 'buffer', valueEncoding: 'buffer' });
    let n = 0;
    for await (const [id, meta] of streams.iterator()) {
      for await (const _ of pages.keys({ gte: pageKey(id, meta.length), lte: pageKey(id, Number.MAX_SAFE_INTEGER) })) n++;
    }
    return n;
  });
}

const KEPT = bytesOf(1, 3 * MiB);

/**
 * A store with two cartridges, BLANK01 blank (its first write makes its stream) and DATA01
 * holding one synced file (KEPT); then the child writes on both, far past their sync points,
 * and is killed. Answers the container bytes before and after.
 */
async function crashedStore(): Promise<{ dir: string; baseline: number; crashed: number; spilled: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'vtl-gcspill-'));
  dirs.push(dir);
  await initDataStore(dir, CHUNKING);
  const env = await openEnv(dir);
  try {
    await env.libs.createLibrary({ name: 'sp', drives: 2, slots: 4, mailslots: 0 });
    await env.libs.createCartridges({ library: 'sp', barcodes: ['BLANK01', 'DATA01'], mediaType: 'LTO-7' });
    await writeFiles(env.libs, 'DATA01', [KEPT]);
  } finally {
    await env.close();
  }
  const baseline = await containerBytes(dir);
  const out = await runAndKill([dir, 'write', String(UNSYNCED_MIB), 'BLANK01', 'DATA01'], 'READY', Math.floor(Math.random() * 200));
  expect(out).toContain('READY');
  const crashed = await containerBytes(dir);
  expect(crashed).toBeGreaterThan(baseline + 16 * MiB);
  // the writers did spill: pages past the sync point survived the kill
  const spilled = await pagesPastSync(dir);
  expect(spilled).toBeGreaterThan(0);
  return { dir, baseline, crashed, spilled };
}

/**
 * Opens the crashed store: both cartridges stand at their last sync point; GC as the tester
 * ran it (once, then after erasing the blank cartridge with threshold 1) leaves only KEPT;
 * both cartridges take new backups afterwards. Answers the figures for the log.
 */
async function checkReclaimed(dir: string): Promise<object> {
  const env = await openEnv(dir);
  try {
    expect(await readFiles(env.libs, 'BLANK01')).toEqual([]);
    const back = await readFiles(env.libs, 'DATA01');
    expect(back.length).toBe(1);
    expect(back[0].equals(KEPT)).toBe(true);

    const first = await env.gc.run(quiet);
    await env.libs.eraseCartridge('BLANK01');
    const second = await env.gc.run(quiet, 1);
    const disk = await containerBytes(dir);
    const stored = env.store.chunks.getStats().storedBytes;
    // what is left: the synced file with its framing, nothing of the killed writes
    expect(disk).toBeLessThanOrEqual(KEPT.length + MiB);
    expect(stored).toBeLessThanOrEqual(disk + 1);

    const more = [bytesOf(2, 5 * MiB), bytesOf(3, 2 * MiB)];
    await writeFiles(env.libs, 'BLANK01', [more[0]]);
    await writeFiles(env.libs, 'DATA01', [more[1]]);
    await env.gc.run(quiet, 1);
    const blank = await readFiles(env.libs, 'BLANK01');
    const data = await readFiles(env.libs, 'DATA01');
    expect(blank.length).toBe(1);
    expect(blank[0].equals(more[0])).toBe(true);
    expect(data.length).toBe(2);
    expect(data[0].equals(KEPT)).toBe(true);
    expect(data[1].equals(more[1])).toBe(true);
    const gc = [first, second].map((r) => ({ containers: r.containers, deleted: r.deleted, compacted: r.compacted, kept: r.kept, storedBefore: r.storedBytesBefore, storedAfter: r.storedBytesAfter }));
    return { containerBytesAfterGc: disk, storedBytesAfterGc: stored, gc };
  } finally {
    await env.close();
  }
}

test('after a SIGKILL during long writes, GC reclaims all they stored, also when the recovering open is killed midway', async () => {
  const { dir, baseline, crashed, spilled } = await crashedStore();

  // The open that recovers is killed right after each batch of pages it commits, one batch
  // further each time (every open resumes where the killed one stopped), until one completes;
  // the pages past sync points are counted after each.
  const left: number[] = [];
  for (let round = 0; ; round++) {
    expect(round, 'recovery ends').toBeLessThan(20);
    const out = await runAndKill([dir, 'open', '1'], 'never', 0);
    left.push(await pagesPastSync(dir));
    if (out.includes('OPENED')) break;
  }
  expect(left.length).toBeGreaterThan(2); // killed in the middle of recovery, more than once
  expect(left.every((n, i) => n <= (i === 0 ? spilled : left[i - 1]))).toBe(true);
  expect(left[left.length - 1]).toBe(0);

  const figures = await checkReclaimed(dir);
  console.log(JSON.stringify({ spilledPagesPastSync: spilled, pagesLeftAfterEachOpen: left, containerBytes: { baseline, afterCrash: crashed }, ...figures }));
}, 180_000);

test('a store from before the spill marks: its first open finds the streams with pages past their sync point', async () => {
  const { dir, crashed, spilled } = await crashedStore();
  // as an older vtl left it: no marks, and no record that the store was ever checked
  await rawLevel(dir, async (db) => {
    const marks = db.sublevel<string, unknown>('spilled', { valueEncoding: 'json' });
    for await (const k of marks.keys()) await marks.del(k);
    await db.sublevel<string, unknown>('streamstate', { valueEncoding: 'json' }).del('spillMarks');
  });
  const figures = await checkReclaimed(dir);
  console.log(JSON.stringify({ spilledPagesPastSync: spilled, containerBytesAfterCrash: crashed, ...figures }));
}, 180_000);

test('a writer aborted far past its sync point leaves nothing for GC to keep (no restart)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vtl-gcspill-'));
  dirs.push(dir);
  await initDataStore(dir, CHUNKING);
  const env = await openEnv(dir);
  try {
    const { streams } = env.store;
    const id = await streams.create();
    const w = await streams.openWriter(id);
    const kept = bytesOf(10, 2 * MiB);
    await w.write(kept);
    await w.sync();
    for (let i = 0; i < 40; i++) await w.write(bytesOf(11 + i, MiB));
    await w.abort();
    await env.store.chunks.commit(); // containers sealing in the background are settled before counting files
    const before = await containerBytes(dir);
    const report = await env.gc.run(quiet, 1);
    const after = await containerBytes(dir);
    expect(before).toBeGreaterThan(30 * MiB);
    expect(after).toBeLessThanOrEqual(kept.length + 9 * MiB); // the store's open container holds up to 8 MiB
    expect(report.deleted + report.compacted).toBeGreaterThan(0);
    // the stream stands at its sync point, and takes more
    expect(await streams.length(id)).toBe(kept.length);
    const more = bytesOf(99, 3 * MiB);
    const w2 = await streams.openWriter(id);
    await w2.write(more);
    await w2.close();
    await env.gc.run(quiet, 1);
    const r = await streams.openReader(id);
    expect((await r.read(kept.length + more.length)).equals(Buffer.concat([kept, more]))).toBe(true);
    console.log(JSON.stringify({ containerBytesBeforeGc: before, afterGc: after }));
  } finally {
    await env.close();
  }
}, 120_000);
