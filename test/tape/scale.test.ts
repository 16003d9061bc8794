/**
 * Tape map at scale: a million records, and tens of thousands of runs and hundreds of files;
 * locate, space and read position stay logarithmic (a handful of LevelDB seeks each).
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { newMedium, openEnv, rec, type Env } from './util.js';

let env: Env;
beforeAll(async () => {
  env = await openEnv();
});
afterAll(async () => {
  await env.destroy();
});

test('a million fixed-size records form one run; locate and space jump straight there', async () => {
  const m = await newMedium(env);
  m.setBlockSize(16);
  const N = 1_000_000;
  const data = Buffer.alloc(N * 16);
  for (let i = 0; i < N; i++) data.writeUInt32BE(i, i * 16);
  expect((await m.write(data)).ok).toBe(true);
  await m.writeFilemarks(1);
  expect(await env.tapes.map.lastRun(m.id)).toMatchObject({ lba: N, n: 1, size: 0 });
  expect(await env.tapes.map.runAt(m.id, 0)).toMatchObject({ lba: 0, n: N, size: 16 });
  const t0 = performance.now();
  expect((await m.locate(999_999)).ok).toBe(true);
  const r = await m.read(32);
  expect(r.data.readUInt32BE(0)).toBe(999_999);
  expect(r).toMatchObject({ transferred: 16, filemark: true, residue: 1 });
  expect((await m.space('records', -600_000)).filemark).toBe(true); // stops at the filemark (BOM side)
  expect((await m.space('records', -600_000)).ok).toBe(true);
  expect(await m.readPosition()).toMatchObject({ lba: N - 600_000, file: 0, block: N - 600_000, byte: (N - 600_000) * 16 });
  expect((await m.read(16)).data.readUInt32BE(0)).toBe(N - 600_000);
  console.log(`1M-record tape: locate+read+2 spaces+position in ${(performance.now() - t0).toFixed(1)} ms`);
  await m.unload();
});

test('50,000 runs in 500 files: random locates, spaces and positions', async () => {
  const m = await newMedium(env);
  const FILES = 500;
  const PER = 100; // records per file, each a run of its own (sizes alternate)
  const size = (f: number, i: number) => 10 + ((f * PER + i) % 2);
  const t0 = performance.now();
  for (let f = 0; f < FILES; f++) {
    for (let i = 0; i < PER; i++) await m.write(rec(f * PER + i, size(f, i)));
    await m.writeFilemarks(1);
  }
  const writeMs = performance.now() - t0;
  let runs = 0;
  for await (const _ of env.tapes.map.runs.keys({ gte: `${m.id}!`, lt: `${m.id}"` })) runs++;
  expect(runs).toBe(FILES * PER + FILES);

  let seed = 12345;
  const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) % n);
  const K = 2000;
  const t1 = performance.now();
  for (let k = 0; k < K; k++) {
    const f = rnd(FILES);
    const i = rnd(PER);
    const lba = f * (PER + 1) + i;
    expect((await m.locate(lba)).ok).toBe(true);
    const p = await m.readPosition();
    expect(p.file).toBe(f);
    expect(p.block).toBe(i);
    const r = await m.read(64);
    expect(r.data.equals(rec(f * PER + i, size(f, i)))).toBe(true);
  }
  const perLocate = (performance.now() - t1) / K;
  const t2 = performance.now();
  for (let k = 0; k < K; k++) {
    await m.rewind();
    const f = rnd(FILES);
    expect((await m.space('filemarks', f)).ok).toBe(true);
    expect((await m.space('records', 50)).ok).toBe(true);
    expect((await m.readPosition()).lba).toBe(f * (PER + 1) + 50);
  }
  const perSpace = (performance.now() - t2) / K;
  console.log(`50k runs: wrote in ${writeMs.toFixed(0)} ms; locate+position+read ${perLocate.toFixed(3)} ms; rewind+2 spaces+position ${perSpace.toFixed(3)} ms`);
  // Seeks, not walks: a walk over 50k runs would take far longer than this per operation.
  expect(perLocate).toBeLessThan(5);
  expect(perSpace).toBeLessThan(5);
  expect((await m.verify()).bad).toEqual([]);
  await m.unload();
});
