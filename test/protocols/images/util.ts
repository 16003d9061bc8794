/** Shared helpers of the image tests: generated tapes, encoding, chunked decoding, a real store. */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { Libraries } from '../../../src/library/index.js';
import { ImportJournal, type DecodeOptions, type EncodeOptions, type ImageCodec, type TapeEvent } from '../../../src/protocols/images/index.js';
import { initDataStore, openDataStore, type DataStore } from '../../../src/stream/store.js';
import { MAX_RECORD } from '../../../src/tape/index.js';
import { randomBytes } from '../../helpers/data.js';

/** A tape as the tests compare it: records and tapemarks, no image offsets. */
export type Obj = { kind: 'record'; data: Buffer } | { kind: 'tapemark' };

/** Small, seedable PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const int = (r: () => number, lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));

/** Sizes around the formats' edges (aws chunk size, odd lengths for simh padding, the 2 MiB maximum). */
export const EDGE_SIZES = [1, 2, 3, 80, 65534, 65535, 65536, 65537, 131070, 131071, 131072, MAX_RECORD - 1, MAX_RECORD];

/** A record size from 1 B to 2 MiB: mostly small, some large, some at the edges. */
export function recordSize(r: () => number): number {
  const p = r();
  if (p < 0.1) return EDGE_SIZES[int(r, 0, EDGE_SIZES.length - 1)];
  if (p < 0.6) return int(r, 1, 4096);
  if (p < 0.9) return int(r, 4097, 262144);
  return int(r, 262145, MAX_RECORD);
}

/**
 * A random tape: runs of records and runs of 0 to 5 consecutive tapemarks; for a codec that
 * keeps neither record boundaries nor several files (raw), one file of `blockSize` records.
 */
export function genTape(r: () => number, codec: ImageCodec, opts: { maxObjects?: number; blockSize?: number } = {}): Obj[] {
  const seed = () => int(r, 1, 2 ** 31);
  if (!codec.multiFile) {
    const bs = opts.blockSize ?? 65536;
    if (r() < 0.1) return [];
    const n = int(r, 0, 6);
    const out: Obj[] = [];
    for (let i = 0; i < n; i++) out.push({ kind: 'record', data: randomBytes(bs, seed()) });
    out.push({ kind: 'record', data: randomBytes(int(r, 1, bs), seed()) });
    out.push({ kind: 'tapemark' });
    return out;
  }
  const out: Obj[] = [];
  const max = opts.maxObjects ?? 14;
  const total = r() < 0.1 ? 0 : int(r, 1, max);
  while (out.length < total) {
    if (r() < 0.35) {
      for (let k = int(r, 0, 5); k > 0; k--) out.push({ kind: 'tapemark' });
    } else {
      for (let k = int(r, 1, 4); k > 0; k--) out.push({ kind: 'record', data: randomBytes(recordSize(r), seed()) });
    }
  }
  return out;
}

export function encode(codec: ImageCodec, tape: Obj[], opts?: EncodeOptions): Buffer {
  const enc = codec.encoder(opts);
  const parts: Buffer[] = [];
  for (const o of tape) parts.push(...(o.kind === 'record' ? enc.record(o.data) : enc.tapemark()));
  parts.push(...enc.end());
  return Buffer.concat(parts);
}

/** Splits an image into chunks of mixed sizes (tiny ones included) to test the decoders' seams. */
export function chunks(image: Buffer, r: () => number): Buffer[] {
  const out: Buffer[] = [];
  const sizes = [1, 2, 5, 7, 100, 4093, 65536, 1 << 20];
  for (let at = 0; at < image.length; ) {
    const n = Math.min(image.length - at, sizes[int(r, 0, sizes.length - 1)]);
    out.push(image.subarray(at, at + n));
    at += n;
  }
  return out;
}

/** Decodes a whole image; returns the events (with offsets) or throws the decoder's error. */
export function decode(codec: ImageCodec, parts: Buffer[] | Buffer, opts?: DecodeOptions): TapeEvent[] {
  const dec = codec.decoder(opts);
  const out: TapeEvent[] = [];
  for (const p of Array.isArray(parts) ? parts : [parts]) for (const ev of dec.push(p)) out.push(ev);
  for (const ev of dec.finish()) out.push(ev);
  return out;
}

/** Events without offsets and without the final `end`, as `Obj`s. */
export function objects(events: TapeEvent[]): Obj[] {
  return events.filter((e) => e.kind !== 'end').map((e) => (e.kind === 'record' ? { kind: 'record', data: e.data } : { kind: 'tapemark' }));
}

/** A compact description of a tape for comparisons: `R<len>:<sha1 prefix>` and `TM`. */
export function describeTape(tape: Obj[]): string[] {
  return tape.map((o) => (o.kind === 'record' ? `R${o.data.length}:${createHash('sha1').update(o.data).digest('hex').slice(0, 12)}` : 'TM'));
}

export async function collect(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** Streams a buffer as an async iterable of chunks of `size` bytes. */
export async function* source(image: Buffer, size = 65536): AsyncGenerator<Buffer> {
  for (let at = 0; at < image.length; at += size) yield image.subarray(at, at + size);
}

/** A real data directory (chunk store, LevelDB, streams) with a library of cartridges. */
export interface StoreEnv {
  dir: string;
  ds: DataStore;
  libraries: Libraries;
  journal: ImportJournal;
  /** Creates a fresh LTO-7 cartridge in the vault and returns its barcode. */
  cartridge(spec?: { worm?: boolean; writeProtected?: boolean; capacity?: number; retentionUntil?: string }): Promise<string>;
  /** Everything observable about a cartridge's medium: extents, files and their checksums. */
  snapshot(barcode: string): Promise<unknown>;
  close(): Promise<void>;
}

let serial = 0;

/** A new store in a temp dir (removed on close), or the existing one in `at` (kept). */
export async function openStore(at?: string): Promise<StoreEnv> {
  const dir = at ?? (await mkdtemp(join(tmpdir(), 'vtl-images-')));
  if (!at) await initDataStore(dir);
  const ds = await openDataStore(dir);
  const libraries = new Libraries({ db: ds.db, streams: ds.streams });
  const journal = new ImportJournal(ds.db);
  return {
    dir,
    ds,
    libraries,
    journal,
    async cartridge(spec = {}) {
      const barcode = `IM${process.pid % 1000}${String(++serial).padStart(4, '0')}`;
      await libraries.createCartridges({ barcodes: [barcode], mediaType: spec.capacity ? 'custom' : 'LTO-7', ...spec });
      return barcode;
    },
    async snapshot(barcode) {
      const info = await libraries.tapes.info(barcode);
      const m = await libraries.tapes.mount(barcode);
      const files = [];
      for await (const f of m.files()) files.push(f);
      const verify = await m.verify();
      await m.unload();
      // A failed import into a blank tape may leave an empty stream behind: same tape, new id.
      return { ...info, streamId: info.logicalBytes === 0 ? null : info.streamId, loaded: undefined, files, verify };
    },
    async close() {
      await libraries.close();
      await ds.close();
      if (!at) await rm(dir, { recursive: true, force: true });
    },
  };
}
