/**
 * Scrub: random bytes flipped in containers are found, every damaged chunk and nothing else,
 * with the cartridges and tape files that depend on them; a damaged footer is found too.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { containerPath } from '../../src/dedup/container.js';
import { Jobs, Scrubber } from '../../src/jobs/index.js';
import { RECIPE_ENTRY } from '../../src/stream/recipes.js';
import { bytesOf, openEnv, writeFiles, type Env } from './gc-util.js';
import { flip } from '../helpers/data.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
const quiet = { progress: () => undefined, checkCancelled: () => undefined };
const MiB = 1 << 20;
const FILES: Record<string, number[]> = { SC0001L7: [3 * MiB, 2 * MiB], SC0002L7: [MiB, 4 * MiB, 1234567] };

interface Entry {
  barcode: string;
  file: number;
  container: number;
  offset: number;
  frameLength: number;
}

async function prepare(): Promise<{ dir: string; entries: Entry[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'vtl-scrub-'));
  dirs.push(dir);
  const env = await openEnv(dir, true);
  let seed = 1;
  try {
    await env.libs.createLibrary({ name: 'sc', drives: 1, slots: 4, mailslots: 0 });
    await env.libs.createCartridges({ library: 'sc', barcodes: Object.keys(FILES) });
    for (const [bc, sizes] of Object.entries(FILES)) await writeFiles(env.libs, bc, sizes.map((n) => bytesOf(seed++, n)));
    return { dir, entries: await recipeEntries(env) };
  } finally {
    await env.close(); // seals every container
  }
}

/** Every chunk reference of every cartridge, with the tape file it lies in (chunks lie inside one file here: random data never repeats). */
async function recipeEntries(env: Env): Promise<Entry[]> {
  const out: Entry[] = [];
  for (const [bc, sizes] of Object.entries(FILES)) {
    const sid = (await env.libs.tapes.info(bc)).streamId!;
    const ends = sizes.map((_, i) => sizes.slice(0, i + 1).reduce((a, b) => a + b, 0));
    let at = 0;
    for await (const [, page] of env.store.streams.pageRange(sid, 0)) {
      for (let e = 0; e < page.length; e += RECIPE_ENTRY) {
        out.push({ barcode: bc, file: ends.findIndex((end) => at < end), container: page.readUInt32BE(e + 16), offset: page.readUInt32BE(e + 20), frameLength: page.readUInt32BE(e + 24) });
        at += page.readUInt32BE(e + 32);
      }
    }
  }
  return out;
}

test('every flipped chunk is found, nothing else, with the cartridges and files that hold it', async () => {
  const { dir, entries } = await prepare();
  const picked = new Map<string, Entry>();
  while (picked.size < 12) {
    const e = entries[Math.floor(Math.random() * entries.length)];
    picked.set(`${e.container}:${e.offset}`, e);
  }
  for (const e of picked.values()) await flip(containerPath(join(dir, 'containers'), e.container, true), e.offset + Math.floor(Math.random() * e.frameLength));

  const env = await openEnv(dir);
  try {
    const scrub = new Scrubber(new Jobs(env.store.db), env.store.chunks, env.store.streams, env.libs);
    const r = await scrub.run(quiet, { maxMBps: 0 });
    expect(r.chunksChecked).toBe(new Set(entries.map((e) => `${e.container}:${e.offset}`)).size);
    expect(r.damagedContainers).toEqual([]);
    expect(r.damagedChunks).toBe(picked.size);
    expect(new Set(r.damaged.map((d) => `${d.container}:${d.offset}`))).toEqual(new Set(picked.keys()));
    expect(r.repairedChunks).toBe(0);
    const want = new Map<string, Set<number>>();
    for (const e of picked.values()) (want.get(e.barcode) ?? want.set(e.barcode, new Set()).get(e.barcode)!).add(e.file);
    expect(r.affectedCartridges).toEqual(
      [...want.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([barcode, files]) => ({ barcode, files: [...files].sort((a, b) => a - b) })),
    );
  } finally {
    await env.close();
  }
});

test('a clean store scrubs clean; a damaged footer names its container and the cartridges that use it', async () => {
  const { dir, entries } = await prepare();
  let env = await openEnv(dir);
  try {
    const r = await new Scrubber(new Jobs(env.store.db), env.store.chunks, env.store.streams, env.libs).run(quiet, { maxMBps: 0 });
    expect(r).toMatchObject({ damagedChunks: 0, damagedContainers: [], affectedCartridges: [], indexMismatches: 0, danglingIndexEntries: 0 });
    expect(r.bytesRead).toBeGreaterThan(10 * MiB);
  } finally {
    await env.close();
  }
  const victim = entries[entries.length - 1].container; // holds the end of SC0002L7
  const path = containerPath(join(dir, 'containers'), victim, true);
  await flip(path, (await stat(path)).size - 60); // inside the footer's tag, before the trailer
  env = await openEnv(dir);
  try {
    const r = await new Scrubber(new Jobs(env.store.db), env.store.chunks, env.store.streams, env.libs).run(quiet, { maxMBps: 0 });
    expect(r.damagedContainers).toEqual([victim]);
    const users = [...new Set(entries.filter((e) => e.container === victim).map((e) => e.barcode))].sort();
    expect(r.affectedCartridges.map((a) => a.barcode)).toEqual(users);
  } finally {
    await env.close();
  }
});

test('the throttle holds scrub near its rate', async () => {
  const { dir } = await prepare();
  const env = await openEnv(dir);
  try {
    const r = await new Scrubber(new Jobs(env.store.db), env.store.chunks, env.store.streams, env.libs).run(quiet, { maxMBps: 20 });
    expect(r.mbPerSecond).toBeLessThanOrEqual(21);
    expect(r.seconds).toBeGreaterThanOrEqual(r.bytesRead / 20e6 - 0.05);
  } finally {
    await env.close();
  }
});

test('a container file that vanished: the index entries into it are reported, with their cartridges', async () => {
  const { dir, entries } = await prepare();
  const victim = entries[0].container; // holds the start of SC0001L7
  await rm(containerPath(join(dir, 'containers'), victim, true));
  const env = await openEnv(dir);
  try {
    const r = await new Scrubber(new Jobs(env.store.db), env.store.chunks, env.store.streams, env.libs).run(quiet, { maxMBps: 0 });
    const inVictim = new Set(entries.filter((e) => e.container === victim).map((e) => e.offset)).size;
    expect(r.danglingIndexEntries).toBe(inVictim);
    expect(r.damaged.filter((d) => d.reason.includes('gone'))).toHaveLength(Math.min(100, inVictim));
    const users = [...new Set(entries.filter((e) => e.container === victim).map((e) => e.barcode))].sort();
    expect(r.affectedCartridges.map((a) => a.barcode)).toEqual(users);
  } finally {
    await env.close();
  }
});
