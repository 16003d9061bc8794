/** Deterministic test data with realistic dedup: random blocks, some of them repeated. */
import { mkdtemp, rm } from 'node:fs/promises';
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
