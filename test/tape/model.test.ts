/**
 * Property: any sequence of tape operations gives the same results on a vtl medium as on the
 * naive reference tape (test/tape/reference.ts), including positions after every step, and the
 * medium's per-file checksums verify at the end.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { Medium, ReadResult, TapeResult } from '../../src/tape/index.js';
import { ReferenceTape, type RefResult } from './reference.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initDataStore, openDataStore } from '../../src/stream/store.js';
import { TapeStore } from '../../src/tape/index.js';
import { openEnv, rec, type Env } from './util.js';

const CAPACITY = 900;
const EW = 200;

type Cmd =
  | { op: 'write'; size: number; tag: number }
  | { op: 'writeBlocks'; blocks: number; tag: number }
  | { op: 'wfm'; n: number }
  | { op: 'read'; len: number }
  | { op: 'spaceR'; n: number }
  | { op: 'spaceF'; n: number }
  | { op: 'eod' }
  | { op: 'locate'; lba: number }
  | { op: 'rewind' }
  | { op: 'erase' }
  | { op: 'blockSize'; bs: number }
  | { op: 'reload' };

const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 10, arbitrary: fc.record({ op: fc.constant('write' as const), size: fc.oneof(fc.integer({ min: 1, max: 300 }), fc.constantFrom(32, 64)), tag: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('writeBlocks' as const), blocks: fc.integer({ min: 1, max: 4 }), tag: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('wfm' as const), n: fc.integer({ min: 0, max: 3 }) }) },
  { weight: 6, arbitrary: fc.record({ op: fc.constant('read' as const), len: fc.oneof(fc.integer({ min: 1, max: 400 }), fc.constantFrom(32, 64, 128, 256)) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('spaceR' as const), n: fc.integer({ min: -6, max: 6 }) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('spaceF' as const), n: fc.integer({ min: -3, max: 3 }) }) },
  { weight: 1, arbitrary: fc.constant({ op: 'eod' as const }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('locate' as const), lba: fc.integer({ min: 0, max: 40 }) }) },
  { weight: 2, arbitrary: fc.constant({ op: 'rewind' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'erase' as const }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('blockSize' as const), bs: fc.constantFrom(0, 0, 32, 64) }) },
  { weight: 1, arbitrary: fc.constant({ op: 'reload' as const }) },
);

function shape(x: TapeResult | ReadResult): RefResult {
  const out: RefResult = {
    ok: x.ok,
    transferred: x.transferred,
    residue: x.residue,
    filemark: x.filemark,
    eod: x.eod,
    eom: x.eom,
    earlyWarning: x.earlyWarning,
    bom: x.bom,
    ili: x.ili,
  };
  if (x.sense) out.senseKey = x.sense.key;
  if ('data' in x) out.data = x.data;
  return out;
}

let env: Env;
let real: { tapes: TapeStore; close(): Promise<void> };
let realDir: string;
beforeAll(async () => {
  env = await openEnv();
  realDir = await mkdtemp(join(tmpdir(), 'vtl-model-real-'));
  await initDataStore(realDir);
  const ds = await openDataStore(realDir);
  real = { tapes: new TapeStore({ db: ds.db, streams: ds.streams }), close: () => ds.close() };
});
afterAll(async () => {
  await env.destroy();
  await real.close();
  await rm(realDir, { recursive: true, force: true });
});

async function apply(m: Medium, ref: ReferenceTape, c: Cmd): Promise<[RefResult, RefResult]> {
  switch (c.op) {
    case 'write': {
      const d = rec(c.tag, c.size);
      return [shape(await m.write(d)), ref.write(d)];
    }
    case 'writeBlocks': {
      const d = rec(c.tag, c.blocks * (ref.bs || 48));
      return [shape(await m.write(d)), ref.write(d)];
    }
    case 'wfm':
      return [shape(await m.writeFilemarks(c.n)), ref.writeFilemarks(c.n)];
    case 'read':
      return [shape(await m.read(c.len)), ref.read(c.len)];
    case 'spaceR':
      return [shape(await m.space('records', c.n)), ref.spaceRecords(c.n)];
    case 'spaceF':
      return [shape(await m.space('filemarks', c.n)), ref.spaceFilemarks(c.n)];
    case 'eod':
      return [shape(await m.space('eod')), ref.spaceEod()];
    case 'locate':
      return [shape(await m.locate(c.lba)), ref.locate(c.lba)];
    case 'rewind':
      return [shape(await m.rewind()), ref.rewind()];
    case 'erase':
      return [shape(await m.erase()), ref.erase()];
    case 'blockSize':
      return [shape(m.setBlockSize(c.bs)), ref.setBlockSize(c.bs)];
    case 'reload':
      throw new Error('handled by the caller');
  }
}

const cases = [
  { streams: 'memory', runs: 300, tapes: () => env.tapes },
  { streams: 'real (dedup recipes)', runs: Number(process.env.REAL_RUNS ?? 100), tapes: () => real.tapes },
];
let serial = 0;

test.each(cases)('random tape operations match the reference tape on $streams streams', async ({ runs, tapes: getTapes }) => {
  let endOfMedium = 0;
  let filemarksRead = 0;
  const tapes = getTapes();
  await fc.assert(
    fc.asyncProperty(fc.array(cmd, { minLength: 1, maxLength: 80, size: 'max' }), async (cmds) => {
      const id = `MODEL${++serial}`;
      await tapes.create(id, { mediaType: 'custom', capacity: CAPACITY, earlyWarning: EW });
      let m = await tapes.mount(id);
      const ref = new ReferenceTape(CAPACITY, EW);
      try {
        for (const [i, c] of cmds.entries()) {
          if (c.op === 'reload') {
            await m.unload();
            m = await tapes.mount(m.id);
            m.setBlockSize(ref.bs);
            ref.rewind();
          } else {
            const [got, want] = await apply(m, ref, c);
            expect(got, `step ${i}: ${JSON.stringify(c)}`).toEqual(want);
            if (want.eom) endOfMedium++;
            if (want.filemark && c.op === 'read') filemarksRead++;
          }
          const p = await m.readPosition();
          expect({ lba: p.lba, file: p.file, block: p.block, bop: p.bop, eod: p.eod }, `position after step ${i}`).toEqual(ref.position());
        }
        const v = await m.verify();
        expect(v.bad).toEqual([]);
        expect(v.bytes).toBe(ref.objs.reduce((n, o) => n + (o.fm ? 0 : o.data.length), 0));
      } finally {
        await m.unload();
      }
    }),
    { numRuns: runs },
  );
  // The runs must have reached the early-warning zone and read whole files, or they prove little.
  expect(endOfMedium).toBeGreaterThan(runs / 15);
  expect(filemarksRead).toBeGreaterThan(runs / 15);
});
