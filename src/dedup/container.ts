/**
 * Containers: append-only files of about 8 MiB holding encrypted chunk frames in stream order.
 * The byte layout is specified in docs/FORMATS.md ("Container file").
 *
 * Guarantees:
 * - Every byte of a container is authenticated: the plaintext file header and trailer are
 *   checked field by field and bound into the GCM associated data; every frame and the footer
 *   carry an AES-256-GCM tag under the container's data key. A flipped bit anywhere makes the
 *   affected chunk read (or footer load) throw IntegrityError; wrong bytes are never returned.
 * - A frame is self-describing: its plaintext header gives its lengths and sequence number, and
 *   the fingerprint is inside the ciphertext, so recovery and scrub need no index, and
 *   fingerprints never appear in plaintext on disk.
 * - Nonces never repeat under a container's key: a frame's nonce is derived from its sequence
 *   number, the writer only accepts frames in sequence order, and a container id (and so its
 *   key) is used by one writer only; the footer's nonce is in a separate domain.
 * - `ContainerWriter.flush()` makes everything appended before it durable; `seal()` makes the
 *   container immutable under its sealed name. After a crash `recoverContainer` keeps the valid
 *   frames of an unsealed container (each one decrypted and checked), truncates the rest and
 *   seals it.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { mkdir, open, readdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { fsyncDir } from '../crypto/fsutil.js';
import { framesAddon, type FramesAddon } from './frames-native.js';

// Required, not imported: see fingerprint.ts (the CommonJS export scan in every worker).
const { compress, uncompressSync } = createRequire(import.meta.url)('lz4-napi') as typeof import('lz4-napi');

export const CONTAINER_TARGET_SIZE = 8 * 1024 * 1024;
/** Largest raw chunk a frame may hold (a sanity bound for readers and recovery). */
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024;
export const FORMAT_VERSION = 1;
export const HEADER_SIZE = 32;
export const FRAME_HEADER_SIZE = 16;
/** Frame bytes besides the payload: header, encrypted fingerprint, GCM tag. */
export const FRAME_OVERHEAD = FRAME_HEADER_SIZE + 16 + 16;
export const TRAILER_SIZE = 32;
export const FOOTER_ENTRY_SIZE = 28;

const FILE_MAGIC = Buffer.from('VTLCONTR', 'latin1');
const TRAILER_MAGIC = Buffer.from('VTLCTEND', 'latin1');
const FRAME_TYPE = 0x01;
const FLAG_LZ4 = 0x01;
const NONCE_FRAME = 1;
const NONCE_FOOTER = 2;
const TAG = 16;
/** Below this, lz4 cannot shrink a chunk: skip the round trip to the threadpool. */
const MIN_COMPRESS = 16;
/** readMany: read across gaps up to this size, and at most this much per read. */
const COALESCE_GAP = 16 * 1024;
const COALESCE_MAX = 4 * 1024 * 1024;
/** Stay below IOV_MAX (1024 on Linux) per writev. */
const WRITEV_MAX = 512;

export class IntegrityError extends Error {
  override readonly name = 'IntegrityError';
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly reason: string,
    readonly container?: number,
  ) {
    super(
      `container ${container === undefined ? '' : `${hex8(container)} `}(${file}) is damaged at byte ${offset}: ` +
        `${reason}. Run 'vtl scrub' to find all damage, and restore the container from a replica if one exists`,
    );
  }
}

export interface ChunkRef {
  container: number;
  offset: number;
  frameLength: number;
  rawLength: number;
}

export interface FooterEntry extends ChunkRef {
  fingerprint: Buffer;
}

export interface Where {
  file: string;
  offset: number;
}

const hex8 = (id: number) => id.toString(16).padStart(8, '0');

function checkId(id: number): void {
  if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) {
    throw new RangeError(`container id must be an integer in 0..2^32-1, got ${id}`);
  }
}

function checkKey(key: Buffer): void {
  if (key.length !== 32) throw new RangeError(`container data key must be 32 bytes, got ${key.length}`);
}

function checkFingerprint(fp: Buffer): void {
  if (fp.length !== 16) throw new RangeError(`fingerprint must be 16 bytes, got ${fp.length}`);
}

export function containerPath(dir: string, id: number, sealed: boolean): string {
  checkId(id);
  return join(dir, `${hex8(id)}.${sealed ? 'ctr' : 'open'}`);
}

function fileHeader(id: number): Buffer {
  const h = Buffer.alloc(HEADER_SIZE);
  writeFileHeader(h, 0, id);
  return h;
}

function writeFileHeader(buf: Buffer, at: number, id: number): void {
  FILE_MAGIC.copy(buf, at);
  buf.writeUInt16LE(FORMAT_VERSION, at + 8);
  buf.writeUInt16LE(HEADER_SIZE, at + 10);
  buf.writeUInt32LE(id, at + 12);
  buf.fill(0, at + 16, at + HEADER_SIZE);
}

/** Per-thread scratch for nonces and associated data; only used synchronously. */
const scratchNonce = Buffer.alloc(12);
const scratchAad = Buffer.alloc(HEADER_SIZE + TRAILER_SIZE);

function nonce(kind: number, counter: number): Buffer {
  scratchNonce.writeUInt32LE(kind, 0);
  scratchNonce.writeUInt32LE(counter >>> 0, 4);
  scratchNonce.writeUInt32LE(Math.floor(counter / 2 ** 32), 8);
  return scratchNonce;
}

/** Associated data: the file header (rebuilt from the expected id) || `tail`. */
function aad(id: number, tail: Buffer): Buffer {
  writeFileHeader(scratchAad, 0, id);
  tail.copy(scratchAad, HEADER_SIZE);
  return scratchAad.subarray(0, HEADER_SIZE + tail.length);
}

/**
 * A frame codec: seals a chunk into a frame and opens it again, in the layout of
 * docs/FORMATS.md 2.2. Two implementations write and read the same frames: the C one
 * (native/src/frames.c, liblz4 + OpenSSL) and the TypeScript one (lz4-napi + node:crypto), used
 * when the C one does not load. Both run the conformance suite in test/dedup/container.test.ts.
 */
export interface FrameCodec {
  readonly name: 'native' | 'typescript';
  seal(key: Buffer, containerId: number, seq: number, fingerprint: Buffer, raw: Uint8Array): Promise<Buffer>;
  /** Throws IntegrityError (at `where`) on any damage. */
  open(key: Buffer, containerId: number, fingerprint: Buffer, frame: Buffer, where: Where): Buffer;
}

/** The frame codecs that work in this process, the one vtl uses first. */
export function frameCodecs(): FrameCodec[] {
  const native = framesAddon();
  return native ? [nativeCodec(native), typescriptCodec] : [typescriptCodec];
}

let activeCodec: FrameCodec | undefined;

/**
 * Compress (lz4) + encrypt one chunk into a frame, with the C codec when it loads.
 * Pure: usable from worker threads.
 */
export async function sealChunk(
  key: Buffer,
  containerId: number,
  seq: number,
  fingerprint: Buffer,
  raw: Uint8Array,
): Promise<Buffer> {
  checkKey(key);
  checkId(containerId);
  checkFingerprint(fingerprint);
  if (!Number.isInteger(seq) || seq < 0 || seq > 0xffffffff) throw new RangeError(`bad frame sequence number ${seq}`);
  if (raw.length > MAX_CHUNK_SIZE) throw new RangeError(`chunk of ${raw.length} bytes exceeds ${MAX_CHUNK_SIZE}`);
  activeCodec ??= frameCodecs()[0];
  return activeCodec.seal(key, containerId, seq, fingerprint, raw);
}

const typescriptCodec: FrameCodec = {
  name: 'typescript',
  async seal(key, containerId, seq, fingerprint, raw) {
    let payload: Uint8Array = raw;
    let flags = 0;
    if (raw.length >= MIN_COMPRESS) {
      // Async compress: lz4-napi's compressSync leaks every output buffer.
      const packed = await compress(raw);
      // lz4-napi prefixes the block with its u32 LE raw size; the frame header has it already.
      if (packed.length - 4 < raw.length) {
        payload = packed.subarray(4);
        flags = FLAG_LZ4;
      }
    }
    const p = payload.length;
    // Own ArrayBuffer (not the shared pool) so a worker thread can transfer the frame.
    const frame = Buffer.allocUnsafeSlow(FRAME_OVERHEAD + p);
    frame.writeUInt32LE(seq, 0);
    frame.writeUInt32LE(p, 4);
    frame.writeUInt32LE(raw.length, 8);
    frame[12] = flags;
    frame[13] = FRAME_TYPE;
    frame.writeUInt16LE(0, 14);
    const cipher = createCipheriv('aes-256-gcm', key, nonce(NONCE_FRAME, seq), { authTagLength: TAG });
    cipher.setAAD(aad(containerId, frame.subarray(0, FRAME_HEADER_SIZE)));
    cipher.update(fingerprint).copy(frame, FRAME_HEADER_SIZE);
    cipher.update(payload).copy(frame, FRAME_HEADER_SIZE + 16);
    cipher.final();
    cipher.getAuthTag().copy(frame, FRAME_HEADER_SIZE + 16 + p);
    return frame;
  },
  open(key, containerId, fingerprint, frame, where) {
    const fail = (reason: string) => new IntegrityError(where.file, where.offset, reason, containerId);
    const { h, plain } = decryptFrame(key, containerId, frame, where);
    if (!plain.subarray(0, 16).equals(fingerprint)) throw fail('the frame holds a different chunk (fingerprint mismatch)');
    return decodePayload(h, plain, fail);
  },
};

/** The C codec one frame at a time (the codec workers call it a batch at a time). */
function nativeCodec(addon: FramesAddon): FrameCodec {
  return {
    name: 'native',
    async seal(key, containerId, seq, fingerprint, raw) {
      const out = new Uint8Array(raw.length + FRAME_OVERHEAD);
      const used = addon.sealFrames(key, Uint32Array.of(containerId), Uint32Array.of(seq), fingerprint, raw, Uint32Array.of(0), Uint32Array.of(raw.length), out, new Uint32Array(2));
      // An exact copy in its own ArrayBuffer, so a worker thread can transfer the frame.
      return Buffer.from(out.slice(0, used).buffer);
    },
    open(key, containerId, fingerprint, frame, where) {
      const fail = (reason: string) => new IntegrityError(where.file, where.offset, reason, containerId);
      // The header's own checks come first, as in the TypeScript codec; they give the length.
      if (frame.length < FRAME_OVERHEAD) throw fail('frame too short');
      const h = parseFrameHeader(frame, 0);
      if (typeof h === 'string') throw fail(h);
      const out = Buffer.allocUnsafe(h.rawLength);
      const bad = addon.openFrames(key, containerId, fingerprint, frame, Uint32Array.of(0), Uint32Array.of(frame.length), Uint32Array.of(h.rawLength), out, Uint32Array.of(0));
      if (bad) throw fail(bad.reason);
      return out;
    },
  };
}

interface FrameHeader {
  seq: number;
  payloadLength: number;
  rawLength: number;
  lz4: boolean;
}

/** Checks a frame header's fields; returns a reason string when they are impossible. */
function parseFrameHeader(buf: Buffer, at: number): FrameHeader | string {
  const payloadLength = buf.readUInt32LE(at + 4);
  const rawLength = buf.readUInt32LE(at + 8);
  const flags = buf[at + 12];
  if (buf[at + 13] !== FRAME_TYPE || buf.readUInt16LE(at + 14) !== 0) return 'bad frame header (type or reserved bits)';
  if (flags !== 0 && flags !== FLAG_LZ4) return 'bad frame header (unknown flags)';
  if (rawLength > MAX_CHUNK_SIZE) return 'bad frame header (raw length out of range)';
  const lz4 = flags === FLAG_LZ4;
  if (lz4 ? payloadLength >= rawLength || payloadLength === 0 : payloadLength !== rawLength) {
    return 'bad frame header (payload and raw lengths disagree)';
  }
  return { seq: buf.readUInt32LE(at), payloadLength, rawLength, lz4 };
}

/** Verifies and decrypts a frame; returns its header and plaintext (fingerprint || payload). */
function decryptFrame(key: Buffer, id: number, frame: Buffer, where: Where): { h: FrameHeader; plain: Buffer } {
  const fail = (reason: string) => new IntegrityError(where.file, where.offset, reason, id);
  if (frame.length < FRAME_OVERHEAD) throw fail('frame too short');
  const h = parseFrameHeader(frame, 0);
  if (typeof h === 'string') throw fail(h);
  if (FRAME_OVERHEAD + h.payloadLength !== frame.length) throw fail('frame length disagrees with its header');
  const decipher = createDecipheriv('aes-256-gcm', key, nonce(NONCE_FRAME, h.seq), { authTagLength: TAG });
  decipher.setAAD(aad(id, frame.subarray(0, FRAME_HEADER_SIZE)));
  decipher.setAuthTag(frame.subarray(frame.length - TAG));
  const plain = decipher.update(frame.subarray(FRAME_HEADER_SIZE, frame.length - TAG));
  try {
    decipher.final();
  } catch {
    throw fail('authentication failed (GCM tag mismatch)');
  }
  return { h, plain };
}

/** The raw chunk from an authenticated plaintext (fingerprint || payload). */
function decodePayload(h: FrameHeader, plain: Buffer, fail: (r: string) => IntegrityError): Buffer {
  if (!h.lz4) return plain.subarray(16);
  // Restore lz4-napi's size prefix in place of the (already checked) fingerprint's tail.
  plain.writeUInt32LE(h.rawLength, 12);
  let out: Buffer;
  try {
    out = uncompressSync(plain.subarray(12));
  } catch {
    throw fail('lz4 payload does not decompress');
  }
  if (out.length !== h.rawLength) throw fail('lz4 payload decompresses to the wrong length');
  return out;
}

/**
 * Verify + decrypt + decompress one frame, with the C codec when it loads; checks the
 * fingerprint inside equals `fingerprint`.
 */
export function openChunk(key: Buffer, containerId: number, fingerprint: Buffer, frame: Buffer, where?: Where): Buffer {
  checkKey(key);
  checkFingerprint(fingerprint);
  activeCodec ??= frameCodecs()[0];
  return activeCodec.open(key, containerId, fingerprint, frame, where ?? { file: 'in memory', offset: 0 });
}

function parseEntries(id: number, entries: Buffer, count: number): FooterEntry[] {
  const out = new Array<FooterEntry>(count);
  for (let i = 0, at = 0; i < count; i++, at += FOOTER_ENTRY_SIZE) {
    out[i] = {
      container: id,
      fingerprint: entries.subarray(at, at + 16),
      offset: entries.readUInt32LE(at + 16),
      frameLength: entries.readUInt32LE(at + 20),
      rawLength: entries.readUInt32LE(at + 24),
    };
  }
  return out;
}

function checkHeader(buf: Buffer, id: number, file: string): void {
  const fail = (reason: string) => new IntegrityError(file, 0, reason, id);
  if (buf.length < HEADER_SIZE) throw fail('file shorter than its header');
  if (!buf.subarray(0, 8).equals(FILE_MAGIC)) throw fail('bad magic (not a vtl container)');
  if (buf.readUInt16LE(8) !== FORMAT_VERSION) throw fail(`unsupported container format version ${buf.readUInt16LE(8)}`);
  if (!buf.subarray(0, HEADER_SIZE).equals(fileHeader(id))) throw fail('file header does not match this container id');
}

async function readFully(fh: FileHandle, buf: Buffer, position: number): Promise<number> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

/** A new container's `.open` file; refuses an id that already has a file (ids are never reused). */
async function createFile(dir: string, id: number): Promise<FileHandle> {
  await mkdir(dir, { recursive: true });
  if (await exists(containerPath(dir, id, true))) {
    throw new Error(`container ${hex8(id)} already exists in ${dir}; container ids are never reused`);
  }
  try {
    return await open(containerPath(dir, id, false), 'wx+', 0o644);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new Error(`container ${hex8(id)} already exists in ${dir} (unsealed); container ids are never reused`);
    }
    throw err;
  }
}

/** Whether a file exists; errors other than ENOENT (permissions, I/O) are thrown, not hidden. */
export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

type WriterState = 'open' | 'sealed' | 'closed' | 'failed';

export class ContainerWriter {
  readonly id: number;
  readonly #dir: string;
  readonly #key: Buffer;
  /** The open file; unset until a deferred writer's first write creates it. */
  #fh: FileHandle | undefined;
  #createFile: (() => Promise<FileHandle>) | undefined;
  #path: string;
  #pending: Buffer[] = [];
  /** Frames appended but not yet written, by offset: served by `read` from memory. */
  readonly #unwritten = new Map<number, Buffer>();
  #size: number;
  #written: number;
  #synced: number;
  #count: number;
  #entries: Buffer;
  #state: WriterState = 'open';
  #failure: unknown;
  #io: Promise<unknown> = Promise.resolve();
  #dirSynced: boolean;

  private constructor(dir: string, id: number, key: Buffer, file: FileHandle | (() => Promise<FileHandle>), size: number, entries: Buffer, count: number, fresh: boolean) {
    this.#dir = dir;
    this.id = id;
    this.#key = key;
    if (typeof file === 'function') this.#createFile = file;
    else this.#fh = file;
    this.#path = containerPath(dir, id, false);
    this.#size = size;
    this.#written = fresh ? 0 : size;
    this.#synced = this.#written;
    this.#entries = entries;
    this.#count = count;
    this.#dirSynced = !fresh;
  }

  /** Creates `<id>.open`; refuses an id that already has a file (ids are never reused). */
  static async create(dir: string, id: number, key: Buffer): Promise<ContainerWriter> {
    checkId(id);
    checkKey(key);
    return ContainerWriter.#fresh(dir, id, key, await createFile(dir, id));
  }

  /**
   * Like `create`, but the file is created by the first flush, seal or close, once `ready`
   * has resolved (the store's durable record of the id and key): appending never waits for
   * either. Until then frames are in memory only, as appended frames are anyway; a `ready`
   * that fails fails that first write.
   */
  static deferred(dir: string, id: number, key: Buffer, ready: Promise<unknown>): ContainerWriter {
    checkId(id);
    checkKey(key);
    ready.catch(() => undefined); // it fails the first write instead, if one comes
    return ContainerWriter.#fresh(dir, id, key, async () => {
      await ready;
      return createFile(dir, id);
    });
  }

  static #fresh(dir: string, id: number, key: Buffer, file: FileHandle | (() => Promise<FileHandle>)): ContainerWriter {
    const w = new ContainerWriter(dir, id, key, file, HEADER_SIZE, Buffer.allocUnsafe(FOOTER_ENTRY_SIZE * 512), 0, true);
    w.#pending.push(fileHeader(id));
    return w;
  }

  /**
   * Recovery only: seals an unsealed file whose first `size` bytes are verified frames. It never
   * appends: seqs past the crash point may have been used by frames that were cut off.
   */
  static sealRecovered(dir: string, id: number, key: Buffer, fh: FileHandle, size: number, entries: FooterEntry[]): Promise<FooterEntry[]> {
    const buf = Buffer.allocUnsafe(Math.max(1, entries.length) * FOOTER_ENTRY_SIZE);
    for (let i = 0; i < entries.length; i++) writeEntry(buf, i, entries[i].fingerprint, entries[i]);
    return new ContainerWriter(dir, id, key, fh, size, buf, entries.length, false).seal();
  }

  /** Bytes so far, including the header and frames not yet flushed. */
  get size(): number {
    return this.#size;
  }
  /** Frames so far. */
  get count(): number {
    return this.#count;
  }
  /** The seq the next appended frame must carry (peek; frames are appended in seq order). */
  nextSeq(): number {
    return this.#count;
  }

  /** Buffers a sealed frame in memory (no I/O); durable after the next `flush()`. */
  append(fingerprint: Buffer, frame: Buffer, rawLength: number): ChunkRef {
    this.#checkOpen();
    checkFingerprint(fingerprint);
    if (frame.length < FRAME_OVERHEAD) throw new RangeError('not a container frame (too short)');
    const h = parseFrameHeader(frame, 0);
    if (typeof h === 'string') throw new RangeError(`not a container frame: ${h}`);
    if (h.seq !== this.#count) {
      throw new RangeError(`frame carries seq ${h.seq} but container ${hex8(this.id)} expects seq ${this.#count} next`);
    }
    if (h.rawLength !== rawLength || FRAME_OVERHEAD + h.payloadLength !== frame.length) {
      throw new RangeError('frame lengths disagree with its header or with rawLength');
    }
    const ref: ChunkRef = { container: this.id, offset: this.#size, frameLength: frame.length, rawLength };
    if (ref.offset + frame.length > 0xffffffff) throw new RangeError('container would exceed 4 GiB');
    if ((this.#count + 1) * FOOTER_ENTRY_SIZE > this.#entries.length) {
      const grown = Buffer.allocUnsafe(this.#entries.length * 2);
      this.#entries.copy(grown, 0, 0, this.#count * FOOTER_ENTRY_SIZE);
      this.#entries = grown;
    }
    writeEntry(this.#entries, this.#count, fingerprint, ref);
    this.#pending.push(frame);
    this.#unwritten.set(ref.offset, frame);
    this.#size += frame.length;
    this.#count++;
    return ref;
  }

  /** Reads back a chunk of this container, from memory if it has not been written yet. */
  async read(ref: ChunkRef, fingerprint: Buffer): Promise<Buffer> {
    if (this.#state !== 'open') {
      throw new Error(`container ${hex8(this.id)} writer is ${this.#state}; read it with a ContainerReader`);
    }
    const frame = this.#unwritten.get(ref.offset);
    const where = { file: this.#path, offset: ref.offset };
    if (frame && frame.length === ref.frameLength && ref.container === this.id) {
      return openChunk(this.#key, this.id, fingerprint, frame, where);
    }
    if (ref.container !== this.id || ref.offset < HEADER_SIZE || ref.offset + ref.frameLength > this.#size) {
      throw new RangeError(`chunk reference outside container ${hex8(this.id)}`);
    }
    // Written frames are on disk (positioned reads do not disturb the writer's positioned writes).
    const buf = Buffer.allocUnsafe(ref.frameLength);
    if ((await readFully(this.#fh!, buf, ref.offset)) !== buf.length) {
      throw new IntegrityError(this.#path, ref.offset, 'frame extends past the end of the file', this.id);
    }
    return openChunk(this.#key, this.id, fingerprint, buf, where);
  }

  /** Writes everything appended so far, then fdatasync: durable when this resolves. */
  flush(): Promise<void> {
    return this.#serial(() => this.#flushNow());
  }

  /** Flush, footer + trailer, fsync, rename `.open` to the sealed name, fsync the directory. */
  seal(): Promise<FooterEntry[]> {
    return this.#serial(async () => {
      await this.#flushNow();
      const tail = this.#footerBytes();
      await this.#writeAll(tail, this.#written);
      await this.#fh!.sync();
      await this.#fh!.close();
      const sealedPath = containerPath(this.#dir, this.id, true);
      await rename(this.#path, sealedPath);
      this.#path = sealedPath;
      await fsyncDir(this.#dir);
      this.#state = 'sealed';
      const entries = this.#entries.subarray(0, this.#count * FOOTER_ENTRY_SIZE);
      return parseEntries(this.id, entries, this.#count);
    });
  }

  /** Flush and close without sealing: the file stays `.open` for `recoverContainer`. */
  close(): Promise<void> {
    return this.#serial(async () => {
      await this.#flushNow();
      await this.#fh!.close();
      this.#state = 'closed';
    });
  }

  /** Close and delete (never used for a container the index references). */
  async abandon(): Promise<void> {
    await this.#io.catch(() => {});
    if (this.#state === 'sealed') throw new Error(`container ${hex8(this.id)} is sealed; it cannot be abandoned`);
    if (this.#state !== 'closed') await this.#fh?.close().catch(() => {});
    this.#state = 'closed';
    this.#pending = [];
    this.#unwritten.clear();
    await unlink(this.#path).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }

  #checkOpen(): void {
    if (this.#state === 'failed') {
      throw new Error(`container ${hex8(this.id)} writer failed earlier: ${String(this.#failure)}`);
    }
    if (this.#state !== 'open') throw new Error(`container ${hex8(this.id)} is ${this.#state}; no more writes`);
  }

  /** Runs I/O one operation at a time; any failure poisons the writer (the file needs recovery). */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#io.then(() => {
      this.#checkOpen();
      return fn().catch((err) => {
        this.#state = 'failed';
        this.#failure = err;
        throw err;
      });
    });
    this.#io = run.catch(() => {});
    return run;
  }

  /** The file, created first for a deferred writer (flushNow runs before every other use). */
  async #file(): Promise<FileHandle> {
    if (!this.#fh) {
      this.#fh = await this.#createFile!();
      this.#createFile = undefined;
    }
    return this.#fh;
  }

  async #flushNow(): Promise<void> {
    const fh = await this.#file();
    const bufs = this.#pending;
    this.#pending = [];
    let pos = this.#written;
    for (let i = 0; i < bufs.length; i += WRITEV_MAX) {
      pos = await this.#writeAll(bufs.slice(i, i + WRITEV_MAX), pos);
    }
    for (let i = 0, at = this.#written; i < bufs.length; at += bufs[i].length, i++) this.#unwritten.delete(at);
    this.#written = pos;
    if (this.#synced !== this.#written) {
      await fh.datasync();
      this.#synced = this.#written;
    }
    if (!this.#dirSynced) {
      await fsyncDir(this.#dir); // the new file's directory entry must survive a crash too
      this.#dirSynced = true;
    }
  }

  /** Writes all of `bufs` at `pos`; a short write (the disk filling up) goes on until write fails. */
  async #writeAll(bufs: Buffer[], pos: number): Promise<number> {
    const total = bufs.reduce((n, b) => n + b.length, 0);
    const fh = this.#fh!;
    let done = (await fh.writev(bufs, pos)).bytesWritten;
    while (done < total) {
      const rest = Buffer.concat(bufs).subarray(done);
      const { bytesWritten } = await fh.write(rest, 0, rest.length, pos + done);
      if (bytesWritten === 0) throw new Error(`short write to ${this.#path} (${done} of ${total} bytes)`);
      done += bytesWritten;
    }
    return pos + total;
  }

  /** Encrypted footer (entries + tag) followed by the plaintext trailer. */
  #footerBytes(): Buffer[] {
    const n = this.#count;
    const footerLength = n * FOOTER_ENTRY_SIZE + TAG;
    const trailer = Buffer.alloc(TRAILER_SIZE);
    trailer.writeBigUInt64LE(BigInt(this.#written), 0);
    trailer.writeUInt32LE(footerLength, 8);
    trailer.writeUInt32LE(n, 12);
    trailer.writeUInt32LE(this.id, 16);
    trailer.writeUInt16LE(FORMAT_VERSION, 20);
    TRAILER_MAGIC.copy(trailer, 24);
    const cipher = createCipheriv('aes-256-gcm', this.#key, nonce(NONCE_FOOTER, n), { authTagLength: TAG });
    cipher.setAAD(aad(this.id, trailer));
    const body = cipher.update(this.#entries.subarray(0, n * FOOTER_ENTRY_SIZE));
    cipher.final();
    return [body, cipher.getAuthTag(), trailer];
  }
}

/** Footer entry i: the fingerprint, then where the frame lies (no object made per chunk). */
function writeEntry(buf: Buffer, i: number, fingerprint: Buffer, e: ChunkRef): void {
  const at = i * FOOTER_ENTRY_SIZE;
  fingerprint.copy(buf, at);
  buf.writeUInt32LE(e.offset, at + 16);
  buf.writeUInt32LE(e.frameLength, at + 20);
  buf.writeUInt32LE(e.rawLength, at + 24);
}

export class ContainerReader {
  readonly id: number;
  readonly #dir: string;
  readonly #key: Buffer;
  #fh: FileHandle;
  readonly #retired: FileHandle[] = [];
  #path: string;
  #sealed: boolean;

  private constructor(dir: string, id: number, key: Buffer, fh: FileHandle, path: string, sealed: boolean) {
    this.#dir = dir;
    this.id = id;
    this.#key = key;
    this.#fh = fh;
    this.#path = path;
    this.#sealed = sealed;
  }

  /** Opens the sealed or unsealed (`.open`) file; ENOENT (with its code) when neither exists. */
  static async open(dir: string, id: number, key: Buffer): Promise<ContainerReader> {
    checkId(id);
    checkKey(key);
    // Sealed first; then unsealed; then sealed again in case a writer renamed it in between.
    for (const sealed of [true, false, true]) {
      const path = containerPath(dir, id, sealed);
      let fh: FileHandle;
      try {
        fh = await open(path, 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      try {
        const head = Buffer.alloc(HEADER_SIZE);
        await readFully(fh, head, 0);
        checkHeader(head, id, path);
      } catch (err) {
        await fh.close();
        throw err;
      }
      return new ContainerReader(dir, id, key, fh, path, sealed);
    }
    const err = new Error(`container ${hex8(id)} does not exist in ${dir}`) as NodeJS.ErrnoException;
    err.code = 'ENOENT';
    throw err;
  }

  get sealed(): boolean {
    return this.#sealed;
  }
  get path(): string {
    return this.#path;
  }

  /** Raw chunk bytes; IntegrityError if the frame is damaged or holds another chunk. */
  async read(ref: ChunkRef, fingerprint: Buffer): Promise<Buffer> {
    this.#checkRef(ref);
    const buf = Buffer.allocUnsafe(ref.frameLength);
    if ((await readFully(this.#fh, buf, ref.offset)) !== buf.length) {
      throw new IntegrityError(this.#path, ref.offset, 'frame extends past the end of the file (truncated)', this.id);
    }
    return this.#open(ref, fingerprint, buf);
  }

  /** Like `read` for many chunks; nearby frames are fetched with few large positioned reads. */
  async readMany(refs: Array<{ ref: ChunkRef; fingerprint: Buffer }>): Promise<Buffer[]> {
    const frames = await this.readFrames(refs.map((r) => r.ref));
    return frames.map((frame, k) => this.#open(refs[k].ref, refs[k].fingerprint, frame));
  }

  /**
   * The still-sealed frames of many chunks, for decoding elsewhere (a worker thread) with
   * `openChunk`: coalesced reads, and the raw length checked against the frame header.
   */
  async readFrames(refs: ChunkRef[]): Promise<Buffer[]> {
    refs.forEach((ref) => this.#checkRef(ref));
    const order = refs.map((_, i) => i).sort((a, b) => refs[a].offset - refs[b].offset);
    const out = new Array<Buffer>(refs.length);
    const reads: Promise<void>[] = [];
    for (let i = 0; i < order.length; ) {
      const start = refs[order[i]].offset;
      let end = start + refs[order[i]].frameLength;
      let j = i + 1;
      for (; j < order.length; j++) {
        const r = refs[order[j]];
        const next = Math.max(end, r.offset + r.frameLength);
        if (r.offset > end + COALESCE_GAP || next - start > COALESCE_MAX) break;
        end = next;
      }
      const group = order.slice(i, j);
      reads.push(this.#readGroup(start, end, group, refs, out));
      i = j;
    }
    await Promise.all(reads);
    return out;
  }

  /** The footer's entries (sealed containers only); IntegrityError if footer or trailer is damaged. */
  async footer(): Promise<FooterEntry[]> {
    if (!this.#sealed) await this.#reopenIfSealed();
    const size = (await this.#fh.stat()).size;
    const fail = (at: number, reason: string) => new IntegrityError(this.#path, at, reason, this.id);
    if (size < HEADER_SIZE + TAG + TRAILER_SIZE) throw fail(0, 'file too short to hold a footer');
    const trailer = Buffer.alloc(TRAILER_SIZE);
    const tAt = size - TRAILER_SIZE;
    await readFully(this.#fh, trailer, tAt);
    if (!trailer.subarray(24).equals(TRAILER_MAGIC)) throw fail(tAt, 'bad trailer magic (container not sealed or damaged)');
    const footerAt = Number(trailer.readBigUInt64LE(0));
    const footerLength = trailer.readUInt32LE(8);
    const n = trailer.readUInt32LE(12);
    if (
      trailer.readUInt32LE(16) !== this.id ||
      trailer.readUInt16LE(20) !== FORMAT_VERSION ||
      trailer.readUInt16LE(22) !== 0 ||
      footerLength !== n * FOOTER_ENTRY_SIZE + TAG ||
      footerAt < HEADER_SIZE ||
      footerAt + footerLength !== tAt
    ) {
      throw fail(tAt, 'trailer fields are inconsistent');
    }
    const body = Buffer.allocUnsafe(footerLength);
    await readFully(this.#fh, body, footerAt);
    const decipher = createDecipheriv('aes-256-gcm', this.#key, nonce(NONCE_FOOTER, n), { authTagLength: TAG });
    decipher.setAAD(aad(this.id, trailer));
    decipher.setAuthTag(body.subarray(footerLength - TAG));
    const plain = decipher.update(body.subarray(0, footerLength - TAG));
    try {
      decipher.final();
    } catch {
      throw fail(footerAt, 'footer authentication failed (GCM tag mismatch)');
    }
    const entries = parseEntries(this.id, plain, n);
    let at = HEADER_SIZE;
    for (const e of entries) {
      if (e.offset !== at || e.frameLength < FRAME_OVERHEAD) throw fail(footerAt, 'footer entries are not contiguous frames');
      at += e.frameLength;
    }
    if (at !== footerAt) throw fail(footerAt, 'footer entries do not end at the footer');
    return entries;
  }

  async close(): Promise<void> {
    await Promise.all([this.#fh, ...this.#retired].map((fh) => fh.close()));
  }

  #checkRef(ref: ChunkRef): void {
    if (ref.container !== this.id) throw new RangeError(`chunk reference for container ${ref.container} given to reader of ${this.id}`);
    if (!Number.isInteger(ref.offset) || ref.offset < HEADER_SIZE || !Number.isInteger(ref.frameLength) || ref.frameLength < FRAME_OVERHEAD) {
      throw new RangeError(`bad chunk reference (offset ${ref.offset}, frame length ${ref.frameLength})`);
    }
  }

  #open(ref: ChunkRef, fingerprint: Buffer, frame: Buffer): Buffer {
    this.#checkRawLength(ref, frame);
    return openChunk(this.#key, this.id, fingerprint, frame, { file: this.#path, offset: ref.offset });
  }

  /** The index's lengths must agree with the frame's own header (checked before decrypting). */
  #checkRawLength(ref: ChunkRef, frame: Buffer): void {
    if (frame.readUInt32LE(8) !== ref.rawLength) {
      throw new IntegrityError(this.#path, ref.offset, 'frame raw length disagrees with the index', this.id);
    }
  }

  async #readGroup(start: number, end: number, group: number[], refs: ChunkRef[], out: Buffer[]): Promise<void> {
    const buf = Buffer.allocUnsafe(end - start);
    const got = await readFully(this.#fh, buf, start);
    for (const k of group) {
      const ref = refs[k];
      const from = ref.offset - start;
      if (from + ref.frameLength > got) {
        throw new IntegrityError(this.#path, ref.offset, 'frame extends past the end of the file (truncated)', this.id);
      }
      out[k] = buf.subarray(from, from + ref.frameLength);
      this.#checkRawLength(ref, out[k]);
    }
  }

  /** A reader opened on `.open` follows the file once its writer has sealed and renamed it. */
  async #reopenIfSealed(): Promise<void> {
    const sealedPath = containerPath(this.#dir, this.id, true);
    let fh: FileHandle;
    try {
      fh = await open(sealedPath, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new Error(`container ${hex8(this.id)} is not sealed; it has no footer yet`);
      }
      throw err;
    }
    // Reads may still be in flight on the old handle (same inode): close it in close().
    this.#retired.push(this.#fh);
    this.#fh = fh;
    this.#path = sealedPath;
    this.#sealed = true;
  }
}

/**
 * After a crash: an unsealed container keeps its valid frames in order (each one decrypted and
 * checked), is truncated after the last valid one, then sealed. Returns the footer entries.
 * Idempotent: a container that is already sealed just returns its footer.
 */
export async function recoverContainer(dir: string, id: number, key: Buffer): Promise<FooterEntry[]> {
  checkId(id);
  checkKey(key);
  const openPath = containerPath(dir, id, false);
  const sealedPath = containerPath(dir, id, true);
  const [hasOpen, hasSealed] = await Promise.all([exists(openPath), exists(sealedPath)]);
  if (hasOpen && hasSealed) {
    throw new Error(`container ${hex8(id)} exists both sealed and unsealed in ${dir}; keep the sealed one and remove ${openPath}`);
  }
  if (!hasOpen) {
    const reader = await ContainerReader.open(dir, id, key);
    try {
      return await reader.footer();
    } finally {
      await reader.close();
    }
  }
  const fh = await open(openPath, 'r+');
  try {
    const data = await fh.readFile();
    const expected = fileHeader(id);
    let end: number;
    let entries: FooterEntry[];
    if (data.length < HEADER_SIZE && data.equals(expected.subarray(0, data.length))) {
      // Torn while writing the header: nothing else can have been written.
      await fh.truncate(0);
      await fh.write(expected, 0, HEADER_SIZE, 0);
      [end, entries] = [HEADER_SIZE, []];
    } else {
      checkHeader(data, id, openPath);
      [end, entries] = scanFrames(data, id, key, openPath);
      await fh.truncate(end);
    }
    await fh.datasync();
    return await ContainerWriter.sealRecovered(dir, id, key, fh, end, entries);
  } catch (err) {
    await fh.close().catch(() => {});
    throw err;
  }
}

/** Walks frames from the header on; stops at the first one that is torn or fails to verify. */
function scanFrames(data: Buffer, id: number, key: Buffer, file: string): [number, FooterEntry[]] {
  const entries: FooterEntry[] = [];
  let at = HEADER_SIZE;
  while (at + FRAME_OVERHEAD <= data.length) {
    const len = FRAME_OVERHEAD + data.readUInt32LE(at + 4);
    if (at + len > data.length) break;
    let frame: { h: FrameHeader; plain: Buffer };
    try {
      frame = decryptFrame(key, id, data.subarray(at, at + len), { file, offset: at });
      if (frame.h.seq !== entries.length) break;
    } catch (err) {
      if (err instanceof IntegrityError) break;
      throw err;
    }
    // Copy first: decoding an lz4 payload reuses the fingerprint's last bytes.
    const fingerprint = Buffer.from(frame.plain.subarray(0, 16));
    try {
      decodePayload(frame.h, frame.plain, (r) => new IntegrityError(file, at, r, id));
    } catch (err) {
      if (err instanceof IntegrityError) break;
      throw err;
    }
    entries.push({ container: id, offset: at, frameLength: len, rawLength: frame.h.rawLength, fingerprint });
    at += len;
  }
  return [at, entries];
}

/** Container files in `dir`, by id (an id can appear twice only after a manual copy). */
export async function listContainers(dir: string): Promise<Array<{ id: number; sealed: boolean }>> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: Array<{ id: number; sealed: boolean }> = [];
  for (const name of names) {
    const m = /^([0-9a-f]{8})\.(ctr|open)$/.exec(name);
    if (m) out.push({ id: parseInt(m[1], 16), sealed: m[2] === 'ctr' });
  }
  return out.sort((a, b) => a.id - b.id || Number(b.sealed) - Number(a.sealed));
}
