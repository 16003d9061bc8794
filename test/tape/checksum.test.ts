import { xxh3 } from '@node-rs/xxhash';
import { describe, expect, it } from 'vitest';
import { FileChecksum } from '../../src/tape/checksum.js';
import { randomBytes } from '../helpers/data.js';

describe('tape file checksum', () => {
  it('is XXH3-128 of the bytes, however they are fed, and files do not disturb each other', () => {
    const data = randomBytes(3 * 1024 * 1024 + 17, 5);
    const a = new FileChecksum();
    const b = new FileChecksum();
    for (let at = 0; at < data.length; at += 65_536) {
      a.update(data.subarray(at, at + 65_536));
      b.update(data.subarray(0, 10)); // interleaved with another file
    }
    expect(a.digest()).toBe(xxh3.xxh128(data).toString(16).padStart(32, '0'));
    expect(a.bytes).toBe(data.length);
    const whole = new FileChecksum();
    whole.update(data);
    expect(whole.digest()).toBe(a.digest());
    expect(new FileChecksum().digest()).toBe(xxh3.xxh128(Buffer.alloc(0)).toString(16).padStart(32, '0'));
  });

  it('goes on after a digest, its own or another file\'s, in any order of files', () => {
    const data = randomBytes(1024 * 1024, 6);
    const hex = (b: Uint8Array) => xxh3.xxh128(b).toString(16).padStart(32, '0');
    const a = new FileChecksum();
    const b = new FileChecksum();
    const mid = 300_001;
    a.update(data.subarray(0, mid));
    expect(a.digest()).toBe(hex(data.subarray(0, mid))); // a owned the hasher
    b.update(data.subarray(0, 7));
    expect(a.digest()).toBe(hex(data.subarray(0, mid))); // b owns it now
    a.update(data.subarray(mid));
    expect(b.digest()).toBe(hex(data.subarray(0, 7)));
    b.update(data.subarray(7));
    expect(a.digest()).toBe(hex(data));
    expect(b.digest()).toBe(hex(data));
  });
});
