/** AWSTAPE: the conformance suite, then the format's own malformed images and HET compression. */
import { deflateSync } from 'node:zlib';
import { describe, expect, test } from 'vitest';
import { CODECS, ImageFormatError } from '../../../src/protocols/images/index.js';
import { MAX_RECORD } from '../../../src/tape/index.js';
import { randomBytes } from '../../helpers/data.js';
import { imageConformance } from './conformance.js';
import { decode, describeTape, encode, objects } from './util.js';

const aws = CODECS.aws;
imageConformance(aws, { seed: 0xa35 });

/** One AWS block header. */
function h(cur: number, prev: number, flags: number, flags2 = 0): Buffer {
  const b = Buffer.alloc(6);
  b.writeUInt16LE(cur, 0);
  b.writeUInt16LE(prev, 2);
  b[4] = flags;
  b[5] = flags2;
  return b;
}

function rejects(image: Buffer, offset: number, reason: RegExp) {
  let err: unknown;
  try {
    decode(aws, image);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ImageFormatError);
  expect((err as ImageFormatError).offset).toBe(offset);
  expect((err as ImageFormatError).reason).toMatch(reason);
}

describe('aws malformed images', () => {
  const d10 = Buffer.alloc(10, 1);
  const rec10 = Buffer.concat([h(10, 0, 0xa0), d10]); // 16 bytes

  test.each([
    ['truncated header', Buffer.concat([rec10, h(0, 10, 0x40).subarray(0, 3)]), 16, /short of a 6-byte block header/],
    ['truncated data', Buffer.concat([rec10, h(100, 10, 0xa0), Buffer.alloc(50)]), 16, /announces 100 bytes, only 50 follow/],
    ['previous length disagrees', Buffer.concat([rec10, h(10, 9, 0xa0), d10]), 16, /previous-length field is 9, but the block before is 10 bytes/],
    ['first block with a previous length', Buffer.concat([h(10, 7, 0xa0), d10]), 0, /previous-length field is 7/],
    ['chunk sequence never ends a record', Buffer.concat([rec10, h(10, 10, 0x80), d10, h(10, 10, 0x00), d10]), 16, /never ends/],
    ['new record before the end of the last', Buffer.concat([h(10, 0, 0x80), d10, h(10, 10, 0x80), d10]), 16, /record at byte 0 never ended/],
    ['tapemark inside a record', Buffer.concat([h(10, 0, 0x80), d10, h(0, 10, 0x40)]), 16, /tapemark inside the record/],
    ['continuation without a start', Buffer.concat([h(10, 0, 0x20), d10]), 0, /no record was started/],
    ['empty data chunk', Buffer.concat([h(0, 0, 0xa0)]), 0, /empty data chunk/],
    ['tapemark with data', Buffer.concat([h(4, 0, 0x40), Buffer.alloc(4)]), 0, /tapemark header must have flags 0x40 and length 0/],
    ['unknown flag bits', Buffer.concat([h(10, 0, 0xa4), d10]), 0, /unknown flag bits/],
    ['flags2 set', Buffer.concat([h(10, 0, 0xa0, 0x80), d10]), 0, /unsupported flags2/],
    ['bzip2 compression', Buffer.concat([h(10, 0, 0xa2), d10]), 0, /compression method 2 is not supported/],
    ['zlib data that does not inflate', Buffer.concat([h(10, 0, 0xa1), d10]), 0, /does not inflate/],
  ])('%s', (_name, image, offset, reason) => rejects(image, offset, reason));

  test('a record over 2 MiB is rejected at the record start', () => {
    const parts = [h(10, 0, 0xa0), d10];
    let prev = 10;
    const n = Math.ceil((MAX_RECORD + 1) / 65535);
    for (let i = 0; i < n; i++) {
      parts.push(h(65535, prev, i === 0 ? 0x80 : i === n - 1 ? 0x20 : 0), Buffer.alloc(65535));
      prev = 65535;
    }
    rejects(Buffer.concat(parts), 16, /record over 2097152 bytes/);
  });

  test('other chunk sizes (as other writers use) decode to the same records', () => {
    const tape = [{ kind: 'record' as const, data: randomBytes(200_000, 9) }, { kind: 'tapemark' as const }, { kind: 'record' as const, data: randomBytes(4096, 2) }];
    const small = encode(aws, tape, { chunkSize: 4096 });
    expect(describeTape(objects(decode(aws, small)))).toEqual(describeTape(tape));
    expect(encode(aws, tape).length).toBeLessThan(small.length); // canonical export uses 65535-byte chunks
  });

  test('HET zlib-compressed records are inflated, also across chunks', () => {
    const data = Buffer.concat([Buffer.alloc(300_000, 0x40), randomBytes(1000, 4)]);
    const z = deflateSync(data);
    const a = z.subarray(0, 100);
    const b = z.subarray(100);
    const image = Buffer.concat([h(a.length, 0, 0x81), a, h(b.length, a.length, 0x21), b, h(0, b.length, 0x40)]);
    const events = decode(aws, image);
    expect(describeTape(objects(events))).toEqual(describeTape([{ kind: 'record', data }, { kind: 'tapemark' }]));
    const bomb = deflateSync(Buffer.alloc(MAX_RECORD + 1));
    rejects(Buffer.concat([h(bomb.length, 0, 0xa1), bomb]), 0, /inflates to over 2097152 bytes/);
  });
});
