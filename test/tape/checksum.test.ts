import { existsSync } from 'node:fs';
import { xxh3 } from '@node-rs/xxhash';
import { describe, expect, it } from 'vitest';
import { CHECKSUM_IMPLEMENTATIONS, EMPTY_CHECKSUM, FileChecksum, NATIVE_CHECKSUM_UNAVAILABLE } from '../../src/tape/checksum.js';
import { randomBytes } from '../helpers/data.js';

const hex = (b: Uint8Array) => xxh3.xxh128(b).toString(16).padStart(32, '0');

// One conformance suite for every implementation that loads here.
for (const [name, make] of Object.entries(CHECKSUM_IMPLEMENTATIONS)) {
  describe(`tape file checksum (${name})`, () => {
    it('is XXH3-128 of the bytes, however they are fed, and files do not disturb each other', () => {
      const data = randomBytes(3 * 1024 * 1024 + 17, 5);
      const a = new FileChecksum(make);
      const b = new FileChecksum(make);
      for (let at = 0; at < data.length; at += 65_536) {
        a.update(data.subarray(at, at + 65_536));
        b.update(data.subarray(0, 10)); // interleaved with another file
      }
      expect(a.digest()).toBe(hex(data));
      expect(a.bytes).toBe(data.length);
      const whole = new FileChecksum(make);
      whole.update(data);
      expect(whole.digest()).toBe(a.digest());
      expect(new FileChecksum(make).digest()).toBe(hex(Buffer.alloc(0)));
    });

    it('goes on after a digest, its own or another file\'s, in any order of files', () => {
      const data = randomBytes(1024 * 1024, 6);
      const a = new FileChecksum(make);
      const b = new FileChecksum(make);
      const mid = 300_001;
      a.update(data.subarray(0, mid));
      expect(a.digest()).toBe(hex(data.subarray(0, mid)));
      b.update(data.subarray(0, 7));
      expect(a.digest()).toBe(hex(data.subarray(0, mid)));
      a.update(data.subarray(mid));
      expect(b.digest()).toBe(hex(data.subarray(0, 7)));
      b.update(data.subarray(7));
      expect(a.digest()).toBe(hex(data));
      expect(b.digest()).toBe(hex(data));
    });

    it('takes odd lengths and offsets (1 byte to 300 KiB, views at any offset)', () => {
      const data = randomBytes(2 * 1024 * 1024, 7);
      const h = new FileChecksum(make);
      let at = 0;
      for (let n = 1; at < data.length; n = (n * 7 + 3) % 300_000 || 1) {
        h.update(data.subarray(at, at + n));
        at += n;
      }
      expect(h.digest()).toBe(hex(data));
      expect(EMPTY_CHECKSUM).toBe(hex(Buffer.alloc(0)));
    });
  });
}

const built = existsSync(new URL('../../native/build/Release/vtl_checksum.node', import.meta.url));
describe('native checksum', () => {
  it.skipIf(!built || process.env.VTL_NATIVE_CHECKSUM === '0')('is used where the addon is built (skipped where it is not, or with VTL_NATIVE_CHECKSUM=0)', () => {
    // Built but not loading (libxxhash0 missing, or a broken build) fails here with the reason.
    expect(NATIVE_CHECKSUM_UNAVAILABLE).toBeUndefined();
    expect(Object.keys(CHECKSUM_IMPLEMENTATIONS).sort()).toEqual(['native', 'wasm']);
  });
});
