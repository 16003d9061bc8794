/**
 * Chunk fingerprints: the C batch (libxxhash) gives exactly what the per-chunk TypeScript path
 * (@node-rs/xxhash) gives, on random data and on real files, and refuses bad arguments.
 */
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect, test } from 'vitest';
import { createChunker, DEFAULT_CHUNK_PARAMS } from '../../src/dedup/chunker.js';
import { fingerprintBatch, fingerprintBytes, fingerprintKey, NATIVE_FINGERPRINTS_UNAVAILABLE } from '../../src/dedup/fingerprint.js';

const why = NATIVE_FINGERPRINTS_UNAVAILABLE;
const testNative = why ? test.skip : test;
const named = (name: string): string => (why ? `${name} (skipped: ${why}; Debian package libxxhash0)` : name);
const secret = randomBytes(192);

/** The per-chunk path, one hash call and bigint per chunk. */
function oneByOne(data: Uint8Array, cuts: Uint32Array): Buffer {
  const out = Buffer.alloc(cuts.length * 16);
  for (let i = 0, start = 0; i < cuts.length; start = cuts[i++]) fingerprintBytes(fingerprintKey(secret, data.subarray(start, cuts[i])), out, i * 16);
  return out;
}

testNative(named('the C batch equals one hash per chunk: random cuts of random data, empty and 1-byte chunks'), () => {
  const data = randomBytes(3 << 20);
  const cuts: number[] = [];
  for (let at = 0; at < data.length; ) {
    at = Math.min(data.length, at + [0, 1, 15, 16, 17, 128, 129, 240, 241, 4096, 65536, 300_000][cuts.length % 12]);
    cuts.push(at);
  }
  const c = Uint32Array.from(cuts);
  expect(fingerprintBatch(secret, data, c).equals(oneByOne(data, c))).toBe(true);
});

testNative(named('the C batch equals one hash per chunk on a real file, as the chunker cuts it'), () => {
  const file = readFileSync(process.execPath).subarray(0, 16 << 20);
  const cuts = createChunker(DEFAULT_CHUNK_PARAMS, Buffer.alloc(32, 7)).cutPoints(file, true);
  expect(cuts.length).toBeGreaterThan(100);
  expect(fingerprintBatch(secret, file, cuts).equals(oneByOne(file, cuts))).toBe(true);
});

testNative(named('the C batch refuses a short secret, cuts outside the data and a small output'), () => {
  const addon = createRequire(import.meta.url)(fileURLToPath(new URL('../../native/build/Release/vtl_checksum.node', import.meta.url))) as {
    fingerprints: (d: Uint8Array, c: Uint32Array, s: Uint8Array, o: Uint8Array) => void;
  };
  const data = randomBytes(1000);
  const out = Buffer.alloc(32);
  expect(() => addon.fingerprints(data, Uint32Array.of(500, 1000), randomBytes(135), out)).toThrow(/at least 136 bytes/);
  expect(() => addon.fingerprints(data, Uint32Array.of(500, 1001), secret, out)).toThrow(/within data/);
  expect(() => addon.fingerprints(data, Uint32Array.of(600, 500), secret, out)).toThrow(/must rise/);
  expect(() => addon.fingerprints(data, Uint32Array.of(500, 1000), secret, Buffer.alloc(31))).toThrow(/too small/);
  expect(() => addon.fingerprints(data, Uint32Array.of(500), secret, 'x' as unknown as Uint8Array)).toThrow(/expected/);
});

test('with the C batch turned off, the per-chunk path still answers (a child process)', async () => {
  const { execFileSync } = await import('node:child_process');
  const script = `
    const { fingerprintBatch, NATIVE_FINGERPRINTS_UNAVAILABLE } = await import(${JSON.stringify(new URL('../../src/dedup/fingerprint.ts', import.meta.url).href)});
    const secret = Buffer.alloc(192, 3);
    const out = fingerprintBatch(secret, Buffer.from('hello tape'), Uint32Array.of(5, 10));
    console.log(NATIVE_FINGERPRINTS_UNAVAILABLE, out.toString('hex'));`;
  const run = (env: NodeJS.ProcessEnv): string =>
    execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { env: { ...process.env, ...env }, encoding: 'utf8' }).trim();
  const off = run({ VTL_NATIVE_FINGERPRINTS: '0' });
  expect(off).toMatch(/^VTL_NATIVE_FINGERPRINTS=0 [0-9a-f]{64}$/);
  if (!why) expect(run({}).split(' ')[1]).toBe(off.split(' ')[1]);
});
