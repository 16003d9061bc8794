/**
 * Fuzzing: mutated valid images (bit flips, byte and word overwrites with edge values,
 * truncation, insertion, deletion, duplication, garbage) must either decode to a consistent
 * tape or be rejected with an `ImageFormatError` at an offset inside the image; nothing else
 * (no other exception, no hang). 50,000 cases per codec run against the decoder alone; a smaller
 * number go through a real cartridge, which must then hold exactly the decoded tape after its
 * old data, or be exactly as it was.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CODECS, ImageFormatError, importCartridgeImage, type ImageCodec, type TapeEvent } from '../../../src/protocols/images/index.js';
import { MAX_RECORD } from '../../../src/tape/index.js';
import { randomBytes } from '../../helpers/data.js';
import { chunks, collect, decode, describeTape, encode, int, objects, openStore, rng, source, type Obj, type StoreEnv } from './util.js';
import { exportCartridgeImage } from '../../../src/protocols/images/index.js';

const CASES = 50_000;
const CARTRIDGE_CASES = 150;
const RAW_BS = 64;

/** Small valid images: short records (some split into several aws chunks), runs of tapemarks. */
function seeds(codec: ImageCodec, r: () => number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < 24; i++) {
    const tape: Obj[] = [];
    const n = i === 0 ? 0 : int(r, 1, 10);
    for (let k = 0; k < n; k++) {
      if (codec.multiFile && r() < 0.3) tape.push({ kind: 'tapemark' });
      else tape.push({ kind: 'record', data: randomBytes(codec.keepsRecords ? int(r, 1, 300) : RAW_BS, int(r, 1, 1e9)) });
    }
    if (!codec.multiFile && n > 0) tape.push({ kind: 'tapemark' });
    out.push(encode(codec, tape, { chunkSize: i % 3 === 0 ? int(r, 16, 128) : undefined, endOfMedium: i % 4 === 0 }));
  }
  return out;
}

const WORDS = [0, 1, 0xffff, 0xffffffff, 0xfffffffe, 0x80000000, MAX_RECORD, MAX_RECORD + 1, 0x7fffffff];

function mutate(img: Buffer, r: () => number): Buffer {
  const b = Buffer.from(img);
  const at = () => int(r, 0, Math.max(0, b.length - 1));
  switch (int(r, 0, 8)) {
    case 0: {
      if (b.length === 0) return Buffer.from([int(r, 0, 255)]);
      for (let k = int(r, 1, 3); k > 0; k--) b[at()] ^= 1 << int(r, 0, 7);
      return b;
    }
    case 1:
      if (b.length > 0) b[at()] = [0, 0xff, 0x80, 0x40, 0x20, 0xa0, int(r, 0, 255)][int(r, 0, 6)];
      return b;
    case 2: {
      if (b.length < 4) return b;
      const p = int(r, 0, b.length - 4);
      const v = WORDS[int(r, 0, WORDS.length - 1)];
      if (r() < 0.5) b.writeUInt32LE(v >>> 0, p);
      else b.writeUInt16LE(v & 0xffff, p);
      return b;
    }
    case 3: {
      // A length field off by a little: the classic corruption.
      if (b.length < 2) return b;
      const p = int(r, 0, b.length - 2);
      b.writeUInt16LE((b.readUInt16LE(p) + int(r, -2, 2)) & 0xffff, p);
      return b;
    }
    case 4:
      return b.subarray(0, int(r, 0, b.length));
    case 5: {
      const p = int(r, 0, b.length);
      return Buffer.concat([b.subarray(0, p), randomBytes(int(r, 1, 8), int(r, 1, 1e9)), b.subarray(p)]);
    }
    case 6: {
      const p = int(r, 0, b.length);
      return Buffer.concat([b.subarray(0, p), b.subarray(Math.min(b.length, p + int(r, 1, 16)))]);
    }
    case 7: {
      const p = int(r, 0, b.length);
      const q = int(r, p, Math.min(b.length, p + 64));
      return Buffer.concat([b.subarray(0, q), b.subarray(p, q), b.subarray(q)]);
    }
    default:
      return Buffer.concat([b, randomBytes(int(r, 1, 12), int(r, 1, 1e9))]);
  }
}

/** Checks one outcome; returns whether the image was accepted. Throws on any contract breach. */
function check(codec: ImageCodec, img: Buffer, run: () => TapeEvent[]): boolean {
  let ev: TapeEvent[];
  try {
    ev = run();
  } catch (err) {
    if (!(err instanceof ImageFormatError)) throw new Error(`not an ImageFormatError for image ${img.toString('hex').slice(0, 200)}: ${(err as Error).stack}`);
    if (!(err.offset >= 0 && err.offset <= img.length)) throw new Error(`offset ${err.offset} outside an image of ${img.length} bytes`);
    return false;
  }
  const end = ev.at(-1);
  if (end?.kind !== 'end' || end.offset > img.length) throw new Error(`no proper end event: ${JSON.stringify(end)}`);
  let last = -1;
  for (const e of ev.slice(0, -1)) {
    if (e.kind === 'end') throw new Error('end before the last event');
    if (e.offset <= last || e.offset > img.length) throw new Error(`offset ${e.offset} out of order or range`);
    last = e.offset;
    if (e.kind === 'record' && (e.data.length < 1 || e.data.length > MAX_RECORD)) throw new Error(`record of ${e.data.length} bytes`);
  }
  // What decoded is a tape the codec can write and read back unchanged.
  const tape = objects(ev);
  if (codec.keepsRecords) expect(describeTape(objects(decode(codec, encode(codec, tape))))).toEqual(describeTape(tape));
  return true;
}

for (const codec of Object.values(CODECS)) {
  describe(`${codec.format} fuzz`, () => {
    const opts = { blockSize: RAW_BS };

    test(`${CASES} mutated images against the decoder`, () => {
      const r = rng(0xf22 + codec.format.length);
      const base = seeds(codec, r);
      let accepted = 0;
      for (let i = 0; i < CASES; i++) {
        let img = base[i % base.length];
        for (let k = int(r, 1, 3); k > 0; k--) img = mutate(img, r);
        const parts = i % 10 === 0 ? chunks(img, r) : [img];
        if (check(codec, img, () => decode(codec, parts, opts))) accepted++;
      }
      console.log(`${codec.format} fuzz: ${CASES} mutated images, ${accepted} decoded to a consistent tape, ${CASES - accepted} rejected cleanly`);
      // Both outcomes occur (raw accepts every byte string by definition).
      expect(accepted).toBeGreaterThan(0);
      if (codec.keepsRecords) expect(accepted).toBeLessThan(CASES * 0.8);
      else expect(accepted).toBe(CASES);
    });

    describe('through a cartridge', () => {
      let env: StoreEnv;
      beforeAll(async () => {
        env = await openStore();
      });
      afterAll(async () => {
        await env?.close();
      });

      test(`${CARTRIDGE_CASES} mutated images appended to a cartridge with data`, async () => {
        const r = rng(0xc47 + codec.format.length);
        const base = seeds(codec, r);
        const code = await env.cartridge();
        const first: Obj[] = [{ kind: 'record', data: randomBytes(RAW_BS, 1) }, { kind: 'tapemark' }];
        await importCartridgeImage(env, code, 'aws', source(encode(CODECS.aws, first)));
        const before = await env.snapshot(code);
        let accepted = 0;
        for (let i = 0; i < CARTRIDGE_CASES; i++) {
          let img = base[i % base.length];
          for (let k = int(r, 1, 3); k > 0; k--) img = mutate(img, r);
          let expected: Obj[] | null = null;
          try {
            expected = objects(decode(codec, img, opts));
          } catch {
            expected = null;
          }
          const got = await importCartridgeImage(env, code, codec.format, source(img, int(r, 1, 64)), { ...opts, append: true }).catch((e: unknown) => e);
          if (expected === null) {
            expect(got, `case ${i}`).toBeInstanceOf(ImageFormatError);
            expect(await env.snapshot(code), `case ${i}`).toEqual(before);
            continue;
          }
          accepted++;
          expect(got).toMatchObject({ startLba: 2, endLba: 2 + expected.length });
          const tape = objects(decode(CODECS.aws, await collect(await exportCartridgeImage(env, code, 'aws'))));
          expect(describeTape(tape)).toEqual(describeTape([...first, ...expected]));
          // Back to the old data for the next case.
          const m = await env.libraries.tapes.mount(code);
          await m.locate(2);
          await m.erase();
          await m.unload();
          expect(await env.snapshot(code)).toEqual(before);
        }
        console.log(`${codec.format} fuzz through a cartridge: ${CARTRIDGE_CASES} images, ${accepted} imported, ${CARTRIDGE_CASES - accepted} rejected with the cartridge unchanged`);
        expect(accepted).toBeGreaterThan(0);
        expect(await env.journal.pending()).toEqual([]);
      });
    });
  });
}
