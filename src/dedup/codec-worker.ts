/**
 * Worker thread of the codec pool: seals chunks into frames (lz4 + AES-256-GCM), and reads
 * frames from container files and opens them into chunks, so that both cores do this work and
 * not only the event loop. Reading here keeps the frames' bytes off the event loop entirely.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { createChunker, type Chunker } from './chunker.js';
import { FRAME_OVERHEAD, IntegrityError, containerPath, openChunk, sealChunk } from './container.js';
import type { CodecReply, CodecRequest, CutRequest, ReadRequest, SealRequest } from './codec-pool.js';
import { fingerprintBytes, fingerprintKey } from './fingerprint.js';
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

port.on('message', (req: CodecRequest) => {
  handle(req).then(
    (reply) => port.postMessage(reply, [reply.block.buffer as ArrayBuffer]),
    (err: Error & { file?: string; offset?: number; reason?: string; container?: number; code?: string }) =>
      port.postMessage({
        id: req.id,
        error: { name: err.name, message: err.message, code: err.code, file: err.file, offset: err.offset, reason: err.reason, container: err.container },
      }),
  );
});

async function handle(req: CodecRequest): Promise<CodecReply> {
  if (req.op === 'cut') return cut(req);
  if (req.op === 'seal') return native ? sealNative(native, req) : pack(req.id, await seal(req));
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
  const secret = Buffer.from(req.secret);
  const fps = Buffer.from(new ArrayBuffer(cuts.length * 16));
  for (let i = 0, start = 0; i < cuts.length; start = cuts[i++]) {
    fingerprintBytes(fingerprintKey(secret, data.subarray(start, cuts[i])), fps, i * 16);
  }
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
  forEachRun(req, file, (group, at, got) => {
    const m = group.length;
    const offsets = new Uint32Array(m);
    const lengths = new Uint32Array(m);
    const raws = new Uint32Array(m);
    const into = new Uint32Array(m);
    const fps = new Uint8Array(16 * m);
    group.forEach((j, i) => {
      offsets[i] = req.offsets[j] - at;
      lengths[i] = req.lengths[j];
      raws[i] = req.rawLengths[j];
      into[i] = outOffsets[j];
      fps.set(req.fingerprints.subarray(16 * j, 16 * j + 16), 16 * i);
    });
    const bad = codec.openFrames(req.key, req.container, fps, scratch.subarray(0, got), offsets, lengths, raws, out, into);
    if (bad) throw new IntegrityError(file.path, req.offsets[group[bad.index]], bad.reason, req.container);
  });
  return req.target ? { id: req.id, block: new Uint8Array(0), bounds: new Uint32Array(1) } : { id: req.id, block: out, bounds };
}

/**
 * Calls `open` for each run of frames close enough to read with one call: `group` holds their
 * indices in file order, and scratch[0..got) the file's bytes from offset `at` on, which hold
 * every frame of the group (a frame cut short by the file's end is an IntegrityError).
 */
function forEachRun(req: ReadRequest, file: { fd: number; path: string }, open: (group: number[], at: number, got: number) => void): void {
  const n = req.offsets.length;
  const order = Array.from({ length: n }, (_, j) => j).sort((a, b) => req.offsets[a] - req.offsets[b]);
  for (let i = 0; i < n; ) {
    const start = req.offsets[order[i]];
    let end = start + req.lengths[order[i]];
    let k = i + 1;
    while (k < n && req.offsets[order[k]] <= end + COALESCE_GAP) {
      end = Math.max(end, req.offsets[order[k]] + req.lengths[order[k]]);
      k++;
    }
    if (scratch.length < end - start) scratch = Buffer.allocUnsafe(end - start);
    const got = readFullySync(file.fd, scratch, end - start, start);
    const group = order.slice(i, k);
    const cut = group.find((j) => req.offsets[j] - start + req.lengths[j] > got);
    if (cut !== undefined) throw new IntegrityError(file.path, req.offsets[cut], 'frame extends past the end of the file (truncated)', req.container);
    open(group, start, got);
    i = k;
  }
}

function read(req: ReadRequest): Buffer[] {
  const key = Buffer.from(req.key);
  const file = containerFile(req.dir, req.container);
  const out = new Array<Buffer>(req.offsets.length);
  forEachRun(req, file, (group, at) => {
    for (const j of group) {
      const from = req.offsets[j] - at;
      const where = { file: file.path, offset: req.offsets[j] };
      const frame = scratch.subarray(from, from + req.lengths[j]);
      const raw = openChunk(key, req.container, fingerprintAt(req.fingerprints, j), frame, where);
      if (raw.length !== req.rawLengths[j]) throw new IntegrityError(file.path, where.offset, 'frame raw length disagrees with the index', req.container);
      if (req.target) req.target.set(raw, req.targetOffsets![j]);
      else out[j] = raw;
    }
  });
  return out;
}

/** An open descriptor of the container (sealed or not); it stays valid across the seal's rename. */
function containerFile(dir: string, id: number): { fd: number; path: string } {
  const cacheKey = `${dir}\0${id}`;
  const cached = fds.get(cacheKey);
  if (cached) return cached;
  for (const sealed of [true, false, true]) {
    const path = containerPath(dir, id, sealed);
    try {
      const entry = { fd: openSync(path, 'r'), path };
      if (fds.size >= MAX_FDS) {
        const [oldKey, old] = fds.entries().next().value!;
        closeSync(old.fd);
        fds.delete(oldKey);
      }
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
