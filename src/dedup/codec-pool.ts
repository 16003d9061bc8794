/**
 * A pool of worker threads that seal chunks into container frames and open frames back into
 * chunks. The event loop keeps the cheap, ordered work (chunking, fingerprints, lookups,
 * appends); compression and encryption run on all cores (DESIGN.md section 6).
 *
 * Guarantees: outputs come back in input order, byte-identical to calling `sealChunk` /
 * `openChunk` directly (same functions, other threads); an error in a worker (an integrity
 * failure above all) rejects the call with an error of the same name and message.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { IntegrityError } from './container.js';

export interface CodecRequest {
  id: number;
  op: 'seal' | 'open';
  /** The key when all items share one (seal); `keys` holds one 32-byte key per item otherwise. */
  key: Uint8Array;
  keys?: Uint8Array;
  containers: Uint32Array;
  seqs: Uint32Array;
  fingerprints: Uint8Array;
  /** Item j is data[starts[j] .. starts[j] + lengths[j]). */
  data: Uint8Array;
  starts: Uint32Array;
  lengths: Uint32Array;
  files?: string[];
  offsets?: Uint32Array;
}

export interface CodecReply {
  id: number;
  /** Output j is block[bounds[j] .. bounds[j+1]). */
  block: Uint8Array;
  bounds: Uint32Array;
  error?: { name: string; message: string; file?: string; offset?: number; reason?: string; container?: number };
}

export interface SealItem {
  containerId: number;
  seq: number;
  fingerprint: Buffer;
  raw: Uint8Array;
}

export interface OpenItem {
  key: Buffer;
  containerId: number;
  fingerprint: Buffer;
  frame: Buffer;
  file: string;
  offset: number;
}

/** Items per worker message: enough to amortize the message, few enough to spread the work. */
const ITEMS_PER_JOB = 64;

export class CodecPool {
  private static instance: CodecPool | undefined;
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, { resolve: (r: CodecReply) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private turn = 0;
  private outstanding = 0;

  private constructor(size: number) {
    for (let i = 0; i < size; i++) this.workers.push(this.spawn());
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

  /** Seals chunks (all of one container key) into frames, in order. */
  async seal(key: Buffer, items: SealItem[]): Promise<Buffer[]> {
    const jobs: Promise<Buffer[]>[] = [];
    for (let i = 0; i < items.length; i += ITEMS_PER_JOB) {
      const part = items.slice(i, i + ITEMS_PER_JOB);
      jobs.push(this.run(requestOf('seal', key, part.map((p) => p.raw), part.map((p) => p.containerId), part.map((p) => p.seq), part.map((p) => p.fingerprint))));
    }
    return (await Promise.all(jobs)).flat();
  }

  /** Opens frames into raw chunks, in order; rejects with IntegrityError on any damage. */
  async open(items: OpenItem[]): Promise<Buffer[]> {
    const jobs: Promise<Buffer[]>[] = [];
    for (let i = 0; i < items.length; i += ITEMS_PER_JOB) {
      const part = items.slice(i, i + ITEMS_PER_JOB);
      const req = requestOf('open', part[0].key, part.map((p) => p.frame), part.map((p) => p.containerId), part.map(() => 0), part.map((p) => p.fingerprint));
      req.keys = concat(part.map((p) => p.key));
      req.files = part.map((p) => p.file);
      req.offsets = Uint32Array.from(part.map((p) => p.offset));
      jobs.push(this.run(req));
    }
    return (await Promise.all(jobs)).flat();
  }

  private run(req: CodecRequest): Promise<Buffer[]> {
    req.id = this.nextId++;
    const worker = this.workers[this.turn++ % this.workers.length];
    if (this.outstanding++ === 0) for (const w of this.workers) w.ref();
    return new Promise<CodecReply>((resolve, reject) => {
      this.pending.set(req.id, { resolve, reject });
      worker.postMessage(req, req.data.buffer instanceof ArrayBuffer ? [req.data.buffer] : []);
    }).then((reply) => {
      const block = Buffer.from(reply.block.buffer, reply.block.byteOffset, reply.block.byteLength);
      const out: Buffer[] = new Array(reply.bounds.length - 1);
      for (let j = 0; j < out.length; j++) out[j] = block.subarray(reply.bounds[j], reply.bounds[j + 1]);
      return out;
    });
  }

  private settle(reply: CodecReply): void {
    const p = this.pending.get(reply.id);
    if (!p) return;
    this.pending.delete(reply.id);
    if (--this.outstanding === 0) for (const w of this.workers) w.unref();
    if (reply.error) {
      const e = reply.error;
      p.reject(e.name === 'IntegrityError' ? new IntegrityError(e.file ?? 'frame', e.offset ?? 0, e.reason ?? e.message, e.container) : new Error(e.message));
    } else {
      p.resolve(reply);
    }
  }

  private failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(new Error(`codec worker failed: ${err.message}`, { cause: err }));
    this.pending.clear();
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
    if (CodecPool.instance === this) CodecPool.instance = undefined;
  }
}

/**
 * The items' bytes for a worker: views of one SharedArrayBuffer (the stream writer's batch
 * buffers are shared) go as they are; anything else is packed into one transferable buffer.
 */
function requestOf(op: 'seal' | 'open', key: Buffer, items: Uint8Array[], containers: number[], seqs: number[], fps: Buffer[]): CodecRequest {
  const starts = new Uint32Array(items.length);
  const lengths = Uint32Array.from(items, (it) => it.length);
  const shared = items[0].buffer;
  let data: Uint8Array;
  if (shared instanceof SharedArrayBuffer && items.every((it) => it.buffer === shared)) {
    data = new Uint8Array(shared);
    items.forEach((it, j) => (starts[j] = it.byteOffset));
  } else {
    data = concat(items);
    for (let j = 1; j < items.length; j++) starts[j] = starts[j - 1] + lengths[j - 1];
  }
  return {
    id: 0,
    op,
    key: new Uint8Array(key),
    containers: Uint32Array.from(containers),
    seqs: Uint32Array.from(seqs),
    fingerprints: concat(fps),
    data,
    starts,
    lengths,
  };
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
