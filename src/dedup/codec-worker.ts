/**
 * Worker thread of the codec pool: seals chunks into frames (lz4 + AES-256-GCM), and reads
 * frames from container files and opens them into chunks, so that both cores do this work and
 * not only the event loop. Reading here keeps the frames' bytes off the event loop entirely.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { createChunker, type Chunker } from './chunker.js';
import { FRAME_OVERHEAD, IntegrityError, containerPath, openChunk, sealChunk } from './container.js';
import type { CodecReply, CodecRequest, CutRequest, ForgetRequest, ReadRequest, SealRequest } from './codec-pool.js';
import { fingerprintBatch } from './fingerprint.js';
import { framesAddon, type FramesAddon } from './frames-native.js';

const port = parentPort!;
const MAX_FDS = 64;
/** Frames closer than this are read with one call. */
const COALESCE_GAP = 64 * 1024;
/** Open container files by `dir` and id (one pool serves every store of the process). */
const fds = new Map<string, { fd: number; path: string }>();
let scratch = Buffer.allocUnsafe(1024 * 1024);
/** The C frame codec, or undefined for the TypeScript one (decided once per thread). */
const native = framesAddon();
/** Where the C codec seals a batch before it is copied out at its exact size. */
let sealScratch = new Uint8Array(0);

type WorkerError = Error & { file?: string; offset?: number; reason?: string; container?: number; code?: string };

port.on('message', onRequest);

/** Answers a request; only the TypeScript sealer is asynchronous. */
function onRequest(req: CodecRequest): void {
  try {
    const reply = handle(req);
    if (reply instanceof Promise) reply.then(sendReply, (err: WorkerError) => sendError(req.id, err));
    else sendReply(reply);
  } catch (err) {
    sendError(req.id, err as WorkerError);
  }
}

function sendReply(reply: CodecReply): void {
  port.postMessage(reply, [reply.block.buffer as ArrayBuffer]);
}

function sendError(id: number, err: WorkerError): void {
  port.postMessage({
    id,
    error: { name: err.name, message: err.message, code: err.code, file: err.file, offset: err.offset, reason: err.reason, container: err.container },
  });
}

function handle(req: CodecRequest): CodecReply | Promise<CodecReply> {
  if (req.op === 'cut') return cut(req);
  if (req.op === 'forget') return forget(req);
  if (req.op === 'seal') return native ? sealNative(native, req) : seal(req).then((frames) => pack(req.id, frames));
  if (native) return readNative(native, req);
  const out = read(req);
  return req.target ? pack(req.id, []) : pack(req.id, out);
}

/** A batch in one call to the C codec, into a reply block of the exact size. */
function sealNative(codec: FramesAddon, req: SealRequest): CodecReply {
  let need = 0;
  for (const n of req.lengths) need += n + FRAME_OVERHEAD;
  if (sealScratch.length < need) sealScratch = new Uint8Array(Math.max(need, 2 * sealScratch.length));
  const bounds = new Uint32Array(req.lengths.length + 1);
  const used = codec.sealFrames(req.key, req.containers, req.seqs, req.fingerprints, req.data, req.starts, req.lengths, sealScratch, bounds);
  return { id: req.id, block: sealScratch.slice(0, used), bounds };
}

async function seal(req: SealRequest): Promise<Buffer[]> {
  const key = Buffer.from(req.key);
  const data = Buffer.from(req.data.buffer, req.data.byteOffset, req.data.byteLength);
  return Promise.all(
    Array.from(req.starts, (start, j) =>
      sealChunk(key, req.containers[j], req.seqs[j], fingerprintAt(req.fingerprints, j), data.subarray(start, start + req.lengths[j])),
    ),
  );
}

/** Chunkers by store (gear seed and parameters): a store's stream writers share one. */
const chunkers = new Map<string, Chunker>();

function cut(req: CutRequest): CodecReply {
  const seed = Buffer.from(req.gearSeed);
  const id = `${seed.toString('hex')}/${req.params.min}/${req.params.avg}/${req.params.max}/${req.native}`;
  let chunker = chunkers.get(id);
  if (!chunker) {
    chunker = createChunker(req.params, seed, { native: req.native });
    chunkers.set(id, chunker);
  }
  const data = Buffer.from(req.data.buffer, req.start, req.end - req.start);
  const cuts = chunker.cutPoints(data, req.final);
  // Its own ArrayBuffer: the reply transfers it.
  const fps = fingerprintBatch(Buffer.from(req.secret), data, cuts, Buffer.from(new ArrayBuffer(cuts.length * 16)));
  return { id: req.id, block: fps, bounds: cuts };
}

/**
 * Reads the frames (nearby ones with one call) and opens them in the C codec: into the
 * request's target, or into the reply block.
 */
function readNative(codec: FramesAddon, req: ReadRequest): CodecReply {
  const file = containerFile(req.dir, req.container);
  const n = req.offsets.length;
  let out: Uint8Array;
  let outOffsets: Uint32Array;
  const bounds = new Uint32Array(n + 1);
  for (let j = 0; j < n; j++) bounds[j + 1] = bounds[j] + req.rawLengths[j];
  if (req.target) {
    out = req.target;
    outOffsets = req.targetOffsets!;
  } else {
    out = new Uint8Array(bounds[n]);
    outOffsets = bounds.subarray(0, n);
  }
  const order = fileOrder(req);
  for (let i = 0; i < n; ) {
    const run = readRun(req, file, order, i);
    openRunNative(codec, req, file, run, out, outOffsets);
    i = run.end;
  }
  return req.target ? { id: req.id, block: new Uint8Array(0), bounds: new Uint32Array(1) } : { id: req.id, block: out, bounds };
}

/** The request's frames in file order (indices into its arrays). */
function fileOrder(req: ReadRequest): number[] {
  const order: number[] = new Array(req.offsets.length);
  let sorted = true;
  for (let j = 0; j < order.length; j++) {
    order[j] = j;
    if (j > 0 && req.offsets[j] < req.offsets[j - 1]) sorted = false;
  }
  // A restore asks in stream order, which is mostly file order already.
  return sorted ? order : order.sort((a, b) => req.offsets[a] - req.offsets[b]);
}

/** Frames order[i..end) read with one call: scratch[0..got) holds the file's bytes from `at` on. */
interface Run {
  group: number[];
  at: number;
  got: number;
  end: number;
}

/**
 * Reads the run of frames from order[i] on that lie close enough together for one call, into
 * scratch. A frame cut short by the file's end is an IntegrityError. (Loops, not callbacks: V8
 * optimizes a per-call closure again after each garbage collection.)
 */
function readRun(req: ReadRequest, file: { fd: number; path: string }, order: number[], i: number): Run {
  const n = order.length;
  const at = req.offsets[order[i]];
  let last = at + req.lengths[order[i]];
  let k = i + 1;
  while (k < n && req.offsets[order[k]] <= last + COALESCE_GAP) {
    last = Math.max(last, req.offsets[order[k]] + req.lengths[order[k]]);
    k++;
  }
  if (scratch.length < last - at) scratch = Buffer.allocUnsafe(last - at);
  const got = readFullySync(file.fd, scratch, last - at, at);
  const group = order.slice(i, k);
  for (const j of group) {
    if (req.offsets[j] - at + req.lengths[j] > got) {
      throw new IntegrityError(file.path, req.offsets[j], 'frame extends past the end of the file (truncated)', req.container);
    }
  }
  return { group, at, got, end: k };
}

/** Opens a run's frames with one call to the C codec, into out[outOffsets[j]..]. */
function openRunNative(codec: FramesAddon, req: ReadRequest, file: { path: string }, run: Run, out: Uint8Array, outOffsets: Uint32Array): void {
  const { group, at } = run;
  const m = group.length;
  const offsets = new Uint32Array(m);
  const lengths = new Uint32Array(m);
  const raws = new Uint32Array(m);
  const into = new Uint32Array(m);
  const fps = new Uint8Array(16 * m);
  for (let i = 0; i < m; i++) {
    const j = group[i];
    offsets[i] = req.offsets[j] - at;
    lengths[i] = req.lengths[j];
    raws[i] = req.rawLengths[j];
    into[i] = outOffsets[j];
    fps.set(req.fingerprints.subarray(16 * j, 16 * j + 16), 16 * i);
  }
  const bad = codec.openFrames(req.key, req.container, fps, scratch.subarray(0, run.got), offsets, lengths, raws, out, into);
  if (bad) throw new IntegrityError(file.path, req.offsets[group[bad.index]], bad.reason, req.container);
}

function read(req: ReadRequest): Buffer[] {
  const key = Buffer.from(req.key);
  const file = containerFile(req.dir, req.container);
  const out = new Array<Buffer>(req.offsets.length);
  const order = fileOrder(req);
  for (let i = 0; i < order.length; ) {
    const run = readRun(req, file, order, i);
    for (const j of run.group) {
      const from = req.offsets[j] - run.at;
      const where = { file: file.path, offset: req.offsets[j] };
      const frame = scratch.subarray(from, from + req.lengths[j]);
      const raw = openChunk(key, req.container, fingerprintAt(req.fingerprints, j), frame, where);
      if (raw.length !== req.rawLengths[j]) throw new IntegrityError(file.path, where.offset, 'frame raw length disagrees with the index', req.container);
      if (req.target) req.target.set(raw, req.targetOffsets![j]);
      else out[j] = raw;
    }
    i = run.end;
  }
  return out;
}

/**
 * An open descriptor of the container (sealed or not); it stays valid across the seal's rename.
 * One whose file was deleted or replaced since (GC, a scrub repair, a DR cache that dropped or
 * fetched it again: the inode has no name left) is closed and the path opened again: reading
 * the old inode would return what was there before, and keep a deleted file's space in use.
 */
function containerFile(dir: string, id: number): { fd: number; path: string } {
  const cacheKey = `${dir}\0${id}`;
  const cached = fds.get(cacheKey);
  if (cached && !unlinked(cached.fd)) return cached;
  if (cached) closeFile(cacheKey);
  closeUnlinked();
  for (const sealed of [true, false, true]) {
    const path = containerPath(dir, id, sealed);
    try {
      const entry = { fd: openSync(path, 'r'), path };
      if (fds.size >= MAX_FDS) closeFile(fds.keys().next().value!);
      fds.set(cacheKey, entry);
      return entry;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  const err = new Error(`container ${id} does not exist in ${dir}`) as NodeJS.ErrnoException;
  err.code = 'ENOENT';
  throw err;
}

function forget(req: ForgetRequest): CodecReply {
  const cacheKey = `${req.dir}\0${req.container}`;
  if (fds.has(cacheKey)) closeFile(cacheKey);
  return { id: req.id, block: new Uint8Array(0), bounds: new Uint32Array(1) };
}

function unlinked(fd: number): boolean {
  return fstatSync(fd).nlink === 0;
}

function closeFile(cacheKey: string): void {
  closeSync(fds.get(cacheKey)!.fd);
  fds.delete(cacheKey);
}

/** Lets go of files deleted since they were opened, so that their space is freed. */
function closeUnlinked(): void {
  for (const [key, f] of fds) if (unlinked(f.fd)) closeFile(key);
}

function readFullySync(fd: number, buf: Buffer, length: number, position: number): number {
  let got = 0;
  while (got < length) {
    const n = readSync(fd, buf, got, length - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

function fingerprintAt(fps: Uint8Array, j: number): Buffer {
  return Buffer.from(fps.buffer, fps.byteOffset + j * 16, 16);
}

/** One transferable block holding every output, with its bounds. */
function pack(id: number, outs: Buffer[]): CodecReply {
  const bounds = new Uint32Array(outs.length + 1);
  for (let j = 0; j < outs.length; j++) bounds[j + 1] = bounds[j] + outs[j].length;
  const block = new Uint8Array(new ArrayBuffer(bounds[outs.length]));
  for (let j = 0; j < outs.length; j++) block.set(outs[j], bounds[j]);
  return { id, block, bounds };
}
