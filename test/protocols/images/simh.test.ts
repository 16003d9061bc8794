/** SIMH .tap: the conformance suite, then the format's own malformed images and markers. */
import { describe, expect, test } from 'vitest';
import { CODECS, ImageFormatError, importCartridgeImage } from '../../../src/protocols/images/index.js';
import { MAX_RECORD } from '../../../src/tape/index.js';
import { randomBytes } from '../../helpers/data.js';
import { imageConformance } from './conformance.js';
import { collect, decode, describeTape, encode, objects, openStore, source } from './util.js';
import { exportCartridgeImage } from '../../../src/protocols/images/index.js';

const simh = CODECS.simh;
imageConformance(simh, { seed: 0x5104 });

const w = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0, 0);
  return b;
};
/** A record: leading word, data, pad, trailing word. */
const r = (data: Buffer, lead = data.length, trail = lead) => Buffer.concat([w(lead), data, data.length & 1 ? Buffer.alloc(1) : Buffer.alloc(0), w(trail)]);

function rejects(image: Buffer, offset: number, reason: RegExp) {
  let err: unknown;
  try {
    decode(simh, image);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ImageFormatError);
  expect((err as ImageFormatError).offset).toBe(offset);
  expect((err as ImageFormatError).reason).toMatch(reason);
}

describe('simh malformed images and markers', () => {
  const d5 = Buffer.from('hello');
  const rec5 = r(d5); // 4 + 5 + 1 + 4 = 14 bytes

  test.each([
    ['truncated length word', Buffer.concat([rec5, w(0).subarray(0, 2)]), 14, /short of a 4-byte length word/],
    ['truncated data', Buffer.concat([rec5, w(100), Buffer.alloc(50)]), 14, /image ends inside a record/],
    ['length words disagree', Buffer.concat([rec5, r(d5, 5, 6)]), 24, /trailing length word 0x00000006 differs from the leading word 0x00000005 at byte 14/],
    ['record over 2 MiB', Buffer.concat([w(MAX_RECORD + 2), Buffer.alloc(16)]), 0, /record of 2097154 bytes is over the 2097152-byte maximum/],
    ['bad-data record (error class 8)', Buffer.concat([rec5, r(d5, 0x80000005)]), 14, /flagged bad \(class 8\).*import with --accept-bad-records/],
    ['a bad-data word with a length over 2 MiB is told as too long', Buffer.concat([w(0x80000000 + MAX_RECORD + 2), Buffer.alloc(16)]), 0, /over the 2097152-byte maximum/],
    ['private record class', r(d5, 0x70000005), 0, /unsupported SIMH record class 7/],
    ['garbage after the end-of-medium marker', Buffer.concat([rec5, w(0), w(0xffffffff), Buffer.from('junk')]), 22, /after the end-of-medium marker at byte 18/],
  ])('%s', (_name, image, offset, reason) => rejects(image, offset, reason));

  test('erase gaps are skipped; the end-of-medium marker ends the tape', () => {
    const image = Buffer.concat([w(0xfffffffe), r(d5), w(0), w(0xffffffff)]);
    const ev = decode(simh, image);
    expect(ev).toEqual([
      { kind: 'record', data: d5, offset: 4 },
      { kind: 'tapemark', offset: 18 },
      { kind: 'end', offset: 22 },
    ]);
    const withEom = encode(simh, objects(ev), { endOfMedium: true });
    expect(withEom.equals(image.subarray(4))).toBe(true);
  });

  test('bad-data records are imported only when asked, and reported', async () => {
    const image = Buffer.concat([r(d5), r(Buffer.from('unreadable'), 0x8000000a), w(0)]);
    const ev = decode(simh, image, { acceptBadRecords: true });
    expect(ev[1]).toMatchObject({ kind: 'record', bad: true, offset: 14 });
    const env = await openStore();
    try {
      const code = await env.cartridge();
      await expect(importCartridgeImage(env, code, 'simh', source(image))).rejects.toThrow(/byte 14: record of 10 bytes flagged bad/);
      expect((await env.libraries.tapes.info(code)).objects).toBe(0);
      const sum = await importCartridgeImage(env, code, 'simh', source(image), { acceptBadRecords: true });
      expect(sum).toMatchObject({ records: 2, tapemarks: 1, badRecords: 1, badRecordOffsets: [14] });
      // Exported, the record is good data: the tape layer keeps no error flag.
      const out = await collect(await exportCartridgeImage(env, code, 'simh'));
      expect(describeTape(objects(decode(simh, out)))).toEqual(describeTape(objects(ev)));
    } finally {
      await env.close();
    }
  });

  test('odd lengths are padded to even', () => {
    const image = encode(simh, [{ kind: 'record', data: randomBytes(3, 1) }]);
    expect(image.length).toBe(12);
    expect(image.readUInt32LE(0)).toBe(3);
    expect(image.readUInt32LE(8)).toBe(3);
  });
});
