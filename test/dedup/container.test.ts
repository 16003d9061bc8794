import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { appendFile, mkdtemp, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CONTAINER_TARGET_SIZE,
  ContainerReader,
  ContainerWriter,
  FRAME_OVERHEAD,
  HEADER_SIZE,
  IntegrityError,
  containerPath,
  frameCodecs,
  listContainers,
  recoverContainer,
  sealChunk,
  type ChunkRef,
  type FooterEntry,
  type FrameCodec,
} from '../../src/dedup/container.js';
import { CodecPool } from '../../src/dedup/codec-pool.js';
import { loadFramesAddon } from '../../src/dedup/frames-native.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vtl-container-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const fingerprint = (b: Uint8Array) => createHash('md5').update(b).digest();

/** Deterministic-enough test data: compressible, random, and tiny chunks. */
function makeChunk(i: number, size: number): Buffer {
  switch (i % 3) {
    case 0:
      return randomBytes(size);
    case 1: {
      const phrase = Buffer.from(`record ${i} of tape VT0001L7; `);
      const b = Buffer.alloc(size);
      for (let o = 0; o < size; o += phrase.length) phrase.copy(b, o);
      return b;
    }
    default: {
      const b = randomBytes(size);
      b.copy(b, size >> 1, 0, size >> 1); // half repeated: compresses to about 55%
      return b;
    }
  }
}

const randomSize = () => 1 + Math.floor(Math.random() ** 3 * 64 * 1024);

interface Written {
  id: number;
  key: Buffer;
  chunks: Buffer[];
  fps: Buffer[];
  refs: ChunkRef[];
}

let nextId = 1;
async function writeContainer(sizes: number[], opts: { seal?: boolean; inFlight?: number } = {}): Promise<Written & { footer?: FooterEntry[]; writer: ContainerWriter }> {
  const id = nextId++;
  const key = randomBytes(32);
  const writer = await ContainerWriter.create(dir, id, key);
  const chunks = sizes.map((s, i) => makeChunk(i, s));
  const fps = chunks.map(fingerprint);
  const refs: ChunkRef[] = [];
  const step = opts.inFlight ?? 16;
  for (let i = 0; i < chunks.length; i += step) {
    const first = writer.nextSeq();
    const part = chunks.slice(i, i + step);
    const frames = await Promise.all(part.map((c, j) => sealChunk(key, id, first + j, fps[i + j], c)));
    frames.forEach((f, j) => refs.push(writer.append(fps[i + j], f, part[j].length)));
  }
  const footer = opts.seal === false ? undefined : await writer.seal();
  return { id, key, chunks, fps, refs, footer, writer };
}

// First, while the process is fresh: RSS must not grow with the amount compressed.
describe('compression memory', () => {
  it('sealing 256 MiB of 8 KiB chunks keeps RSS growth well under that', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const key = randomBytes(32);
    const fp = randomBytes(16);
    const batch = 256;
    let sealed = 0;
    let stored = 0;
    const run = async (batches: number) => {
      for (let b = 0; b < batches; b++) {
        const chunks = Array.from({ length: batch }, (_, i) => makeChunk(2, 8192 + (i & 1)));
        const frames = await Promise.all(chunks.map((c, i) => sealChunk(key, 1, i, fp, c)));
        sealed += chunks.length * 8192;
        stored += frames.reduce((n, f) => n + f.length, 0);
        if (b % 8 === 7) gc();
      }
      gc();
    };
    await run(32); // warm up: threadpool arenas, JIT, buffer pools
    const base = process.memoryUsage().rss;
    sealed = stored = 0;
    await run(128);
    const growth = process.memoryUsage().rss - base;
    expect(sealed).toBe(256 * 1024 * 1024);
    expect(stored).toBeLessThan(sealed * 0.7); // lz4 really produced output worth leaking
    expect(growth).toBeLessThan(64 * 1024 * 1024);
    console.log(`compression memory: sealed 256 MiB, stored ${(stored / 2 ** 20).toFixed(0)} MiB, RSS growth ${(growth / 2 ** 20).toFixed(1)} MiB`);
  });
});

// The conformance suite of the frame codecs: every one that works here, and each against the
// others, since a store written with one must read with the other.
const codecs = frameCodecs();
const seal = (c: FrameCodec, key: Buffer, id: number, seq: number, fp: Buffer, raw: Uint8Array) => c.seal(key, id, seq, fp, raw);
const here = { file: 'in memory', offset: 0 };

describe.each(codecs.map((c) => [c.name, c] as const))('frame codec %s', (_name, codec) => {
  const openChunk = (key: Buffer, id: number, fp: Buffer, frame: Buffer, where = here) => codec.open(key, id, fp, frame, where);
  const sealChunk = (key: Buffer, id: number, seq: number, fp: Buffer, raw: Uint8Array) => seal(codec, key, id, seq, fp, raw);
  it('stores compressible chunks as lz4 and incompressible ones raw', async () => {
    const key = randomBytes(32);
    const text = makeChunk(1, 8192);
    const noise = makeChunk(0, 8192);
    const f1 = await sealChunk(key, 5, 0, fingerprint(text), text);
    const f2 = await sealChunk(key, 5, 1, fingerprint(noise), noise);
    expect(f1.length).toBeLessThan(1000);
    expect(f1[12]).toBe(1);
    expect(f2.length).toBe(8192 + FRAME_OVERHEAD);
    expect(f2[12]).toBe(0);
    expect(openChunk(key, 5, fingerprint(text), f1).equals(text)).toBe(true);
    expect(openChunk(key, 5, fingerprint(noise), f2).equals(noise)).toBe(true);
    // Fingerprints are not visible in the frame.
    expect(f1.includes(fingerprint(text))).toBe(false);
    expect(f2.includes(fingerprint(noise))).toBe(false);
    for (const raw of [Buffer.alloc(0), Buffer.from('x'), Buffer.alloc(15, 1), Buffer.alloc(16, 1)]) {
      const f = await sealChunk(key, 5, 9, fingerprint(raw), raw);
      expect(openChunk(key, 5, fingerprint(raw), f).equals(raw)).toBe(true);
    }
  });

  it('rejects the wrong key, container, fingerprint or a moved frame with IntegrityError', async () => {
    const key = randomBytes(32);
    const raw = makeChunk(1, 5000);
    const fp = fingerprint(raw);
    const frame = await sealChunk(key, 5, 3, fp, raw);
    expect(() => openChunk(randomBytes(32), 5, fp, frame)).toThrow(IntegrityError);
    expect(() => openChunk(key, 6, fp, frame)).toThrow(/authentication failed/);
    expect(() => openChunk(key, 5, randomBytes(16), frame)).toThrow(/fingerprint mismatch/);
    const moved = Buffer.from(frame);
    moved.writeUInt32LE(4, 0); // claims another sequence number (nonce)
    expect(() => openChunk(key, 5, fp, moved)).toThrow(IntegrityError);
    const err = (() => {
      try {
        openChunk(key, 6, fp, frame, { file: '/x/00000006.ctr', offset: 1234 });
      } catch (e) {
        return e as IntegrityError;
      }
    })();
    expect(err).toBeInstanceOf(IntegrityError);
    expect(err!.file).toBe('/x/00000006.ctr');
    expect(err!.offset).toBe(1234);
    expect(err!.message).toMatch(/container 00000006 .* damaged at byte 1234.*scrub.*replica/);
  });
});

describe('frame codecs together', () => {
  it(`reads every codec's frames with every codec (${codecs.map((c) => c.name).join(', ')})`, async () => {
    if (codecs.length < 2) console.warn(`only the ${codecs[0].name} frame codec loads here: the cross-check covers it alone`);
    const key = randomBytes(32);
    const raws = [Buffer.alloc(0), Buffer.from('x'), Buffer.alloc(16, 7), makeChunk(0, 8192), makeChunk(1, 8192), makeChunk(2, 300), makeChunk(1, 65536)];
    for (const writer of codecs) {
      const frames = await Promise.all(raws.map((raw, seq) => writer.seal(key, 9, seq, fingerprint(raw), raw)));
      for (const reader of codecs) {
        raws.forEach((raw, seq) => expect(reader.open(key, 9, fingerprint(raw), frames[seq], here).equals(raw), `${writer.name} -> ${reader.name} #${seq}`).toBe(true));
        const flipped = Buffer.from(frames[4]);
        flipped[FRAME_OVERHEAD] ^= 0x10;
        expect(() => reader.open(key, 9, fingerprint(raws[4]), flipped, here)).toThrow(/authentication failed/);
      }
    }
  });

  // Where npm ci built the addon and liblz4 is installed, the C codec must load and come first:
  // a broken build or a missing symbol fails here instead of silently using the slower codec.
  const loaded = loadFramesAddon();
  const built = existsSync(fileURLToPath(new URL('../../native/build/Release/vtl_frames.node', import.meta.url)));
  const why = !built
    ? 'the native addon is not built (npm ci needs g++, make and python3)'
    : 'error' in loaded && /liblz4|VTL_NATIVE_FRAMES/.test(loaded.error)
      ? `the native frame codec is off here: ${loaded.error}`
      : '';
  it.skipIf(why !== '')(`the C codec loads and is used first where it is built${why ? ` (skipped: ${why})` : ''}`, () => {
    expect('error' in loaded ? loaded.error : 'loaded').toBe('loaded');
    expect(codecs.map((c) => c.name)).toEqual(['native', 'typescript']);
  });
});

describe('ContainerWriter / ContainerReader', () => {
  it('reads back every chunk bit for bit via read, readMany and the footer', async () => {
    const sizes = Array.from({ length: 300 }, randomSize);
    sizes.push(1, 2, 64 * 1024, 64 * 1024 - 1);
    const w = await writeContainer(sizes, { inFlight: 32 });
    expect(w.writer.count).toBe(sizes.length);
    expect((await stat(containerPath(dir, w.id, true))).size).toBeGreaterThan(w.writer.size);
    await expect(stat(containerPath(dir, w.id, false))).rejects.toThrow(/ENOENT/);
    expect(w.footer!.map(({ fingerprint: _, ...r }) => r)).toEqual(w.refs);
    w.footer!.forEach((e, i) => expect(e.fingerprint.equals(w.fps[i])).toBe(true));

    const reader = await ContainerReader.open(dir, w.id, w.key);
    expect(reader.sealed).toBe(true);
    for (const i of [...w.refs.keys()].sort(() => Math.random() - 0.5)) {
      expect((await reader.read(w.refs[i], w.fps[i])).equals(w.chunks[i])).toBe(true);
    }
    // Shuffled, with duplicates: results come back in request order.
    const picks = Array.from({ length: 500 }, () => Math.floor(Math.random() * w.refs.length));
    const many = await reader.readMany(picks.map((i) => ({ ref: w.refs[i], fingerprint: w.fps[i] })));
    picks.forEach((i, k) => expect(many[k].equals(w.chunks[i])).toBe(true));
    const footer = await reader.footer();
    const viaFooter = await reader.readMany(footer.map((e) => ({ ref: e, fingerprint: e.fingerprint })));
    viaFooter.forEach((b, i) => expect(b.equals(w.chunks[i])).toBe(true));
    await reader.close();
    expect(await listContainers(dir)).toContainEqual({ id: w.id, sealed: true });
  });

  it('serves chunks before and after flush, and from an unsealed file', async () => {
    const id = nextId++;
    const key = randomBytes(32);
    const writer = await ContainerWriter.create(dir, id, key);
    const raw = makeChunk(1, 3000);
    const fp = fingerprint(raw);
    const ref = writer.append(fp, await sealChunk(key, id, 0, fp, raw), raw.length);
    expect(ref).toEqual({ container: id, offset: HEADER_SIZE, frameLength: writer.size - HEADER_SIZE, rawLength: 3000 });
    expect((await writer.read(ref, fp)).equals(raw)).toBe(true); // from memory
    await writer.flush();
    expect((await writer.read(ref, fp)).equals(raw)).toBe(true); // from the file
    const reader = await ContainerReader.open(dir, id, key);
    expect(reader.sealed).toBe(false);
    expect((await reader.read(ref, fp)).equals(raw)).toBe(true);
    await expect(reader.footer()).rejects.toThrow(/not sealed/);
    await writer.seal();
    expect((await reader.footer()).length).toBe(1); // follows the rename
    await reader.close();
    expect(() => writer.append(fp, Buffer.alloc(100), 1)).toThrow(/sealed/);
    await expect(writer.read(ref, fp)).rejects.toThrow(/sealed; read it with a ContainerReader/);
  });

  it('enforces sequence order, refuses reused ids, and abandons cleanly', async () => {
    const id = nextId++;
    const key = randomBytes(32);
    const writer = await ContainerWriter.create(dir, id, key);
    const raw = makeChunk(0, 100);
    const fp = fingerprint(raw);
    expect(writer.nextSeq()).toBe(0);
    expect(() => writer.append(fp, Buffer.alloc(10), 100)).toThrow(RangeError);
    const frame1 = await sealChunk(key, id, 1, fp, raw);
    expect(() => writer.append(fp, frame1, 100)).toThrow(/seq 1 .* expects seq 0/);
    const frame0 = await sealChunk(key, id, 0, fp, raw);
    expect(() => writer.append(fp, frame0, 99)).toThrow(/rawLength/);
    writer.append(fp, frame0, 100);
    expect(writer.nextSeq()).toBe(1);
    await expect(ContainerWriter.create(dir, id, key)).rejects.toThrow(/never reused/);
    await writer.abandon();
    expect((await readdir(dir)).some((n) => n.startsWith(id.toString(16).padStart(8, '0')))).toBe(false);
    await expect(ContainerReader.open(dir, id, key)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('writes an empty container that seals and opens', async () => {
    const w = await writeContainer([]);
    expect(w.footer).toEqual([]);
    const reader = await ContainerReader.open(dir, w.id, w.key);
    expect(await reader.footer()).toEqual([]);
    await reader.close();
  });
});

/** Runs every read on a damaged copy; returns which operations failed. */
async function probe(w: Written, file: string): Promise<{ open: boolean; chunks: boolean[]; footer: boolean; many: boolean }> {
  const fail = { open: true, chunks: w.refs.map(() => true), footer: true, many: true };
  let reader: ContainerReader;
  try {
    reader = await ContainerReader.open(dir, w.id, w.key);
  } catch (err) {
    expect(err).toBeInstanceOf(IntegrityError);
    return fail;
  }
  try {
    const result = { open: false, chunks: [] as boolean[], footer: false, many: false };
    for (let i = 0; i < w.refs.length; i++) {
      try {
        const got = await reader.read(w.refs[i], w.fps[i]);
        expect(got.equals(w.chunks[i])).toBe(true); // never wrong bytes
        result.chunks.push(false);
      } catch (err) {
        expect(err).toBeInstanceOf(IntegrityError);
        expect((err as IntegrityError).file).toBe(file);
        result.chunks.push(true);
      }
    }
    try {
      const many = await reader.readMany(w.refs.map((ref, i) => ({ ref, fingerprint: w.fps[i] })));
      many.forEach((b, i) => expect(b.equals(w.chunks[i])).toBe(true));
    } catch (err) {
      expect(err).toBeInstanceOf(IntegrityError);
      result.many = true;
    }
    try {
      const footer = await reader.footer();
      expect(footer.map(({ fingerprint: _, ...r }) => r)).toEqual(w.refs);
      footer.forEach((e, i) => expect(e.fingerprint.equals(w.fps[i])).toBe(true));
    } catch (err) {
      expect(err).toBeInstanceOf(IntegrityError);
      result.footer = true;
    }
    return result;
  } finally {
    await reader.close();
  }
}

/** Which reads a flipped byte at `pos` must break. */
function affected(w: Written, pos: number): { header: boolean; chunk: number; footer: boolean } {
  if (pos < HEADER_SIZE) return { header: true, chunk: -1, footer: true };
  const chunk = w.refs.findIndex((r) => pos >= r.offset && pos < r.offset + r.frameLength);
  return { header: false, chunk, footer: chunk < 0 };
}

function checkProbe(w: Written, pos: number, got: Awaited<ReturnType<typeof probe>>): void {
  const want = affected(w, pos);
  const ctx = `byte ${pos}`;
  if (want.header) {
    expect(got.chunks.every(Boolean), ctx).toBe(true);
    expect(got.footer, ctx).toBe(true);
    return;
  }
  expect(got.footer, ctx).toBe(want.footer);
  got.chunks.forEach((failed, i) => expect(failed, `${ctx} chunk ${i}`).toBe(i === want.chunk));
  expect(got.many, ctx).toBe(want.chunk >= 0);
}

describe('ContainerWriter.deferred', () => {
  it('creates no file before the first flush, and only after its ready promise', async () => {
    const key = randomBytes(32);
    let release!: () => void;
    const ready = new Promise<void>((r) => (release = r));
    const w = ContainerWriter.deferred(dir, 9001, key, ready);
    const raw = makeChunk(1, 8192);
    const ref = w.append(fingerprint(raw), await sealChunk(key, 9001, 0, fingerprint(raw), raw), raw.length);
    expect((await w.read(ref, fingerprint(raw))).equals(raw)).toBe(true); // from memory
    await expect(stat(containerPath(dir, 9001, false))).rejects.toThrow(/ENOENT/);
    const flushed = w.flush();
    await new Promise((r) => setTimeout(r, 20));
    await expect(stat(containerPath(dir, 9001, false))).rejects.toThrow(/ENOENT/);
    release();
    await flushed;
    expect((await stat(containerPath(dir, 9001, false))).size).toBe(w.size);
    await w.seal();
    const reader = await ContainerReader.open(dir, 9001, key);
    expect((await reader.read(ref, fingerprint(raw))).equals(raw)).toBe(true);
    await reader.close();
  });

  it('a ready promise that fails fails the first write and creates nothing; abandoning before it leaves nothing', async () => {
    const key = randomBytes(32);
    const w = ContainerWriter.deferred(dir, 9002, key, Promise.reject(new Error('key not durable')));
    await expect(w.flush()).rejects.toThrow(/key not durable/);
    await expect(stat(containerPath(dir, 9002, false))).rejects.toThrow(/ENOENT/);
    await expect(w.flush()).rejects.toThrow(/failed earlier/);
    const v = ContainerWriter.deferred(dir, 9003, key, Promise.resolve());
    await v.abandon();
    await expect(stat(containerPath(dir, 9003, false))).rejects.toThrow(/ENOENT/);
  });
});

describe('bit flips', () => {
  it('every bit of a small container: the affected read fails, nothing else changes', async () => {
    const w = await writeContainer([1, 17, 40, 300, 200, 5], { inFlight: 6 });
    const file = containerPath(dir, w.id, true);
    const good = await readFile(file);
    expect(good.length).toBeLessThan(1200);
    const fh = await open(file, 'r+');
    try {
      for (let bit = 0; bit < good.length * 8; bit++) {
        const byte = Buffer.from([good[bit >> 3] ^ (1 << (bit & 7))]);
        await fh.write(byte, 0, 1, bit >> 3);
        checkProbe(w, bit >> 3, await probe(w, file));
        await fh.write(good, bit >> 3, 1, bit >> 3);
      }
    } finally {
      await fh.close();
    }
    const clean = await probe(w, file);
    expect(clean.chunks.some(Boolean) || clean.footer || clean.many).toBe(false);
  }, 60_000);

  it('random bits of a full-size container', async () => {
    const sizes: number[] = [];
    for (let total = 0; total < CONTAINER_TARGET_SIZE; total += sizes[sizes.length - 1]) sizes.push(randomSize());
    const w = await writeContainer(sizes, { inFlight: 64 });
    const file = containerPath(dir, w.id, true);
    const size = (await stat(file)).size;
    const fh = await open(file, 'r+');
    // Bias towards the plaintext parts: headers, frame headers, tags, footer and trailer.
    const positions = [
      ...Array.from({ length: 60 }, () => Math.floor(Math.random() * size)),
      ...Array.from({ length: 20 }, () => w.refs[Math.floor(Math.random() * w.refs.length)].offset + Math.floor(Math.random() * 16)),
      ...Array.from({ length: 10 }, () => {
        const r = w.refs[Math.floor(Math.random() * w.refs.length)];
        return r.offset + r.frameLength - 1 - Math.floor(Math.random() * 16);
      }),
      ...Array.from({ length: 20 }, () => size - 1 - Math.floor(Math.random() * (w.refs.length * 28 + 48))),
      5,
      14,
      size - 1,
    ];
    const one = Buffer.alloc(1);
    try {
      for (const pos of positions) {
        await fh.read(one, 0, 1, pos);
        const orig = one[0];
        one[0] ^= 1 << Math.floor(Math.random() * 8);
        await fh.write(one, 0, 1, pos);
        checkProbe(w, pos, await probe(w, file));
        one[0] = orig;
        await fh.write(one, 0, 1, pos);
      }
    } finally {
      await fh.close();
    }
  }, 60_000);
});

describe('recoverContainer', () => {
  async function unsealed(n: number) {
    const w = await writeContainer(Array.from({ length: n }, randomSize), { seal: false });
    await w.writer.close();
    return { ...w, file: containerPath(dir, w.id, false) };
  }

  async function expectSealedWith(w: Written, n: number, entries: FooterEntry[]) {
    expect(entries.map(({ fingerprint: _, ...r }) => r)).toEqual(w.refs.slice(0, n));
    entries.forEach((e, i) => expect(e.fingerprint.equals(w.fps[i])).toBe(true));
    await expect(stat(containerPath(dir, w.id, false))).rejects.toThrow(/ENOENT/);
    const reader = await ContainerReader.open(dir, w.id, w.key);
    expect(reader.sealed).toBe(true);
    expect((await reader.footer()).length).toBe(n);
    const got = await reader.readMany(w.refs.slice(0, n).map((ref, i) => ({ ref, fingerprint: w.fps[i] })));
    got.forEach((b, i) => expect(b.equals(w.chunks[i])).toBe(true));
    await reader.close();
  }

  it('keeps exactly the flushed frames after a torn frame and garbage', async () => {
    const w = await unsealed(40);
    const flushedSize = (await stat(w.file)).size;
    const extra = makeChunk(1, 20000);
    const torn = await sealChunk(w.key, w.id, 40, fingerprint(extra), extra);
    await appendFile(w.file, torn.subarray(0, Math.floor(torn.length / 2)));
    await appendFile(w.file, randomBytes(5000));
    expect(await listContainers(dir)).toContainEqual({ id: w.id, sealed: false });
    await expectSealedWith(w, 40, await recoverContainer(dir, w.id, w.key));
    const reader = await ContainerReader.open(dir, w.id, w.key);
    const trailerAt = (await stat(containerPath(dir, w.id, true))).size;
    expect(trailerAt).toBe(flushedSize + 40 * 28 + 16 + 32);
    await reader.close();
    // Idempotent once sealed.
    expect((await recoverContainer(dir, w.id, w.key)).length).toBe(40);
  });

  it('keeps a complete frame that was written after the flush, and drops garbage after it', async () => {
    const w = await unsealed(10);
    const extra = makeChunk(0, 3000);
    const fp = fingerprint(extra);
    const frame = await sealChunk(w.key, w.id, 10, fp, extra);
    const ref = { container: w.id, offset: (await stat(w.file)).size, frameLength: frame.length, rawLength: 3000 };
    await appendFile(w.file, Buffer.concat([frame, Buffer.alloc(100, 0xff)]));
    w.refs.push(ref);
    w.chunks.push(extra);
    w.fps.push(fp);
    await expectSealedWith(w, 11, await recoverContainer(dir, w.id, w.key));
  });

  it('stops at a damaged frame and keeps the frames before it', async () => {
    const w = await unsealed(20);
    const fh = await open(w.file, 'r+');
    await fh.write(Buffer.from([0x55]), 0, 1, w.refs[12].offset + 40);
    await fh.close();
    await expectSealedWith(w, 12, await recoverContainer(dir, w.id, w.key));
  });

  it('re-seals identically after a crash between footer and rename', async () => {
    const w = await writeContainer(Array.from({ length: 30 }, randomSize));
    const sealedFile = containerPath(dir, w.id, true);
    const before = await readFile(sealedFile);
    await rename(sealedFile, containerPath(dir, w.id, false));
    await expectSealedWith(w, 30, await recoverContainer(dir, w.id, w.key));
    expect((await readFile(sealedFile)).equals(before)).toBe(true);
  });

  it('handles a file torn inside its header, and refuses a file that is not a container', async () => {
    const id = nextId++;
    const key = randomBytes(32);
    const w = await ContainerWriter.create(dir, id, key);
    await w.close();
    const file = containerPath(dir, id, false);
    await writeFile(file, (await readFile(file)).subarray(0, 10));
    expect(await recoverContainer(dir, id, key)).toEqual([]);

    const id2 = nextId++;
    const bogus = Buffer.concat([Buffer.from('NOTACONTAINER'), randomBytes(100)]);
    await writeFile(containerPath(dir, id2, false), bogus);
    await expect(recoverContainer(dir, id2, key)).rejects.toThrow(IntegrityError);
    expect((await readFile(containerPath(dir, id2, false))).equals(bogus)).toBe(true); // untouched
  });
});

describe('naming', () => {
  it('names containers by 8 hex digits and lists them in id order', async () => {
    expect(containerPath('d', 42, true)).toBe(join('d', '0000002a.ctr'));
    expect(containerPath('d', 42, false)).toBe(join('d', '0000002a.open'));
    expect(() => containerPath('d', -1, true)).toThrow(RangeError);
    const list = await listContainers(dir);
    expect(list.map((c) => c.id)).toEqual([...list.map((c) => c.id)].sort((a, b) => a - b));
    expect(await listContainers(join(dir, 'missing'))).toEqual([]);
  });
});

describe('codec pool reads', () => {
  it('read a container back, and name a frame that lies past the end of its file', async () => {
    const c = await writeContainer([9000, 20000, 5000]);
    const pool = CodecPool.shared();
    const good = await pool.read(c.key, dir, c.id, c.refs.map((ref, i) => ({ ref, fingerprint: c.fps[i] })));
    good.forEach((g, i) => expect(g.equals(c.chunks[i]), `chunk ${i}`).toBe(true));
    // The file shrank after the index was written: the last frame now ends past it.
    const size = (await stat(containerPath(dir, c.id, true))).size;
    const beyond = { ...c.refs[2], offset: size - 10 };
    const read = pool.read(c.key, dir, c.id, [
      { ref: c.refs[0], fingerprint: c.fps[0] },
      { ref: beyond, fingerprint: c.fps[2] },
    ]);
    await expect(read).rejects.toMatchObject({ name: 'IntegrityError', offset: size - 10, reason: 'frame extends past the end of the file (truncated)' });
  });
});
