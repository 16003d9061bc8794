/**
 * A pool of worker threads that seal chunks into container frames, and read and open frames
 * back into chunks. The event loop keeps the cheap, ordered work (chunking, fingerprints,
 * lookups, appends); compression, encryption and their inverses run on all cores
 * (DESIGN.md section 6).
 *
 * Guarantees: outputs come back in input order, byte-identical to calling `sealChunk` /
 * `openChunk` directly (the same frame codec, a batch per call, other threads); an error in a
 * worker (an integrity failure above all) rejects the call with an error of the same kind.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { ChunkParams } from './chunker.js';
import { IntegrityError, type ChunkRef } from './container.js';

export interface SealRequest {
  id: number;
  op: 'seal';
  key: Uint8Array;
  containers: Uint32Array;
  seqs: Uint32Array;
  fingerprints: Uint8Array;
  /** Chunk j is data[starts[j] .. starts[j] + lengths[j]). */
  data: Uint8Array;
  starts: Uint32Array;
  lengths: Uint32Array;
}

export interface ReadRequest {
  id: number;
  op: 'read';
  key: Uint8Array;
  dir: string;
  container: number;
  fingerprints: Uint8Array;
  offsets: Uint32Array;
  lengths: Uint32Array;
  rawLengths: Uint32Array;
  /** When given, chunk j is written to target[targetOffsets[j]..] and the reply carries no data. */
  target?: Uint8Array;
  targetOffsets?: Uint32Array;
}

/** Cut points and fingerprints of data[start..end) (a view of a stream writer's batch). */
export interface CutRequest {
  id: number;
  op: 'cut';
  params: ChunkParams;
  native: boolean;
  gearSeed: Uint8Array;
  secret: Uint8Array;
  data: Uint8Array;
  start: number;
  end: number;
  final: boolean;
}

/** A container file was deleted or replaced: workers close what they hold open of it. */
export interface ForgetRequest {
  id: number;
  op: 'forget';
  dir: string;
  container: number;
}

export type CodecRequest = SealRequest | ReadRequest | CutRequest | ForgetRequest;

export interface CodecReply {
  id: number;
  /** Output j is block[bounds[j] .. bounds[j+1]). */
  block: Uint8Array;
  bounds: Uint32Array;
  error?: { name: string; message: string; code?: string; file?: string; offset?: number; reason?: string; container?: number };
}

export interface SealItem {
  containerId: number;
  seq: number;
  fingerprint: Buffer;
  raw: Uint8Array;
}

/** Items per worker message: enough to amortize the message, few enough to spread the work. */
const ITEMS_PER_JOB = 64;

export class CodecPool {
  private static instance: CodecPool | undefined;
  private readonly workers: Worker[] = [];
  /** Chunking is sequential within a stream: its own thread keeps it from queueing behind seals. */
  private readonly cutter: Worker;
  private readonly pending = new Map<number, { resolve: (r: CodecReply) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private turn = 0;
  private outstanding = 0;

  private constructor(size: number) {
    for (let i = 0; i < size; i++) this.workers.push(this.spawn());
    this.cutter = this.spawn();
  }

  /** The process-wide pool, one worker per core. */
  static shared(): CodecPool {
    CodecPool.instance ??= new CodecPool(Math.max(1, availableParallelism()));
    return CodecPool.instance;
  }

  private spawn(): Worker {
    const here = import.meta.url;
    let worker: Worker;
    if (here.endsWith('.ts')) {
      // Running from source (tests, tsx): the worker needs the TypeScript loader registered.
      const url = new URL('./codec-worker.ts', here).href;
      worker = new Worker(`import('tsx/esm/api').then((t) => { t.register(); return import(${JSON.stringify(url)}); })`, { eval: true });
    } else {
      worker = new Worker(new URL('./codec-worker.js', here));
    }
    worker.on('message', (reply: CodecReply) => this.settle(reply));
    worker.on('error', (err) => this.failAll(err));
    worker.unref();
    return worker;
  }

  /**
   * Seals chunks (all under one container key) into frames, in order. Chunks that share one
   * SharedArrayBuffer (the stream writer's batches) reach the workers without a copy.
   */
  async seal(key: Buffer, items: SealItem[]): Promise<Buffer[]> {
    const jobs: Promise<Buffer[]>[] = [];
    for (let i = 0; i < items.length; i += ITEMS_PER_JOB) jobs.push(this.run(sealRequest(key, items.slice(i, i + ITEMS_PER_JOB))));
    return (await settleAll(jobs)).flat();
  }

  /**
   * Reads chunks of one container from its file in `dir` and opens them, in order. Rejects
   * with IntegrityError on any damage, and with code ENOENT when the container is gone.
   * With `target` (a view of a SharedArrayBuffer with room for every chunk from `at` on, in
   * order) the workers write the chunks there: no allocation or copy on this thread.
   */
  async read(
    key: Buffer,
    dir: string,
    container: number,
    chunks: Array<{ ref: ChunkRef; fingerprint: Buffer }>,
    target?: { buf: Buffer; at: number },
  ): Promise<Buffer[]> {
    const jobs: Promise<Buffer[]>[] = [];
    let at = target?.at ?? 0;
    for (let i = 0; i < chunks.length; i += ITEMS_PER_JOB) {
      const part = chunks.slice(i, i + ITEMS_PER_JOB);
      const req = readRequest(key, dir, container, part);
      if (target) {
        const offsets = new Uint32Array(part.length);
        for (let j = 0; j < part.length; j++) {
          offsets[j] = target.buf.byteOffset + at;
          at += part[j].ref.rawLength;
        }
        req.target = new Uint8Array(target.buf.buffer);
        req.targetOffsets = offsets;
        jobs.push(this.readInto(req, req.target, offsets));
      } else {
        jobs.push(this.run(req));
      }
    }
    return (await settleAll(jobs)).flat();
  }

  /**
   * Cuts a stream writer's batch (a view of a SharedArrayBuffer) into chunks and fingerprints
   * them, on the cutter thread. `cuts` are chunk ends relative to the view, as
   * `Chunker.cutPoints` returns them; `fingerprints` holds 16 bytes per chunk.
   */
  async cut(
    view: Buffer,
    final: boolean,
    chunking: { params: ChunkParams; native: boolean; gearSeed: Buffer; secret: Buffer },
  ): Promise<{ cuts: Uint32Array; fingerprints: Buffer }> {
    const reply = await this.post(
      {
        id: 0,
        op: 'cut',
        params: chunking.params,
        native: chunking.native,
        gearSeed: new Uint8Array(chunking.gearSeed),
        secret: new Uint8Array(chunking.secret),
        data: new Uint8Array(view.buffer),
        start: view.byteOffset,
        end: view.byteOffset + view.length,
        final,
      },
      this.cutter,
    );
    return { cuts: reply.bounds, fingerprints: Buffer.from(reply.block.buffer, reply.block.byteOffset, reply.block.byteLength) };
  }

  /**
   * Tells every worker that a container's file in `dir` was deleted or replaced, so that none
   * keeps reading, or keeps the disk space of, the file that was there (each would also notice
   * at its next read of it; this frees a deleted file's space at once).
   */
  async forget(dir: string, container: number): Promise<void> {
    await Promise.all(this.workers.map((w) => this.post({ id: 0, op: 'forget', dir, container }, w)));
  }

  /** A read whose worker writes the chunks into `target`: they come back as views of it. */
  private async readInto(req: ReadRequest, target: Uint8Array, offsets: Uint32Array): Promise<Buffer[]> {
    await this.post(req, this.nextWorker());
    const out: Buffer[] = new Array(offsets.length);
    for (let j = 0; j < out.length; j++) out[j] = Buffer.from(target.buffer, offsets[j], req.rawLengths[j]);
    return out;
  }

  private run(req: SealRequest | ReadRequest): Promise<Buffer[]> {
    return this.post(req, this.nextWorker()).then(framesOfBlock);
  }

  private nextWorker(): Worker {
    return this.workers[this.turn++ % this.workers.length];
  }

  private post(req: CodecRequest, worker: Worker): Promise<CodecReply> {
    req.id = this.nextId++;
    if (this.outstanding++ === 0) for (const w of this.all()) w.ref();
    return new Promise<CodecReply>((resolve, reject) => {
      this.pending.set(req.id, { resolve, reject });
      const transfer = req.op === 'seal' && req.data.buffer instanceof ArrayBuffer ? [req.data.buffer] : [];
      worker.postMessage(req, transfer);
    });
  }

  private all(): Worker[] {
    return [...this.workers, this.cutter];
  }

  private settle(reply: CodecReply): void {
    const p = this.pending.get(reply.id);
    if (!p) return;
    this.pending.delete(reply.id);
    if (--this.outstanding === 0) for (const w of this.all()) w.unref();
    if (reply.error) p.reject(rebuildError(reply.error));
    else p.resolve(reply);
  }

  private failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(new Error(`codec worker failed: ${err.message}`, { cause: err }));
    this.pending.clear();
  }

  async close(): Promise<void> {
    await Promise.all(this.all().map((w) => w.terminate()));
    if (CodecPool.instance === this) CodecPool.instance = undefined;
  }
}

/**
 * Like Promise.all, but settles only when every job has: a caller may reuse the memory the jobs
 * read (a stream writer's batch) as soon as this settles, even on failure.
 */
async function settleAll<T>(jobs: Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(jobs);
  const values: T[] = new Array(results.length);
  for (let j = 0; j < results.length; j++) {
    const r = results[j];
    if (r.status === 'rejected') throw r.reason;
    values[j] = r.value;
  }
  return values;
}

// The request builders and reply readers below are module functions, not closures made per
// call: V8 optimizes a per-call closure again after each garbage collection.

function sealRequest(key: Buffer, part: SealItem[]): SealRequest {
  const n = part.length;
  const raws: Uint8Array[] = new Array(n);
  const fingerprints: Uint8Array[] = new Array(n);
  const containers = new Uint32Array(n);
  const seqs = new Uint32Array(n);
  const lengths = new Uint32Array(n);
  for (let j = 0; j < n; j++) {
    const p = part[j];
    raws[j] = p.raw;
    fingerprints[j] = p.fingerprint;
    containers[j] = p.containerId;
    seqs[j] = p.seq;
    lengths[j] = p.raw.length;
  }
  const { data, starts } = packChunks(raws);
  return { id: 0, op: 'seal', key: new Uint8Array(key), containers, seqs, fingerprints: concat(fingerprints), data, starts, lengths };
}

function readRequest(key: Buffer, dir: string, container: number, part: Array<{ ref: ChunkRef; fingerprint: Buffer }>): ReadRequest {
  const n = part.length;
  const fingerprints: Uint8Array[] = new Array(n);
  const offsets = new Uint32Array(n);
  const lengths = new Uint32Array(n);
  const rawLengths = new Uint32Array(n);
  for (let j = 0; j < n; j++) {
    const { ref, fingerprint } = part[j];
    fingerprints[j] = fingerprint;
    offsets[j] = ref.offset;
    lengths[j] = ref.frameLength;
    rawLengths[j] = ref.rawLength;
  }
  return { id: 0, op: 'read', key: new Uint8Array(key), dir, container, fingerprints: concat(fingerprints), offsets, lengths, rawLengths };
}

/** A worker's reply block cut at its bounds: the frames sealed, or the chunks opened. */
function framesOfBlock(reply: CodecReply): Buffer[] {
  const block = Buffer.from(reply.block.buffer, reply.block.byteOffset, reply.block.byteLength);
  const out: Buffer[] = new Array(reply.bounds.length - 1);
  for (let j = 0; j < out.length; j++) out[j] = block.subarray(reply.bounds[j], reply.bounds[j + 1]);
  return out;
}

function rebuildError(e: NonNullable<CodecReply['error']>): Error {
  if (e.name === 'IntegrityError') return new IntegrityError(e.file ?? 'frame', e.offset ?? 0, e.reason ?? e.message, e.container);
  const err = new Error(e.message) as NodeJS.ErrnoException;
  if (e.code) err.code = e.code;
  return err;
}

/** Views of one SharedArrayBuffer go as they are; anything else is packed into one buffer. */
function packChunks(items: Uint8Array[]): { data: Uint8Array; starts: Uint32Array } {
  const starts = new Uint32Array(items.length);
  const shared = items[0].buffer;
  if (shared instanceof SharedArrayBuffer && sameBuffer(items, shared)) {
    for (let j = 0; j < items.length; j++) starts[j] = items[j].byteOffset;
    return { data: new Uint8Array(shared), starts };
  }
  for (let j = 1; j < items.length; j++) starts[j] = starts[j - 1] + items[j - 1].length;
  return { data: concat(items), starts };
}

function sameBuffer(items: Uint8Array[], buffer: ArrayBufferLike): boolean {
  for (const it of items) if (it.buffer !== buffer) return false;
  return true;
}

function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(new ArrayBuffer(n));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
