/** Deterministic test data with realistic dedup: random blocks, some of them repeated. */
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** xorshift32 filled bytes: fast and reproducible from a seed. */
export function randomBytes(length: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = seed >>> 0 || 0x9e3779b9;
  let i = 0;
  for (; i + 4 <= length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.writeUInt32LE(x >>> 0, i);
  }
  for (; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** A seeded xorshift32 generator: random scripts reproducible from their seed. */
export function seededRng(seed: number) {
  let x = seed >>> 0 || 1;
  const float = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
  return {
    float,
    int: (n: number) => Math.floor(float() * n),
    pick: <T>(xs: readonly T[]): T => xs[Math.floor(float() * xs.length)],
  };
}

/**
 * A stream of `length` bytes made of 64 KiB blocks; about a third of the blocks repeat an
 * earlier block, and some are text-like (compressible).
 */
export function backupLikeBytes(length: number, seed: number): Buffer {
  const block = 65536;
  const out = Buffer.allocUnsafe(length);
  let rng = seed >>> 0 || 1;
  const next = () => {
    rng ^= rng << 13;
    rng ^= rng >>> 17;
    rng ^= rng << 5;
    return rng >>> 0;
  };
  for (let at = 0, n = 0; at < length; at += block, n++) {
    const len = Math.min(block, length - at);
    const r = next() % 3;
    let src: Buffer;
    if (r === 0 && n > 0) src = randomBytes(block, (seed * 131 + (next() % n)) >>> 0);
    else if (r === 1) src = Buffer.from('backup line '.repeat(6000).slice(0, block) + String(next()));
    else src = randomBytes(block, (seed * 131 + n) >>> 0);
    src.copy(out, at, 0, len);
  }
  return out;
}

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'vtl-test-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Flips one random bit of the byte at `at` of a file (damage for scrub and integrity tests). */
export async function flip(path: string, at: number): Promise<void> {
  const fh = await open(path, 'r+');
  const b = Buffer.alloc(1);
  await fh.read(b, 0, 1, at);
  b[0] ^= 1 << Math.floor(Math.random() * 8);
  await fh.write(b, 0, 1, at);
  await fh.close();
}
