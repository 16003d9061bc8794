import { describe, expect, it } from 'vitest';
import type { ChunkRef, FooterEntry } from '../../src/dedup/container.js';
import { FingerprintTable, LocalityCache, REF_WORDS, fingerprintWords } from '../../src/dedup/fingerprint-index.js';
import { seededRng } from '../helpers/data.js';

/** `n` fingerprints whose first words take only `homes` values: long probe runs that wrap. */
function crowdedFingerprints(n: number, homes: number, rng: () => number): Buffer {
  const fps = Buffer.alloc(n * 16);
  for (let i = 0; i < n; i++) {
    fps.writeInt32LE(Math.floor(rng() * homes) - 3, i * 16); // -3..: homes at the table's end too
    for (let b = 4; b < 16; b++) fps[i * 16 + b] = Math.floor(rng() * 256);
  }
  return fps;
}

function ref(rng: () => number): ChunkRef {
  const u32 = () => Math.floor(rng() * 2 ** 32);
  return { container: 1 + Math.floor(rng() * 5), offset: u32(), frameLength: u32(), rawLength: u32() };
}

describe('fingerprint table', () => {
  it('agrees with a Map through sets, replacements, deletions and growth', () => {
    const rng = seededRng(11).float;
    const n = 3000;
    const fps = crowdedFingerprints(n, 64, rng);
    const words = fingerprintWords(fps);
    const key = (i: number) => fps.toString('hex', i * 16, i * 16 + 16);
    const table = new FingerprintTable(16);
    const model = new Map<string, ChunkRef>();
    for (let step = 0; step < 40000; step++) {
      const i = Math.floor(rng() * n);
      if (rng() < 0.6) {
        const r = ref(rng);
        table.set(words, i, r);
        model.set(key(i), r);
      } else {
        const c = 1 + Math.floor(rng() * 5);
        const deleted = table.deleteIn(words, i, c);
        expect(deleted).toBe(model.get(key(i))?.container === c);
        if (deleted) model.delete(key(i));
      }
      if (step % 1000 === 0 || step === 39999) {
        expect(table.size).toBe(model.size);
        const out = new Uint32Array(REF_WORDS);
        for (let j = 0; j < n; j++) {
          const want = model.get(key(j));
          const slot = table.find(words, j);
          expect(slot >= 0).toBe(want !== undefined);
          if (!want) continue;
          expect(table.get(words, j)).toEqual(want);
          table.copyRef(slot, out, 0);
          expect([...out]).toEqual([want.container, want.offset, want.frameLength, want.rawLength]);
        }
      }
    }
  });

  it('reads fingerprints at any byte alignment', () => {
    const rng = seededRng(5).float;
    const fps = crowdedFingerprints(10, 1 << 20, rng);
    const odd = Buffer.alloc(fps.length + 1).subarray(1);
    fps.copy(odd);
    expect(odd.byteOffset % 4).not.toBe(0);
    const table = new FingerprintTable();
    const r = ref(rng);
    table.set(fingerprintWords(fps), 7, r);
    expect(table.get(fingerprintWords(odd), 7)).toEqual(r);
    expect(table.find(fingerprintWords(odd), 6)).toBe(-1);
  });
});

describe('locality cache', () => {
  const footer = (container: number, fps: Buffer, from: number, to: number): FooterEntry[] =>
    Array.from({ length: to - from }, (_, k) => ({ container, offset: 100 + k, frameLength: 10, rawLength: 20, fingerprint: fps.subarray((from + k) * 16, (from + k + 1) * 16) }));

  it('evicts the least recently used container and drops only what that container holds', () => {
    const fps = crowdedFingerprints(300, 1 << 30, seededRng(3).float);
    const words = fingerprintWords(fps);
    const cache = new LocalityCache(2);
    cache.addContainer(1, footer(1, fps, 0, 100));
    cache.addContainer(2, footer(2, fps, 100, 200));
    // Container 3 holds copies of chunks 50..99 too (a later copy replaces the reference).
    cache.touch(1);
    cache.addContainer(3, [...footer(3, fps, 200, 300), ...footer(3, fps, 50, 100)]);
    expect(cache.has(2)).toBe(false);
    expect(cache.table.find(words, 150)).toBe(-1);
    expect(cache.table.get(words, 10)?.container).toBe(1);
    expect(cache.table.get(words, 60)?.container).toBe(3);
    cache.drop(1);
    expect(cache.table.find(words, 10)).toBe(-1);
    expect(cache.table.get(words, 60)?.container).toBe(3);
    cache.drop(3);
    expect(cache.table.size).toBe(0);
  });
});
