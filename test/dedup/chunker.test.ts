import { createCipheriv } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import {
  createChunker,
  DEFAULT_CHUNK_PARAMS,
  gearTable,
  nativeChunkerAvailable,
  validateChunkParams,
  type Chunker,
  type ChunkParams,
} from '../../src/dedup/chunker.js';
import { loadChunkerAddon } from '../../src/dedup/chunker-native.js';
import { TsChunker } from '../../src/dedup/chunker-ts.js';

const MiB = 1 << 20;
const SMALL: ChunkParams = { min: 64, avg: 256, max: 1024 };
const LARGE: ChunkParams = { min: 16384, avg: 65536, max: 262144 };
const PARAM_SETS: [string, ChunkParams][] = [
  ['default 2/8/64 KiB', DEFAULT_CHUNK_PARAMS],
  ['small 64/256/1024', SMALL],
  ['large 16/64/256 KiB', LARGE],
];

/** Deterministic pseudo-random bytes: AES-128-CTR keystream keyed by `seed`. */
function randomData(seed: number, length: number): Buffer {
  const key = Buffer.alloc(16);
  key.writeUInt32LE(seed);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(length));
}

function gearSeed(n: number): Buffer {
  return Buffer.alloc(32, n);
}

/**
 * The cut-point rule written as plainly as possible, independent of the implementations: roll
 * from each chunk start (no skipping), test every length from min on.
 */
function oracleCuts(p: ChunkParams, gear: Uint32Array, buf: Uint8Array, final: boolean): number[] {
  const bits = Math.log2(p.avg);
  const hard = (0xffffffff - (2 ** (32 - bits - 2) - 1)) >>> 0;
  const easy = (0xffffffff - (2 ** (32 - bits + 2) - 1)) >>> 0;
  const cuts: number[] = [];
  let start = 0;
  while (start < buf.length) {
    let h = 0;
    let cut = -1;
    for (let j = 1; j <= buf.length - start && j <= p.max; j++) {
      h = ((h << 1) + gear[buf[start + j - 1]]) >>> 0;
      if (j < p.min) continue;
      if (j === p.max || ((h & (j < p.avg ? hard : easy)) >>> 0) === 0) {
        cut = start + j;
        break;
      }
    }
    if (cut < 0) {
      if (!final) break;
      cut = buf.length;
    }
    cuts.push(cut);
    start = cut;
  }
  return cuts;
}

/** Feeds `data` in slices to cutPoints(tail + slice, false), carrying the tail; final call at the end. */
function cutsBySlices(chunker: Chunker, data: Buffer, nextSlice: () => number): number[] {
  const cuts: number[] = [];
  let tail = Buffer.alloc(0);
  let tailStart = 0;
  for (let pos = 0; pos < data.length; ) {
    const slice = data.subarray(pos, pos + nextSlice());
    pos += slice.length;
    const buf = Buffer.concat([tail, slice]);
    const points = chunker.cutPoints(buf, false);
    for (const p of points) cuts.push(tailStart + p);
    const consumed = points.length ? points[points.length - 1] : 0;
    tail = buf.subarray(consumed);
    tailStart += consumed;
  }
  for (const p of chunker.cutPoints(tail, true)) cuts.push(tailStart + p);
  return cuts;
}

/** A small deterministic PRNG for slice sizes. */
function sliceSizes(seed: number, maxSlice: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return 1 + ((s >>> 0) % maxSlice);
  };
}

/** A few MB of real files (binaries and libraries), in a stable order. */
function realFiles(limitBytes: number): { name: string; data: Buffer }[] {
  const files: { name: string; data: Buffer }[] = [];
  let total = 0;
  for (const dir of ['/usr/bin', '/usr/lib', '/usr/lib/x86_64-linux-gnu', '/usr/share/dict']) {
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch {
      continue;
    }
    let taken = 0;
    for (const name of names) {
      const path = join(dir, name);
      try {
        const st = statSync(path);
        if (!st.isFile() || st.size === 0 || st.size > 2 * MiB) continue;
        files.push({ name: path, data: readFileSync(path) });
      } catch {
        continue;
      }
      total += files[files.length - 1].data.length;
      if (++taken >= 40 || total >= limitBytes) break;
    }
    if (total >= limitBytes) break;
  }
  return files;
}

function toArray(cuts: Uint32Array): number[] {
  return Array.from(cuts);
}

const haveNative = nativeChunkerAvailable();
const nativeReason = 'error' in loadChunkerAddon() ? (loadChunkerAddon() as { error: string }).error : '';
const testNative = haveNative ? test : test.skip;
const nativeName = (name: string) => (haveNative ? name : `${name} (skipped: native addon not loaded: ${nativeReason})`);

describe('gear table', () => {
  test('is derived deterministically from the 32-byte seed', () => {
    const a = gearTable(gearSeed(1));
    expect(a).toHaveLength(256);
    expect(gearTable(gearSeed(1))).toEqual(a);
    expect(gearTable(gearSeed(2))).not.toEqual(a);
    expect(new Set(a).size).toBeGreaterThan(250);
  });

  test('rejects seeds that are not 32 bytes', () => {
    expect(() => gearTable(Buffer.alloc(31))).toThrow(/32 bytes/);
    expect(() => gearTable('x'.repeat(32) as unknown as Uint8Array)).toThrow(/32 bytes/);
    expect(() => createChunker(DEFAULT_CHUNK_PARAMS, Buffer.alloc(16))).toThrow(/32 bytes/);
  });
});

describe('TypeScript reference', () => {
  test.each(PARAM_SETS)('matches the plain spec oracle (%s)', (_name, params) => {
    const gear = gearTable(gearSeed(3));
    const ts = new TsChunker(params, gear);
    const sizes = [0, 1, params.min - 1, params.min, params.max, params.max + 1, 3 * MiB + 77];
    for (const [i, size] of sizes.entries()) {
      const data = randomData(100 + i, size);
      for (const final of [true, false]) {
        expect(toArray(ts.cutPoints(data, final))).toEqual(oracleCuts(params, gear, data, final));
      }
    }
    // Low-entropy input: runs of one byte value make the hash constant.
    const runs = Buffer.concat([Buffer.alloc(200_000, 0), randomData(7, 100_000), Buffer.alloc(150_000, 0xff)]);
    expect(toArray(ts.cutPoints(runs, true))).toEqual(oracleCuts(params, gear, runs, true));
  });
});

describe('native chunker', () => {
  testNative(nativeName('is chosen by createChunker when it loads'), () => {
    expect(createChunker(DEFAULT_CHUNK_PARAMS, gearSeed(1)).native).toBe(true);
    expect(createChunker(DEFAULT_CHUNK_PARAMS, gearSeed(1), { native: false }).native).toBe(false);
  });

  for (const [name, params] of PARAM_SETS) {
    testNative(nativeName(`matches the TypeScript reference on random data (${name})`), () => {
      const sizes = [0, 1, params.min - 1, params.min, params.max - 1, params.max, params.max + 1, 3 * params.max + 17, 5 * MiB + 3];
      for (const seed of [1, 2, 3]) {
        const native = createChunker(params, gearSeed(seed), { native: true });
        const ts = createChunker(params, gearSeed(seed), { native: false });
        for (const [i, size] of sizes.entries()) {
          const data = randomData(seed * 1000 + i, size);
          for (const final of [true, false]) {
            expect(toArray(native.cutPoints(data, final)), `seed ${seed} size ${size} final ${final}`).toEqual(
              toArray(ts.cutPoints(data, final)),
            );
          }
        }
      }
    });
  }

  testNative(nativeName('matches the TypeScript reference on 64 MiB of random data'), () => {
    const data = randomData(42, 64 * MiB);
    const native = createChunker(DEFAULT_CHUNK_PARAMS, gearSeed(9), { native: true });
    const ts = createChunker(DEFAULT_CHUNK_PARAMS, gearSeed(9), { native: false });
    const cuts = native.cutPoints(data, true);
    expect(cuts.length).toBeGreaterThan(5000);
    expect(toArray(cuts)).toEqual(toArray(ts.cutPoints(data, true)));
    // Views at an odd offset inside a larger buffer work the same.
    const view = data.subarray(12345, 12345 + 3 * MiB);
    expect(toArray(native.cutPoints(view, false))).toEqual(toArray(ts.cutPoints(view, false)));
  });

  const files = realFiles(6 * MiB);
  const realTest = haveNative && files.length > 0 ? test : test.skip;
  realTest(
    haveNative ? `matches the TypeScript reference on real files (${files.length} files)` : nativeName('real files'),
    () => {
      const whole = Buffer.concat(files.map((f) => f.data));
      for (const params of [DEFAULT_CHUNK_PARAMS, SMALL]) {
        const native = createChunker(params, gearSeed(5), { native: true });
        const ts = createChunker(params, gearSeed(5), { native: false });
        for (const f of files) {
          expect(toArray(native.cutPoints(f.data, true)), f.name).toEqual(toArray(ts.cutPoints(f.data, true)));
        }
        expect(toArray(native.cutPoints(whole, true))).toEqual(toArray(ts.cutPoints(whole, true)));
      }
    },
  );

  testNative(nativeName('addon rejects bad arguments itself'), () => {
    const loaded = loadChunkerAddon();
    if (!('addon' in loaded)) throw new Error(loaded.error);
    const gear = gearTable(gearSeed(1));
    expect(() => new loaded.addon.Chunker(gear, 2048, 8000, 65536)).toThrow(/power of two/);
    expect(() => new loaded.addon.Chunker(gear, 32, 8192, 65536)).toThrow(/at least 64/);
    expect(() => new loaded.addon.Chunker(new Uint32Array(255), 2048, 8192, 65536)).toThrow(/256/);
    expect(() => new loaded.addon.Chunker(gear, 2048.5, 8192, 65536)).toThrow(/integers/);
    const c = new loaded.addon.Chunker(gear, 2048, 8192, 65536);
    expect(() => c.cutPoints(new Uint16Array(4) as unknown as Uint8Array, true)).toThrow(/Uint8Array/);
    expect(() => c.cutPoints(new Uint8Array(4), 1 as unknown as boolean)).toThrow(/final/);
  });
});

const IMPLS: [string, boolean][] = [
  ['TypeScript', false],
  ['native', true],
];

describe.each(IMPLS)('carry-over (%s)', (implName, native) => {
  const t = native && !haveNative ? test.skip : test;
  const label = (name: string) => (native ? nativeName(name) : name);
  const data = Buffer.concat([randomData(11, 3 * MiB), Buffer.alloc(300_000, 0), randomData(12, MiB)]);
  const make = (params: ChunkParams) => createChunker(params, gearSeed(4), { native });

  t(label('slices of 512 B, 10 KiB, 1 MiB and random sizes give the one-call chunks'), () => {
    for (const params of [DEFAULT_CHUNK_PARAMS, SMALL]) {
      const chunker = make(params);
      const whole = toArray(chunker.cutPoints(data, true));
      for (const size of [512, 10240, MiB]) {
        expect(cutsBySlices(chunker, data, () => size), `${implName} slices of ${size}`).toEqual(whole);
      }
      expect(cutsBySlices(chunker, data, sliceSizes(99, 100_000))).toEqual(whole);
    }
  });

  t(label('1-byte slices give the one-call chunks'), () => {
    const small = data.subarray(0, 300 * 1024);
    const chunker = make(SMALL); // small max keeps the rescanned tail short
    expect(cutsBySlices(chunker, small, () => 1)).toEqual(toArray(chunker.cutPoints(small, true)));
  });

  t(label('non-final cut points are the certain prefix of the final ones'), () => {
    const chunker = make(DEFAULT_CHUNK_PARAMS);
    for (const size of [0, 100, 2048, 70_000, MiB + 5]) {
      const buf = data.subarray(0, size);
      const partial = toArray(chunker.cutPoints(buf, false));
      const full = toArray(chunker.cutPoints(buf, true));
      expect(full.slice(0, partial.length)).toEqual(partial);
      const last = partial.length ? partial[partial.length - 1] : 0;
      expect(buf.length - last).toBeLessThan(DEFAULT_CHUNK_PARAMS.max);
      if (size > 0) expect(full[full.length - 1]).toBe(size);
    }
  });
});

describe.each(IMPLS)('chunk sizes (%s)', (_implName, native) => {
  const t = native && !haveNative ? test.skip : test;
  const label = (name: string) => (native ? nativeName(name) : name);

  t.each(PARAM_SETS)(label('stay within min..max with a mean near avg (%s)'), (_name, params) => {
    const data = randomData(21, Math.max(16 * MiB, 400 * params.avg));
    const cuts = toArray(createChunker(params, gearSeed(6), { native }).cutPoints(data, true));
    const sizes = cuts.map((c, i) => c - (i ? cuts[i - 1] : 0));
    for (const s of sizes.slice(0, -1)) {
      expect(s).toBeGreaterThanOrEqual(params.min);
      expect(s).toBeLessThanOrEqual(params.max);
    }
    const mean = data.length / sizes.length;
    expect(Math.abs(mean - params.avg) / params.avg).toBeLessThan(0.25);
  });

  t(label('different gear seeds give different cut points'), () => {
    const data = randomData(22, 4 * MiB);
    const a = createChunker(DEFAULT_CHUNK_PARAMS, gearSeed(1), { native }).cutPoints(data, true);
    const b = createChunker(DEFAULT_CHUNK_PARAMS, gearSeed(2), { native }).cutPoints(data, true);
    const shared = new Set(a);
    const common = toArray(b).filter((c) => shared.has(c)).length;
    expect(common).toBeLessThan(b.length / 10); // only the final end and chance coincidences
  });
});

describe('parameters', () => {
  const bad: [string, unknown][] = [
    ['min below 64', { min: 32, avg: 8192, max: 65536 }],
    ['avg not a power of two', { min: 2048, avg: 8000, max: 65536 }],
    ['min not below avg', { min: 8192, avg: 8192, max: 65536 }],
    ['avg not below max', { min: 2048, avg: 65536, max: 65536 }],
    ['max above 4 MiB', { min: 262144, avg: 1048576, max: 8 * MiB }],
    ['avg above 1 MiB', { min: 262144, avg: 2 * MiB, max: 4 * MiB }],
    ['avg below 256', { min: 64, avg: 128, max: 1024 }],
    ['non-integer', { min: 2048.5, avg: 8192, max: 65536 }],
    ['NaN', { min: Number.NaN, avg: 8192, max: 65536 }],
    ['missing field', { min: 2048, avg: 8192 }],
    ['not an object', null],
  ];

  test.each(bad)('rejects %s', (_name, params) => {
    const p = params as ChunkParams;
    expect(() => validateChunkParams(p)).toThrow(/invalid chunk params/);
    expect(() => createChunker(p, gearSeed(1))).toThrow(/invalid chunk params/);
    expect(() => createChunker(p, gearSeed(1), { native: false })).toThrow(/invalid chunk params/);
  });

  test('accepts the extremes of the ranges', () => {
    expect(() => validateChunkParams({ min: 64, avg: 256, max: 257 })).not.toThrow();
    expect(() => validateChunkParams({ min: 1024 * 1024 - 1, avg: 1024 * 1024, max: 4 * MiB })).not.toThrow();
  });

  test('cutPoints rejects input that is not a Uint8Array', () => {
    for (const native of haveNative ? [false, true] : [false]) {
      const c = createChunker(DEFAULT_CHUNK_PARAMS, gearSeed(1), { native });
      expect(() => c.cutPoints('abc' as unknown as Uint8Array, true)).toThrow(TypeError);
    }
  });
});
