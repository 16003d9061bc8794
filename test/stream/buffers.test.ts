import { describe, expect, it } from 'vitest';
import { copyBytes, lendView, recycleBuffer, takeBuffer } from '../../src/stream/buffers.js';

describe('read buffers', () => {
  it('hands a given-back buffer out again, once', () => {
    const a = takeBuffer(65_536);
    expect(a.length).toBe(65_536);
    recycleBuffer(a);
    recycleBuffer(a); // a second give-back of the same buffer is ignored
    const b = takeBuffer(60_000); // same size class
    const c = takeBuffer(60_000);
    expect(b.buffer).toBe(a.buffer);
    expect(c.buffer).not.toBe(a.buffer);
    expect(b.length).toBe(60_000);
  });

  it('takes back only whole buffers it made', () => {
    const own = takeBuffer(10_000);
    recycleBuffer(own.subarray(1)); // a view that does not start the buffer
    const foreign = Buffer.alloc(16_384); // the same size class, but not one of ours
    recycleBuffer(foreign);
    recycleBuffer(new Uint8Array(new SharedArrayBuffer(16_384)));
    const next = takeBuffer(10_000);
    expect(next.buffer).not.toBe(own.buffer);
    expect(next.buffer).not.toBe(foreign.buffer);
  });

  it('serves zero, small and oversized lengths without keeping them', () => {
    expect(takeBuffer(0).length).toBe(0);
    const small = takeBuffer(512);
    expect(small.length).toBe(512);
    recycleBuffer(small);
    const again = takeBuffer(512); // from Node's pool: never the same bytes handed out twice
    expect(again.buffer === small.buffer && again.byteOffset === small.byteOffset).toBe(false);
    const huge = takeBuffer(5 * 1024 * 1024);
    expect(huge.length).toBe(5 * 1024 * 1024);
    recycleBuffer(huge);
    expect(takeBuffer(5 * 1024 * 1024).buffer).not.toBe(huge.buffer);
  });

  it('gives a lent view back to its lender once, and never hands it out', () => {
    const memory = Buffer.alloc(2 * 65_536);
    let back = 0;
    const view = lendView(memory.subarray(0, 65_536), () => back++);
    recycleBuffer(view.subarray(0)); // another view of the same bytes is not the lent one
    expect(back).toBe(0);
    recycleBuffer(view);
    recycleBuffer(view);
    expect(back).toBe(1);
    expect(takeBuffer(65_536).buffer).not.toBe(memory.buffer);
  });

  it('copies to and from shared memory in and out of step, at every shift', () => {
    const plain = Buffer.allocUnsafe(210_000);
    const shared = Buffer.from(new SharedArrayBuffer(210_000));
    for (let i = 0; i < plain.length; i++) plain[i] = (i * 131 + (i >> 8)) & 0xff;
    shared.set(plain);
    for (const [source, target] of [[plain, Buffer.from(new SharedArrayBuffer(210_000))], [shared, Buffer.allocUnsafe(210_000)], [shared, Buffer.from(new SharedArrayBuffer(210_000))]]) {
      for (const length of [0, 7, 63, 64, 65_536, 65_537, 150_001]) {
        for (let from = 0; from < 8; from++) {
          for (const at of [0, 3, 8, 4101]) {
            target.fill(0xee);
            copyBytes(target, at, source.subarray(from, from + length));
            expect(target.subarray(at, at + length).equals(plain.subarray(from, from + length))).toBe(true);
            if (at > 0) expect(target[at - 1]).toBe(0xee);
            expect(target[at + length]).toBe(0xee);
          }
        }
      }
    }
  });
});
