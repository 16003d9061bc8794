/**
 * The one conformance suite every image codec passes (aws.test.ts, simh.test.ts, raw.test.ts
 * run it). It checks the guarantees of `ImageCodec` (src/protocols/images/index.ts) on
 * generated tapes (record sizes 1 B to 2 MiB, 0 to 5 consecutive tapemarks, empty tapes), and
 * the import/export guarantees through real cartridges on a real data store.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ImageFormatError, ImageRequestError, exportCartridgeImage, importCartridgeImage, type DecodeOptions, type ImageCodec } from '../../../src/protocols/images/index.js';
import { MAX_RECORD } from '../../../src/tape/index.js';
import { randomBytes } from '../../helpers/data.js';
import { chunks, collect, decode, describeTape, encode, genTape, int, objects, openStore, rng, source, type Obj, type StoreEnv } from './util.js';

export interface ConformanceOptions {
  decode?: DecodeOptions;
  seed: number;
  /** Generated tapes checked codec-only, and through a cartridge. */
  tapes?: number;
  cartridgeTapes?: number;
}

export function imageConformance(codec: ImageCodec, o: ConformanceOptions): void {
  const fmt = codec.format;
  const bs = o.decode?.blockSize;
  const strict = codec.keepsRecords; // raw accepts any bytes: every byte string is a raw image

  describe(`${fmt} codec conformance`, () => {
    test('an empty tape is an empty image and back', () => {
      const image = encode(codec, []);
      expect(image.length).toBe(0);
      expect(decode(codec, image, o.decode)).toEqual([{ kind: 'end', offset: 0 }]);
    });

    test('generated tapes: decode(encode(t)) = t and encode(decode(i)) = i, for any input chunking', () => {
      const r = rng(o.seed);
      const n = o.tapes ?? 100;
      let records = 0;
      let bytes = 0;
      // The edges every run covers, then random tapes.
      const fixed: Obj[] = [1, MAX_RECORD, 65535, 65536, 3].map((len, k) => ({ kind: 'record', data: randomBytes(len, k + 1) }));
      fixed.splice(2, 0, ...Array.from({ length: 5 }, (): Obj => ({ kind: 'tapemark' })));
      for (let i = 0; i < n; i++) {
        const tape = i === 0 && codec.multiFile ? fixed : genTape(r, codec, { blockSize: bs });
        const image = encode(codec, tape);
        const events = decode(codec, chunks(image, r), o.decode);
        expect(describeTape(objects(events)), `tape ${i}`).toEqual(describeTape(tape));
        expect(events.at(-1)).toEqual({ kind: 'end', offset: image.length });
        // Offsets rise strictly and stay inside the image.
        const offs = events.map((e) => e.offset);
        for (let k = 1; k < offs.length - 1; k++) expect(offs[k]).toBeGreaterThan(offs[k - 1]);
        expect(encode(codec, objects(events)).equals(image), `re-encoding tape ${i}`).toBe(true);
        records += tape.filter((x) => x.kind === 'record').length;
        bytes += image.length;
      }
      expect(records).toBeGreaterThan(n);
      expect(bytes).toBeGreaterThan(n * 1000);
    });

    test('records at the 2 MiB maximum pass; the encoder refuses larger and empty records', () => {
      const tape: Obj[] = [{ kind: 'record', data: randomBytes(MAX_RECORD, 7) }, { kind: 'tapemark' }];
      const opts = codec.keepsRecords ? o.decode : { ...o.decode, blockSize: MAX_RECORD };
      expect(describeTape(objects(decode(codec, encode(codec, tape), opts)))).toEqual(describeTape(tape));
      if (codec.keepsRecords) {
        expect(() => codec.encoder().record(Buffer.alloc(MAX_RECORD + 1))).toThrow(RangeError);
        expect(() => codec.encoder().record(Buffer.alloc(0))).toThrow(RangeError);
      }
    });

    test('cut short anywhere: rejected with an offset inside the image, or a shorter valid tape', () => {
      const r = rng(o.seed + 1);
      let rejected = 0;
      for (let i = 0; i < 300; i++) {
        const tape = genTape(r, codec, { blockSize: bs, maxObjects: 6 });
        const image = encode(codec, tape);
        if (image.length === 0) continue;
        const cut = int(r, 0, image.length - 1);
        const part = image.subarray(0, cut);
        try {
          const got = describeTape(objects(decode(codec, chunks(part, r), o.decode)));
          if (strict) expect(describeTape(tape).slice(0, got.length)).toEqual(got);
        } catch (err) {
          expect(err).toBeInstanceOf(ImageFormatError);
          const e = err as ImageFormatError;
          expect(e.offset).toBeGreaterThanOrEqual(0);
          expect(e.offset).toBeLessThanOrEqual(cut);
          expect(e.message).toContain(`${fmt} image is malformed at byte ${e.offset}`);
          rejected++;
        }
      }
      if (strict) expect(rejected).toBeGreaterThan(200);
    });

    if (strict) test('trailing garbage is rejected at its offset', () => {
      const tape = genTape(rng(o.seed + 2), codec, { maxObjects: 5 });
      const image = encode(codec, tape);
      for (const garbage of ['x', 'trailing garbage\n', '\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0']) {
        const bad = Buffer.concat([image, Buffer.from(garbage)]);
        let err: unknown;
        try {
          decode(codec, bad);
        } catch (e) {
          err = e;
        }
        expect(err, `garbage ${JSON.stringify(garbage)}`).toBeInstanceOf(ImageFormatError);
        expect((err as ImageFormatError).offset).toBeGreaterThanOrEqual(image.length - 6);
      }
    });

    else test('raw has no structure: trailing bytes are data of the last record', () => {
      const image = encode(codec, genTape(rng(o.seed + 2), codec, { blockSize: bs }));
      const more = Buffer.concat([image, Buffer.from('trailing garbage\n')]);
      const data = objects(decode(codec, more, o.decode)).map((x) => (x.kind === 'record' ? x.data : Buffer.alloc(0)));
      expect(Buffer.concat(data).equals(more)).toBe(true);
    });

    describe('through a cartridge (real data store)', () => {
      let env: StoreEnv;
      beforeAll(async () => {
        env = await openStore();
      });
      afterAll(async () => {
        await env?.close();
      });

      test('import then export in the same format gives identical bytes', async () => {
        const r = rng(o.seed + 3);
        const n = o.cartridgeTapes ?? 8;
        for (let i = 0; i < n; i++) {
          const tape = i === 0 ? [] : genTape(r, codec, { blockSize: bs, maxObjects: 8 });
          const image = encode(codec, tape);
          const code = await env.cartridge();
          const sum = await importCartridgeImage(env, code, fmt, source(image, int(r, 1, 200_000)), o.decode);
          expect(sum).toMatchObject({
            bytes: image.length,
            records: tape.filter((x) => x.kind === 'record').length,
            tapemarks: tape.filter((x) => x.kind === 'tapemark').length,
            startLba: 0,
            endLba: tape.length,
          });
          const info = await env.libraries.tapes.info(code);
          expect(info.objects).toBe(tape.length);
          expect(info.filemarks).toBe(tape.filter((x) => x.kind === 'tapemark').length);
          const out = await collect(await exportCartridgeImage(env, code, fmt));
          expect(out.equals(image), `tape ${i}: ${describeTape(tape).join(' ')}`).toBe(true);
        }
        expect(await env.journal.pending()).toEqual([]);
      });

      test('a malformed image leaves the cartridge exactly as it was', async () => {
        const r = rng(o.seed + 4);
        const code = await env.cartridge();
        const first = genTape(r, codec, { blockSize: bs, maxObjects: 5 });
        await importCartridgeImage(env, code, fmt, source(encode(codec, first)), o.decode);
        const before = await env.snapshot(code);
        const good = encode(codec, genTape(r, codec, { blockSize: bs, maxObjects: 8 }).concat(codec.multiFile ? [{ kind: 'tapemark' }] : []));
        const bad = strict ? Buffer.concat([good, Buffer.from('trailing garbage\n')]) : good;
        const p = importCartridgeImage(env, code, fmt, source(bad, 10_000), { ...o.decode, append: true });
        if (strict) {
          await expect(p).rejects.toBeInstanceOf(ImageFormatError);
          expect(await env.snapshot(code)).toEqual(before);
        } else {
          await p; // raw: every byte string is valid; the append adds one tape file
          expect((await env.libraries.tapes.info(code)).files).toBeGreaterThanOrEqual(1);
        }
        expect(await env.journal.pending()).toEqual([]);
      });

      test('a source that fails midway leaves the cartridge exactly as it was', async () => {
        const r = rng(o.seed + 5);
        const code = await env.cartridge();
        await importCartridgeImage(env, code, fmt, source(encode(codec, genTape(r, codec, { blockSize: bs, maxObjects: 4 }))), o.decode);
        const before = await env.snapshot(code);
        const mid: Obj[] = codec.multiFile ? [{ kind: 'tapemark' }] : [];
        const image = encode(codec, [{ kind: 'record', data: randomBytes(50_000, 1) }, ...mid, { kind: 'record', data: randomBytes(50_000, 2) }]);
        async function* failing() {
          yield image.subarray(0, 60_000);
          yield image.subarray(60_000, image.length - 10);
          throw new Error('connection reset by peer');
        }
        await expect(importCartridgeImage(env, code, fmt, failing(), { ...o.decode, append: true })).rejects.toThrow('connection reset by peer');
        expect(await env.snapshot(code)).toEqual(before);
      });

      test('refusals change nothing: not blank without append, write protected, WORM, too small', async () => {
        const r = rng(o.seed + 6);
        const image = encode(codec, [{ kind: 'record', data: randomBytes(3000, 3) }, { kind: 'tapemark' }]);
        const code = await env.cartridge();
        await importCartridgeImage(env, code, fmt, source(image), o.decode);
        const before = await env.snapshot(code);
        const refused = async (barcode: string, code: string, opts = {}) => {
          const err = await importCartridgeImage(env, barcode, fmt, source(image), { ...o.decode, ...opts }).catch((e: unknown) => e);
          expect(err).toBeInstanceOf(ImageRequestError);
          expect((err as ImageRequestError).code).toBe(code);
        };
        await refused(code, 'NOT_BLANK');
        expect(await env.snapshot(code)).toEqual(before);
        const wp = await env.cartridge({ writeProtected: true });
        await refused(wp, 'WRITE_PROTECTED');
        const worm = await env.cartridge({ worm: true });
        await refused(worm, 'WORM');
        const retained = await env.cartridge({ retentionUntil: new Date(Date.now() + 86_400_000).toISOString() });
        await refused(retained, 'WRITE_PROTECTED');
        // 2 records of 4000 bytes on a 6000-byte cartridge: the second overflows.
        const small = await env.cartridge({ capacity: 6000 });
        const big = encode(codec, codec.keepsRecords ? [{ kind: 'record', data: randomBytes(4000, int(r, 1, 99)) }, { kind: 'record', data: randomBytes(4000, 5) }] : [{ kind: 'record', data: randomBytes(8000, 5) }, { kind: 'tapemark' }]);
        const err = await importCartridgeImage(env, small, fmt, source(big), { ...o.decode, blockSize: codec.keepsRecords ? undefined : 4000 }).catch((e: unknown) => e);
        expect((err as ImageRequestError).code).toBe('NO_ROOM');
        expect((await env.libraries.tapes.info(small)).objects).toBe(0);
      });
    });
  });
}
