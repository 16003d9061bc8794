/**
 * Table-driven edge cases of the medium's SSC operations. Each case builds a tape with `setup`,
 * then runs `steps`, checking the listed fields of each result and, where given, the position.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Medium, MediumSpec, TapeResult } from '../../src/tape/index.js';
import { newMedium, openEnv, rec, type Env } from './util.js';

type Step =
  | ['w', number, number?] // write a record of n bytes (tag)
  | ['fm', number]
  | ['read', number]
  | ['space', 'records' | 'filemarks' | 'eod', number]
  | ['locate', number]
  | ['rewind']
  | ['erase']
  | ['bs', number];

interface Expect {
  r?: Partial<TapeResult> & { asc?: number; ascq?: number; key?: string; data?: Buffer };
  pos?: { lba?: number; file?: number; block?: number; eod?: boolean; bop?: boolean };
}

interface Case {
  name: string;
  spec?: Partial<MediumSpec>;
  setup: Step[];
  steps: Array<[Step, Expect]>;
}

async function run(m: Medium, s: Step): Promise<TapeResult & { data?: Buffer }> {
  switch (s[0]) {
    case 'w':
      return m.write(rec(s[2] ?? s[1], s[1]));
    case 'fm':
      return m.writeFilemarks(s[1]);
    case 'read':
      return m.read(s[1]);
    case 'space':
      return m.space(s[1], s[2]);
    case 'locate':
      return m.locate(s[1]);
    case 'rewind':
      return m.rewind();
    case 'erase':
      return m.erase();
    case 'bs':
      return m.setBlockSize(s[1]);
  }
}

const BLANK = { ok: false, eod: true, key: 'BLANK CHECK', asc: 0, ascq: 5 };

const cases: Case[] = [
  {
    name: 'filemark at start of tape',
    setup: [['fm', 1], ['w', 10], ['rewind']],
    steps: [
      [['read', 100], { r: { ok: true, filemark: true, transferred: 0, key: 'NO SENSE', asc: 0, ascq: 1 }, pos: { lba: 1, file: 1, block: 0 } }],
      [['read', 100], { r: { ok: true, transferred: 10, ili: true, residue: 90 } }],
      [['read', 100], { r: BLANK, pos: { lba: 2, eod: true } }],
    ],
  },
  {
    name: 'two filemarks as logical end',
    setup: [['w', 20], ['fm', 2], ['rewind']],
    steps: [
      [['read', 20], { r: { ok: true, transferred: 20 } }],
      [['read', 20], { r: { ok: true, filemark: true }, pos: { file: 1, block: 0 } }],
      [['read', 20], { r: { ok: true, filemark: true }, pos: { lba: 3, file: 2, eod: true } }],
      [['read', 20], { r: { ...BLANK, residue: 20 } }],
      [['space', 'filemarks', -1], { r: { ok: true }, pos: { lba: 2, file: 1 } }],
    ],
  },
  {
    name: 'space records backward over beginning of medium',
    setup: [['w', 5], ['w', 5], ['w', 5]],
    steps: [[['space', 'records', -5], { r: { ok: false, bom: true, residue: 2, key: 'NO SENSE', asc: 0, ascq: 4 }, pos: { lba: 0, bop: true } }]],
  },
  {
    name: 'space filemarks backward over beginning of medium',
    setup: [['w', 5], ['fm', 1], ['w', 5]],
    steps: [[['space', 'filemarks', -2], { r: { ok: false, bom: true, residue: 1 }, pos: { lba: 0 } }]],
  },
  {
    name: 'space records backward stops on the BOM side of a filemark',
    setup: [['w', 5], ['fm', 1], ['w', 5], ['w', 5]],
    steps: [[['space', 'records', -3], { r: { ok: false, filemark: true, residue: 1 }, pos: { lba: 1, file: 0, block: 1 } }]],
  },
  {
    name: 'space records forward stops after a filemark',
    setup: [['w', 5], ['w', 5], ['fm', 1], ['w', 5], ['rewind']],
    steps: [[['space', 'records', 5], { r: { ok: false, filemark: true, residue: 3 }, pos: { lba: 3, file: 1, block: 0 } }]],
  },
  {
    name: 'space filemarks forward into end of data',
    setup: [['w', 5], ['fm', 1], ['w', 5], ['rewind']],
    steps: [
      [['space', 'filemarks', 3], { r: { ...BLANK, residue: 2 }, pos: { lba: 3, eod: true } }],
      [['space', 'filemarks', -1], { r: { ok: true }, pos: { lba: 1, file: 0 } }],
      [['space', 'eod', 0], { r: { ok: true }, pos: { lba: 3, eod: true, file: 1, block: 1 } }],
    ],
  },
  {
    name: 'read with a buffer shorter than the record',
    setup: [['w', 100, 7], ['w', 10], ['rewind']],
    steps: [
      [['read', 40], { r: { ok: false, ili: true, transferred: 40, residue: -60, data: rec(7, 100).subarray(0, 40) }, pos: { lba: 1 } }],
      [['read', 10], { r: { ok: true, transferred: 10, ili: false } }],
    ],
  },
  {
    name: 'write at early warning and past the end',
    spec: { mediaType: 'custom', capacity: 1000, earlyWarning: 200 },
    setup: [['w', 700]],
    steps: [
      [['w', 150], { r: { ok: true, earlyWarning: true, eom: true, transferred: 150, key: 'NO SENSE', asc: 0, ascq: 2 } }],
      [['fm', 1], { r: { ok: true, earlyWarning: true } }],
      [['w', 151], { r: { ok: false, eom: true, earlyWarning: false, transferred: 0, residue: 151, key: 'VOLUME OVERFLOW' }, pos: { lba: 3 } }],
      [['w', 150], { r: { ok: true, earlyWarning: true, transferred: 150 }, pos: { lba: 4 } }],
      [['w', 1], { r: { ok: false, key: 'VOLUME OVERFLOW' } }],
    ],
  },
  {
    name: 'fixed-block write past the end writes the blocks that fit',
    spec: { mediaType: 'custom', capacity: 1000, earlyWarning: 100 },
    setup: [['bs', 100], ['w', 800]],
    steps: [[['w', 400], { r: { ok: false, eom: true, transferred: 200, residue: 2, key: 'VOLUME OVERFLOW' }, pos: { lba: 10 } }]],
  },
  {
    name: 'locate past end of data',
    setup: [['w', 5], ['w', 5], ['fm', 1]],
    steps: [
      [['locate', 10], { r: { ...BLANK, residue: 0 }, pos: { lba: 3, eod: true } }],
      [['locate', 2], { r: { ok: true }, pos: { lba: 2, file: 0, block: 2 } }],
      [['read', 5], { r: { ok: true, filemark: true } }],
    ],
  },
  {
    name: 'WORM overwrite attempt',
    spec: { worm: true },
    setup: [['w', 5], ['fm', 1], ['w', 5], ['rewind']],
    steps: [
      [['w', 5], { r: { ok: false, key: 'DATA PROTECT', asc: 0x30, ascq: 0x0c, residue: 5 }, pos: { lba: 0 } }],
      [['fm', 1], { r: { ok: false, key: 'DATA PROTECT' } }],
      [['erase'], { r: { ok: false, key: 'DATA PROTECT', asc: 0x30, ascq: 0x0c } }],
      [['space', 'eod', 0], { pos: { lba: 3 } }],
      [['w', 5], { r: { ok: true }, pos: { lba: 4 } }],
    ],
  },
  {
    name: 'WORM erase allowed once retention expired',
    spec: { worm: true, retentionUntil: '2001-01-01T00:00:00Z' },
    setup: [['w', 5], ['rewind']],
    steps: [[['erase'], { r: { ok: true }, pos: { lba: 0, eod: true } }]],
  },
  {
    name: 'write protect refuses every write',
    spec: { writeProtected: true },
    setup: [],
    steps: [
      [['w', 5], { r: { ok: false, key: 'DATA PROTECT', asc: 0x27, ascq: 0 } }],
      [['fm', 1], { r: { ok: false, key: 'DATA PROTECT', asc: 0x27 } }],
      [['erase'], { r: { ok: false, key: 'DATA PROTECT', asc: 0x27 } }],
      [['fm', 0], { r: { ok: true } }],
      [['read', 5], { r: BLANK }],
    ],
  },
  {
    name: 'overwrite in the middle truncates',
    setup: [['w', 5, 1], ['w', 5, 2], ['w', 5, 3], ['fm', 1], ['w', 5, 4], ['locate', 1]],
    steps: [
      [['w', 7, 9], { r: { ok: true }, pos: { lba: 2, eod: true, file: 0, block: 2 } }],
      [['rewind'], {}],
      [['read', 5], { r: { data: rec(1, 5) } }],
      [['read', 7], { r: { ok: true, data: rec(9, 7) } }],
      [['read', 7], { r: BLANK }],
    ],
  },
  {
    name: 'erase from the middle',
    setup: [['w', 5], ['fm', 1], ['w', 5], ['w', 5], ['locate', 2]],
    steps: [
      [['erase'], { r: { ok: true }, pos: { lba: 2, eod: true, file: 1 } }],
      [['locate', 3], { r: BLANK, pos: { lba: 2 } }],
    ],
  },
  {
    name: 'fixed-block mode',
    setup: [['bs', 64], ['w', 256], ['fm', 1], ['bs', 0], ['w', 10], ['bs', 64], ['rewind']],
    steps: [
      [['read', 128], { r: { ok: true, transferred: 128 }, pos: { lba: 2 } }],
      [['read', 320], { r: { ok: true, transferred: 128, filemark: true, residue: 3 }, pos: { lba: 5, file: 1 } }],
      [['read', 64], { r: { ok: false, ili: true, transferred: 0, residue: 1 }, pos: { lba: 6 } }],
      [['read', 64], { r: { ...BLANK, residue: 1 } }],
      [['read', 65], { r: { ok: false, key: 'ILLEGAL REQUEST' } }],
      [['w', 65], { r: { ok: false, key: 'ILLEGAL REQUEST' }, pos: { lba: 6 } }],
    ],
  },
  {
    name: 'read on a blank tape',
    setup: [],
    steps: [
      [['read', 10], { r: { ...BLANK, residue: 10 }, pos: { lba: 0, bop: true, eod: true } }],
      [['space', 'records', 1], { r: { ...BLANK, residue: 1 } }],
      [['space', 'records', -1], { r: { ok: false, bom: true, residue: 1 } }],
    ],
  },
];

let env: Env;
beforeAll(async () => {
  env = await openEnv();
});
afterAll(async () => {
  await env.destroy();
});

describe('medium edge cases', () => {
  test.each(cases)('$name', async (c) => {
    const m = await newMedium(env, c.spec);
    for (const s of c.setup) {
      const r = await run(m, s);
      expect(r.ok, `setup ${JSON.stringify(s)}: ${r.sense?.message}`).toBe(true);
    }
    for (const [i, [s, want]] of c.steps.entries()) {
      const got = await run(m, s);
      const where = `step ${i} ${JSON.stringify(s)}`;
      if (want.r) {
        const { key, asc, ascq, data, ...flags } = want.r;
        expect(got, where).toMatchObject(flags);
        if (key !== undefined) expect(got.sense?.key, where).toBe(key);
        if (asc !== undefined) expect(got.sense?.asc, where).toBe(asc);
        if (ascq !== undefined) expect(got.sense?.ascq, where).toBe(ascq);
        if (data !== undefined) expect(got.data?.equals(data), where).toBe(true);
      }
      if (want.pos) expect(await m.readPosition(), where).toMatchObject(want.pos);
    }
    await m.unload();
  });
});

describe('medium state', () => {
  test('operations on an unloaded medium report NOT READY', async () => {
    const m = await newMedium(env);
    await m.unload();
    for (const r of [await m.write(rec(1, 5)), await m.read(5), await m.rewind(), await m.space('records', 1), await m.locate(0)]) {
      expect(r).toMatchObject({ ok: false, sense: { key: 'NOT READY', asc: 0x3a } });
    }
  });

  test('a medium can be loaded by one holder at a time and keeps its data across loads', async () => {
    const m = await newMedium(env);
    await expect(env.tapes.mount(m.id)).rejects.toThrow(/already loaded/);
    await m.write(rec(1, 300));
    await m.writeFilemarks(1);
    await m.write(rec(2, 40));
    await m.unload();
    const again = await env.tapes.mount(m.id);
    expect(await again.readPosition()).toMatchObject({ lba: 0, bop: true });
    await again.space('eod');
    expect(await again.readPosition()).toMatchObject({ lba: 3, file: 1, block: 1, byte: 340 });
    const info = await env.tapes.info(m.id);
    expect(info).toMatchObject({ logicalBytes: 340, files: 2, filemarks: 1, objects: 3 });
    // Appending to the last file after a reload continues its checksum (rebuilt from the stream).
    expect((await again.write(rec(3, 60))).ok).toBe(true);
    expect(await again.verify()).toEqual({ files: 2, bytes: 400, bad: [] });
    await again.unload();
  });

  test('write protect set while loaded takes effect at once', async () => {
    const m = await newMedium(env);
    expect((await m.write(rec(1, 5))).ok).toBe(true);
    await env.tapes.setFlags(m.id, { writeProtected: true });
    expect((await m.write(rec(2, 5))).sense?.key).toBe('DATA PROTECT');
    await env.tapes.setFlags(m.id, { writeProtected: false });
    expect((await m.write(rec(2, 5))).ok).toBe(true);
    await m.unload();
  });

  test('bad arguments get ILLEGAL REQUEST and change nothing', async () => {
    const m = await newMedium(env);
    await m.write(rec(1, 5));
    expect((await m.write(Buffer.alloc(2 * 1024 * 1024 + 1))).sense?.key).toBe('ILLEGAL REQUEST');
    expect((await m.locate(-1)).sense?.key).toBe('ILLEGAL REQUEST');
    expect((await m.writeFilemarks(1.5)).sense?.key).toBe('ILLEGAL REQUEST');
    expect(m.setBlockSize(-3).sense?.key).toBe('ILLEGAL REQUEST');
    expect(await m.readPosition()).toMatchObject({ lba: 1, eod: true, byte: 5 });
    await m.unload();
  });
});

describe('per-file checksum', () => {
  test('a whole-file read verifies; corrupted bytes give MEDIUM ERROR at the filemark', async () => {
    const m = await newMedium(env);
    for (let i = 0; i < 4; i++) await m.write(rec(i, 1000));
    await m.writeFilemarks(1);
    await m.write(rec(9, 500));
    await m.rewind();
    for (let i = 0; i < 4; i++) expect((await m.read(1000)).ok).toBe(true);
    expect(await m.read(1000)).toMatchObject({ ok: true, filemark: true });
    expect(await m.read(1000)).toMatchObject({ ok: true, transferred: 500 });
    expect(await m.read(1000)).toMatchObject({ ok: false, eod: true, sense: { key: 'BLANK CHECK' } });

    // Flip one byte of the stored stream, under the tape layer.
    const sid = (await env.tapes.info(m.id)).streamId!;
    const seg = (await env.streams.segmentAt(sid, 1500))!;
    const bad = Buffer.from(seg.data);
    bad[1500 - seg.offset] ^= 0xff;
    await env.db.sublevel<string, Buffer>('mstream-seg', { valueEncoding: 'buffer' }).put(`${sid}!${seg.offset.toString(16).padStart(14, '0')}`, bad);

    await m.rewind();
    for (let i = 0; i < 4; i++) await m.read(1000);
    expect(await m.read(1000)).toMatchObject({ ok: false, filemark: true, sense: { key: 'MEDIUM ERROR', asc: 0x11 } });
    expect((await m.verify()).bad).toEqual([0]);
    // A partial read (not from the file's start) cannot verify and reports nothing.
    await m.locate(1);
    for (let i = 0; i < 3; i++) await m.read(1000);
    expect(await m.read(1000)).toMatchObject({ ok: true, filemark: true });
    await m.unload();
  });

  test('the last, unterminated file is verified at end of data', async () => {
    const m = await newMedium(env);
    await m.write(rec(1, 100));
    await m.writeFilemarks(1);
    await m.write(rec(2, 100));
    await m.rewind();
    const sid = (await env.tapes.info(m.id)).streamId!;
    const seg = (await env.streams.segmentAt(sid, 150))!;
    const bad = Buffer.from(seg.data);
    bad[150 - seg.offset] ^= 1;
    await env.db.sublevel<string, Buffer>('mstream-seg', { valueEncoding: 'buffer' }).put(`${sid}!${seg.offset.toString(16).padStart(14, '0')}`, bad);
    await m.space('filemarks', 1);
    expect((await m.read(100)).ok).toBe(true);
    expect(await m.read(100)).toMatchObject({ ok: false, eod: true, sense: { key: 'MEDIUM ERROR' } });
    await m.unload();
  });

  test('checksums stay right after overwriting mid-file and across reloads', async () => {
    const m = await newMedium(env);
    for (let i = 0; i < 5; i++) await m.write(rec(i, 333));
    await m.writeFilemarks(1);
    await m.locate(2);
    await m.write(rec(7, 10));
    await m.writeFilemarks(2);
    await m.write(rec(8, 20));
    expect(await m.verify()).toEqual({ files: 3, bytes: 333 * 2 + 10 + 20, bad: [] });
    const files = [];
    for await (const f of m.files()) files.push({ file: f.file, startLba: f.startLba, endLba: f.endLba, bytes: f.bytes, terminated: f.terminated });
    expect(files).toEqual([
      { file: 0, startLba: 0, endLba: 3, bytes: 676, terminated: true },
      { file: 1, startLba: 4, endLba: 4, bytes: 0, terminated: true },
      { file: 2, startLba: 5, endLba: 6, bytes: 20, terminated: false },
    ]);
    await m.unload();
  });
});
