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
});
