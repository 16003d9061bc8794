/**
 * A loaded medium: SSC operations over a stream and its tape map (see index.ts for the
 * guarantees and the result conventions).
 *
 * State: `geo` is the end of data as this process sees it; while writing, the runs and marks
 * written since the last sync point are held in `dirty*` and reach LevelDB only inside the
 * stream's sync batch. Every operation other than write, write filemarks and read position
 * first closes the writer (a sync point), so reads and positioning always see synced data.
 */
import { copyBytes, recycleBuffer, takeBuffer } from '../stream/buffers.js';
import type { StreamReader, StreamWriter, Streams, SyncBatch } from '../stream/index.js';
import type { ReadResult, SpaceKind, TapePosition, TapeResult } from './index.js';
import { EMPTY_CHECKSUM, FileChecksum } from './checksum.js';
import { MAX_RECORD } from './media.js';
import { byteIn, marksBefore, type MapStore, type MarkRun, type Run } from './map.js';
import { SENSE, failure, result } from './sense.js';

/** End of data as persisted with each sync point. */
export interface Geometry {
  streamId: string | null;
  eodLba: number;
  eodByte: number;
  filemarks: number;
  /** LBA where the last tape file starts (after the last filemark). */
  tailLba: number;
  /** Checksum of the unterminated last tape file (empty when EOD follows a filemark). */
  tailSum: string;
  /** When this state became durable (its sync point); absent on media synced before it existed. */
  syncedAt?: string;
}

export interface MediumConfig {
  mediaType: string;
  capacity: number;
  /** Size of the early-warning zone before `capacity`. */
  earlyWarning: number;
  worm: boolean;
  writeProtected: boolean;
  /**
   * ISO date until which the data is kept: WORM media refuse erase until then (forever when
   * null); rewritable media refuse erase and overwrite until then (appending stays allowed).
   */
  retentionUntil: string | null;
  checksum: string;
  createdAt: string;
  /**
   * Why the medium is read-only whatever its write-protect switch says (e.g. a replica of another
   * region until it is promoted); absent on ordinary media.
   */
  readOnly?: string;
}

export interface TapeFileInfo {
  file: number;
  startLba: number;
  /** LBA of the filemark that ends the file, or EOD for the last, unterminated file. */
  endLba: number;
  startByte: number;
  bytes: number;
  terminated: boolean;
  checksum: string;
}

/** What a medium needs from its store. */
export interface MediumContext {
  streams: Streams;
  map: MapStore;
  putGeometry(b: SyncBatch, id: string, geo: Geometry): void;
  getGeometry(id: string): Promise<Geometry | undefined>;
  /** Registers the one loaded instance of a medium; throws if another holds it. */
  acquire(id: string, medium: Medium): void;
  release(id: string): void;
}

export function blankGeometry(): Geometry {
  return { streamId: null, eodLba: 0, eodByte: 0, filemarks: 0, tailLba: 0, tailSum: EMPTY_CHECKSUM };
}

export function retentionHolds(cfg: MediumConfig, now = Date.now()): boolean {
  if (cfg.retentionUntil === null) return cfg.worm;
  return now < Date.parse(cfg.retentionUntil);
}

const HASH_READ = 1 << 20;

export class Medium {
  /** Block size mode: 0 = variable, otherwise fixed blocks of this many bytes. */
  private bs = 0;
  private geo: Geometry = blankGeometry();
  /** The geometry as of the last sync point. */
  private committed: Geometry | undefined;
  private lastRun: Run | undefined;
  private lastMark: MarkRun | undefined;
  private readonly dirtyRuns = new Map<number, Run>();
  private readonly dirtyMarks = new Map<number, MarkRun>();
  private pos = 0;
  /** The run holding `pos` (cache for sequential reads). */
  private cur: Run | undefined;
  private writer: StreamWriter | undefined;
  private reader: StreamReader | undefined;
  /** Hash of the last, unterminated file; undefined until rebuilt (after load or truncation). */
  private tail: FileChecksum | undefined;
  /** Hash of the file being read sequentially from its start; null when not verifiable. */
  private verifying: FileChecksum | null = null;
  private loaded = false;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly ctx: MediumContext,
    readonly id: string,
    readonly cfg: MediumConfig,
  ) {}

  get isLoaded(): boolean {
    return this.loaded;
  }

  get blockSize(): number {
    return this.bs;
  }

  // ---- public operations (serialized) ------------------------------------------------------

  load(): Promise<TapeResult> {
    return this.op(async () => {
      if (!this.loaded) {
        this.ctx.acquire(this.id, this);
        try {
          await this.loadState();
        } catch (err) {
          this.ctx.release(this.id);
          throw err;
        }
      }
      this.loaded = true;
      await this.endWrite(); // loading a loaded medium rewinds it: a sync point
      this.moveTo(0);
      this.verifying = new FileChecksum();
      return result();
    });
  }

  unload(): Promise<TapeResult> {
    return this.op(async () => {
      if (!this.loaded) return result();
      await this.endWrite();
      this.loaded = false;
      this.reader = undefined;
      this.ctx.release(this.id);
      return result();
    });
  }

  setBlockSize(size: number): TapeResult {
    if (!Number.isSafeInteger(size) || size < 0 || size > MAX_RECORD) {
      return failure(SENSE.invalid(`block size must be 0 (variable) or 1..${MAX_RECORD}, got ${size}`));
    }
    this.bs = size;
    return result();
  }

  /** Writes one record (variable mode) or `data.length / blockSize` blocks (fixed mode). */
  write(data: Uint8Array): Promise<TapeResult> {
    return this.op(() => this.doWrite(data));
  }

  /**
   * Reads one record into a buffer of `length` bytes (variable) or `length / blockSize` blocks.
   * With `lend`, the data may be lent rather than a copy (ReadResult.data).
   */
  read(length: number, lend = false): Promise<ReadResult> {
    return this.op(() => this.doRead(length, lend));
  }

  /** Writes `count` filemarks; `count` 0 only flushes. Both are sync points. */
  writeFilemarks(count = 1): Promise<TapeResult> {
    return this.op(() => this.doWriteFilemarks(count));
  }

  /** SPACE: positive counts move toward EOD, negative toward BOM. */
  space(kind: SpaceKind, count = 1): Promise<TapeResult> {
    return this.op(() => this.doSpace(kind, count));
  }

  locate(lba: number): Promise<TapeResult> {
    return this.op(async () => {
      const bad = this.check() ?? this.checkInt(lba, 0, 'block address');
      if (bad) return bad;
      await this.endWrite();
      if (lba > this.geo.eodLba) {
        this.moveTo(this.geo.eodLba);
        await this.afterMove();
        return failure(SENSE.eod(), { eod: true });
      }
      this.moveTo(lba);
      await this.afterMove();
      return result();
    });
  }

  rewind(): Promise<TapeResult> {
    return this.op(async () => {
      const bad = this.check();
      if (bad) return bad;
      await this.endWrite();
      this.moveTo(0);
      this.verifying = new FileChecksum();
      return result();
    });
  }

  /** Erases from the current position to the end (the data becomes garbage). */
  erase(): Promise<TapeResult> {
    return this.op(async () => {
      const bad = this.check() ?? this.eraseRefused(this.pos);
      if (bad) return bad;
      await this.endWrite();
      if (this.pos < this.geo.eodLba) await this.truncateAt(this.pos);
      return result();
    });
  }

  /**
   * Rewinds and erases the whole medium, in one operation: a refused erase (write protect,
   * WORM, retention) leaves the position where it was, as a drive that refuses a command does.
   */
  eraseAll(): Promise<TapeResult> {
    return this.op(async () => {
      const bad = this.check() ?? this.eraseRefused(0);
      if (bad) return bad;
      await this.endWrite();
      this.moveTo(0);
      this.verifying = new FileChecksum();
      if (this.geo.eodLba > 0) await this.truncateAt(0);
      return result();
    });
  }

  /** Why an erase from `lba` to the end is refused, if it is. */
  private eraseRefused(lba: number): TapeResult | undefined {
    if (this.cfg.writeProtected) return failure(SENSE.writeProtected(this.cfg.readOnly));
    if (this.cfg.worm && retentionHolds(this.cfg)) return failure(SENSE.wormErase());
    if (retentionHolds(this.cfg) && lba < this.geo.eodLba) return failure(SENSE.retained(this.cfg.retentionUntil!));
    return undefined;
  }

  readPosition(): Promise<TapePosition> {
    return this.op(() => this.position());
  }

  /**
   * Drops what was written since the last sync point, as a crash would, instead of syncing it:
   * for a writer whose client never finished (a server stop). The medium stays loaded at the
   * end of data of its last sync point. Resolves to the objects (records, or blocks in fixed
   * mode; filemarks are always synced) and bytes dropped; nothing when nothing was unsynced.
   */
  discardUnsynced(): Promise<{ objects: number; bytes: number }> {
    return this.op(async () => {
      if (!this.loaded || !this.writer) return { objects: 0, bytes: 0 };
      const was = { ...this.geo };
      await this.reset();
      return { objects: was.eodLba - this.geo.eodLba, bytes: was.eodByte - this.geo.eodByte };
    });
  }

  /** End of data as last synced or written (no I/O). */
  get eod(): Readonly<Geometry> {
    return { ...this.geo };
  }

  /** The tape files with their extents and checksums, in tape order. */
  async *files(): AsyncGenerator<TapeFileInfo> {
    let startLba = 0;
    let startByte = 0;
    let file = 0;
    for await (const m of this.ctx.map.markRuns(this.id)) {
      if (m.index >= this.geo.filemarks) break;
      const n = Math.min(m.n, this.geo.filemarks - m.index);
      yield { file: file++, startLba, endLba: m.lba, startByte, bytes: m.byte - startByte, terminated: true, checksum: m.sum };
      for (let i = 1; i < n; i++) {
        yield { file: file++, startLba: m.lba + i, endLba: m.lba + i, startByte: m.byte, bytes: 0, terminated: true, checksum: EMPTY_CHECKSUM };
      }
      startLba = m.lba + n;
      startByte = m.byte;
    }
    if (this.geo.eodLba > startLba) {
      const checksum = this.tail ? this.tail.digest() : this.geo.tailSum;
      yield { file, startLba, endLba: this.geo.eodLba, startByte, bytes: this.geo.eodByte - startByte, terminated: false, checksum };
    }
  }

  /** Reads every tape file and checks its checksum; does not move the position. */
  verify(): Promise<{ files: number; bytes: number; bad: number[] }> {
    return this.op(async () => {
      await this.endWrite();
      const out = { files: 0, bytes: 0, bad: [] as number[] };
      for await (const f of this.files()) {
        const h = await this.hashRange(f.startByte, f.startByte + f.bytes);
        if (h.digest() !== f.checksum) out.bad.push(f.file);
        out.files++;
        out.bytes += f.bytes;
      }
      return out;
    });
  }

  // ---- serialization and state --------------------------------------------------------------

  private op<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(async () => {
      try {
        return await fn();
      } catch (err) {
        await this.reset();
        throw err;
      }
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private check(): TapeResult | undefined {
    return this.loaded ? undefined : failure(SENSE.noMedium());
  }

  private checkInt(n: number, min: number, what: string): TapeResult | undefined {
    return Number.isSafeInteger(n) && n >= min ? undefined : failure(SENSE.invalid(`${what} must be a whole number >= ${min}, got ${n}`));
  }

  private async loadState(): Promise<void> {
    const { streams, map } = this.ctx;
    this.geo = (await this.ctx.getGeometry(this.id)) ?? blankGeometry();
    this.committed = { ...this.geo };
    const sid = this.geo.streamId;
    if (sid !== null) {
      const len = await streams.length(sid);
      if (len < this.geo.eodByte) {
        throw new Error(`medium ${this.id}: its stream holds ${len} bytes but its tape map ends at ${this.geo.eodByte}; refusing to load`);
      }
      // Bytes past the last sync point (crash between stream and map) are cut away.
      if (len > this.geo.eodByte) await streams.truncate(sid, this.geo.eodByte);
    }
    await map.clearFrom(this.id, this.geo.eodLba, this.geo.filemarks);
    this.lastRun = await map.lastRun(this.id);
    this.lastMark = await map.lastMark(this.id);
    this.dirtyRuns.clear();
    this.dirtyMarks.clear();
    this.tail = this.geo.eodByte === this.tailStartByte() ? new FileChecksum() : undefined;
    this.reader = undefined;
    this.cur = undefined;
  }

  /** After a failed operation: drop unsynced state and reload the last sync point. */
  private async reset(): Promise<void> {
    const w = this.writer;
    this.writer = undefined;
    if (w) await w.abort().catch(() => undefined);
    if (!this.loaded) return;
    await this.loadState();
    this.moveTo(Math.min(this.pos, this.geo.eodLba));
    this.verifying = null;
  }

  private tailStartByte(): number {
    return this.lastMark ? this.lastMark.byte : 0;
  }

  private moveTo(lba: number): void {
    this.pos = lba;
  }

  private beyondEarlyWarning(): boolean {
    return this.geo.eodByte > this.cfg.capacity - this.cfg.earlyWarning;
  }

  // ---- writing ---------------------------------------------------------------------------------

  private async doWrite(data: Uint8Array): Promise<TapeResult> {
    const bad = this.check();
    if (bad) return bad;
    if (data.length === 0) return result();
    const bs = this.bs;
    if (bs === 0 && data.length > MAX_RECORD) {
      return failure(SENSE.invalid(`record of ${data.length} bytes is larger than the ${MAX_RECORD}-byte maximum`), { residue: data.length });
    }
    if (bs > 0 && data.length % bs !== 0) {
      return failure(SENSE.invalid(`${data.length} bytes is not a whole number of ${bs}-byte blocks`));
    }
    const size = bs || data.length;
    const count = data.length / size;
    const refused = await this.beginWrite();
    if (refused) return failure(refused, { residue: bs ? count : data.length });
    const room = this.cfg.capacity - this.geo.eodByte;
    const n = size * count <= room ? count : bs ? Math.floor(room / bs) : 0;
    if (n > 0) await this.append(n === count ? data : data.subarray(0, n * size), size, n);
    if (n < count) {
      return failure(SENSE.overflow(), { eom: true, transferred: n * size, residue: bs ? count - n : data.length });
    }
    return this.written(data.length);
  }

  private written(transferred: number): TapeResult {
    if (!this.beyondEarlyWarning()) return result({ transferred });
    return result({ transferred, eom: true, earlyWarning: true, sense: SENSE.earlyWarning() });
  }

  private async doWriteFilemarks(count: number): Promise<TapeResult> {
    const bad = this.check() ?? this.checkInt(count, 0, 'filemark count');
    if (bad) return bad;
    if (count === 0) {
      if (this.writer) await this.writer.sync((b) => this.commitOps(b));
      this.dirtyRuns.clear();
      this.dirtyMarks.clear();
      return result();
    }
    const refused = await this.beginWrite();
    if (refused) return failure(refused, { residue: count });
    this.appendMarks(count);
    await this.writer!.sync((b) => this.commitOps(b));
    this.dirtyRuns.clear();
    this.dirtyMarks.clear();
    return this.written(0);
  }

  /** Opens the writer at the current position; refuses writes the medium does not allow. */
  private async beginWrite() {
    if (this.cfg.writeProtected) return SENSE.writeProtected(this.cfg.readOnly);
    if (this.writer) return undefined;
    if (this.pos < this.geo.eodLba) {
      if (this.cfg.worm) return SENSE.wormOverwrite();
      if (retentionHolds(this.cfg)) return SENSE.retained(this.cfg.retentionUntil!);
      await this.truncateAt(this.pos);
    }
    if (this.geo.streamId === null) this.geo.streamId = await this.ctx.streams.create();
    this.reader = undefined;
    this.cur = undefined;
    this.verifying = null;
    const w = await this.ctx.streams.openWriter(this.geo.streamId);
    if (w.position !== this.geo.eodByte) {
      await w.abort();
      throw new Error(`medium ${this.id}: stream writer opened at ${w.position}, expected ${this.geo.eodByte}`);
    }
    this.writer = w;
    return undefined;
  }

  private async append(data: Uint8Array, size: number, n: number): Promise<void> {
    if (!this.tail) this.tail = await this.hashRange(this.tailStartByte(), this.geo.eodByte);
    await this.writer!.write(data);
    this.tail.update(data);
    const g = this.geo;
    const last = this.lastRun;
    if (last && last.size === size && last.lba + last.n === g.eodLba) {
      last.n += n;
      this.dirtyRuns.set(last.lba, last);
    } else {
      const run: Run = { lba: g.eodLba, n, size, byte: g.eodByte, fm: g.filemarks };
      this.lastRun = run;
      this.dirtyRuns.set(run.lba, run);
    }
    g.eodLba += n;
    g.eodByte += data.length;
    this.pos = g.eodLba;
  }

  private appendMarks(n: number): void {
    const g = this.geo;
    const last = this.lastRun;
    if (last && last.size === 0 && last.lba + last.n === g.eodLba && this.lastMark) {
      // Extra filemarks right after filemarks end empty files.
      last.n += n;
      this.lastMark.n += n;
      this.dirtyRuns.set(last.lba, last);
      this.dirtyMarks.set(this.lastMark.index, this.lastMark);
    } else {
      const sum = this.tail ? this.tail.digest() : g.tailSum;
      const run: Run = { lba: g.eodLba, n, size: 0, byte: g.eodByte, fm: g.filemarks };
      const mark: MarkRun = { index: g.filemarks, lba: g.eodLba, n, sum, byte: g.eodByte };
      this.lastRun = run;
      this.lastMark = mark;
      this.dirtyRuns.set(run.lba, run);
      this.dirtyMarks.set(mark.index, mark);
    }
    g.filemarks += n;
    g.eodLba += n;
    g.tailLba = g.eodLba;
    this.pos = g.eodLba;
    this.tail = new FileChecksum();
    g.tailSum = EMPTY_CHECKSUM;
  }

  /** The caller's part of a sync batch: new runs, marks and the end of data. */
  private commitOps(b: SyncBatch): void {
    if (this.tail) this.geo.tailSum = this.tail.digest();
    for (const r of this.dirtyRuns.values()) this.ctx.map.putRun(b, this.id, r);
    for (const m of this.dirtyMarks.values()) this.ctx.map.putMark(b, this.id, m);
    // syncedAt dates the data: a sync point that changes nothing (a session's closing flush)
    // keeps it, so a replica of this state stays current.
    const was = this.committed;
    const g = this.geo;
    if (!was || !g.syncedAt || was.eodLba !== g.eodLba || was.eodByte !== g.eodByte || was.filemarks !== g.filemarks || was.tailSum !== g.tailSum || was.streamId !== g.streamId) g.syncedAt = new Date().toISOString();
    this.committed = { ...g };
    this.ctx.putGeometry(b, this.id, { ...g });
  }

  /** Closes the writer: a sync point. */
  private async endWrite(): Promise<void> {
    const w = this.writer;
    if (!w) return;
    this.writer = undefined;
    try {
      await w.close((b) => this.commitOps(b));
    } catch (err) {
      await w.abort().catch(() => undefined);
      throw err;
    }
    this.dirtyRuns.clear();
    this.dirtyMarks.clear();
  }

  /** Cuts the medium at `lba` (< EOD, nothing unsynced): map and stream in one batch. */
  private async truncateAt(lba: number): Promise<void> {
    const { map, streams } = this.ctx;
    const run = await this.objectAt(lba);
    const byte = byteIn(run, lba);
    const fm = marksBefore(run, lba);
    const prevMark = fm === 0 ? undefined : await this.markRun(fm - 1);
    const fileStart = prevMark ? prevMark.byte : 0;
    const tailLba = prevMark ? prevMark.lba + (fm - 1 - prevMark.index) + 1 : 0;
    let tail: FileChecksum | undefined;
    let sum: string;
    if (byte === fileStart) {
      tail = new FileChecksum();
      sum = EMPTY_CHECKSUM;
    } else if (run.size === 0 && lba === run.lba) {
      sum = (await this.markRun(fm)).sum; // the cut filemark ended exactly this file
    } else {
      tail = await this.hashRange(fileStart, byte);
      sum = tail.digest();
    }
    const cutMark = fm < this.geo.filemarks ? await this.markRun(fm) : undefined;
    const geo: Geometry = { ...this.geo, eodLba: lba, eodByte: byte, filemarks: fm, tailLba, tailSum: sum, syncedAt: new Date().toISOString() };
    this.committed = { ...geo };
    await streams.truncate(this.geo.streamId!, byte, (b) => {
      if (lba > run.lba) map.putRun(b, this.id, { ...run, n: lba - run.lba });
      else map.delRun(b, this.id, run.lba);
      if (cutMark && fm > cutMark.index) map.putMark(b, this.id, { ...cutMark, n: fm - cutMark.index });
      else if (cutMark) map.delMark(b, this.id, cutMark.index);
      this.ctx.putGeometry(b, this.id, geo);
    });
    this.geo = geo;
    await map.clearFrom(this.id, lba, fm);
    this.lastRun = await map.lastRun(this.id);
    this.lastMark = await map.lastMark(this.id);
    this.tail = tail;
    this.reader = undefined;
    this.cur = undefined;
  }

  private async hashRange(from: number, to: number): Promise<FileChecksum> {
    const h = new FileChecksum();
    if (to <= from) return h;
    const r = await this.ctx.streams.openReader(this.geo.streamId!, from);
    for (let at = from; at < to; ) {
      const buf = await r.read(Math.min(HASH_READ, to - at));
      if (buf.length === 0) throw new Error(`medium ${this.id}: stream ends at ${at}, expected ${to}`);
      h.update(buf);
      at += buf.length;
    }
    return h;
  }

  // ---- reading -----------------------------------------------------------------------------

  private async doRead(length: number, lend: boolean): Promise<ReadResult> {
    const bad = this.check() ?? this.checkInt(length, 0, 'read length');
    if (bad) return { ...bad, data: Buffer.alloc(0) };
    if (length === 0) return { ...result(), data: Buffer.alloc(0) };
    if (this.bs > 0 && length % this.bs !== 0) {
      return { ...failure(SENSE.invalid(`${length} bytes is not a whole number of ${this.bs}-byte blocks`)), data: Buffer.alloc(0) };
    }
    await this.endWrite();
    return this.bs === 0 ? this.readRecord(length, lend) : this.readBlocks(length / this.bs, lend);
  }

  private async readRecord(length: number, lend: boolean): Promise<ReadResult> {
    const empty = Buffer.alloc(0);
    if (this.pos >= this.geo.eodLba) return { ...this.atEod({ residue: length }), data: empty };
    const run = await this.objectAt(this.pos);
    if (run.size === 0) return { ...(await this.crossFilemark(run, { residue: length })), data: empty };
    const size = run.size;
    const data = await this.readBytes(byteIn(run, this.pos), Math.min(size, length), lend);
    this.pos++;
    if (length >= size) {
      this.verifying?.update(data);
      if (length === size) return { ...result({ transferred: size }), data };
      const s = SENSE.incorrectLength(`record of ${size} bytes is shorter than the ${length}-byte buffer`);
      return { ...result({ transferred: size, ili: true, residue: length - size, sense: s }), data };
    }
    this.verifying = null; // a partial read is not a full read of the file
    const s = SENSE.incorrectLength(`record of ${size} bytes is longer than the ${length}-byte buffer`);
    return { ...failure(s, { transferred: length, ili: true, residue: length - size }), data };
  }

  private async readBlocks(count: number, lend: boolean): Promise<ReadResult> {
    const bs = this.bs;
    const parts: Buffer[] = [];
    let done = 0;
    const out = (r: TapeResult): ReadResult => ({ ...r, data: parts.length === 1 ? parts[0] : joined(parts) });
    while (done < count) {
      const part = { residue: count - done, transferred: done * bs };
      if (this.pos >= this.geo.eodLba) return out(this.atEod(part));
      const run = await this.objectAt(this.pos);
      if (run.size === 0) return out(await this.crossFilemark(run, part));
      if (run.size !== bs) {
        this.pos++;
        this.verifying = null;
        return out(failure(SENSE.incorrectLength(`record of ${run.size} bytes in ${bs}-byte fixed-block mode`), { ...part, ili: true }));
      }
      const k = Math.min(count - done, run.lba + run.n - this.pos);
      const buf = await this.readBytes(byteIn(run, this.pos), k * bs, lend);
      this.verifying?.update(buf);
      parts.push(buf);
      this.pos += k;
      done += k;
    }
    return out(result({ transferred: count * bs }));
  }

  /** Reading at EOD: BLANK CHECK, after checking the last file if it was read whole. */
  private atEod(p: Partial<TapeResult>): TapeResult {
    const v = this.verifying;
    this.verifying = null;
    if (v && v.digest() !== this.geo.tailSum) return failure(SENSE.checksum(this.geo.filemarks), { ...p, eod: true });
    return failure(SENSE.eod(), { ...p, eod: true });
  }

  /** Reading a filemark: moves past it and checks the file it ends if that was read whole. */
  private async crossFilemark(run: Run, p: Partial<TapeResult>): Promise<TapeResult> {
    const file = marksBefore(run, this.pos);
    const v = this.verifying;
    let bad = false;
    if (v) {
      const expected = this.pos === run.lba ? (await this.markRun(file)).sum : EMPTY_CHECKSUM;
      bad = v.digest() !== expected;
    }
    this.pos++;
    this.verifying = new FileChecksum();
    if (bad) return failure(SENSE.checksum(file), { ...p, filemark: true });
    return result({ ...p, filemark: true, sense: SENSE.filemark() });
  }

  private async readBytes(byte: number, n: number, lend: boolean): Promise<Buffer> {
    this.reader ??= await this.ctx.streams.openReader(this.geo.streamId!, byte);
    const r = this.reader;
    if (r.position !== byte) r.seek(byte);
    const first = lend ? await r.readLent(n) : await r.read(n);
    if (first.length === n) return first;
    const parts = [first];
    let got = first.length;
    while (got < n) {
      const more = await r.read(n - got);
      if (more.length === 0) throw new Error(`medium ${this.id}: stream ends at ${byte + got}, the tape map expects ${byte + n}`);
      parts.push(more);
      got += more.length;
    }
    return joined(parts); // exactly n bytes: each read asks for at most what is missing
  }

  // ---- positioning -----------------------------------------------------------------------------

  /** The run holding `lba` (< EOD). */
  private async objectAt(lba: number): Promise<Run> {
    const c = this.cur;
    if (c && lba >= c.lba && lba < c.lba + c.n) return c;
    const run = await this.ctx.map.runAt(this.id, lba);
    if (!run) throw new Error(`medium ${this.id}: tape map has no entry for block ${lba} (EOD ${this.geo.eodLba})`);
    this.cur = run;
    return run;
  }

  private async markRun(index: number): Promise<MarkRun> {
    const m = await this.ctx.map.markAt(this.id, index);
    if (!m) throw new Error(`medium ${this.id}: tape map has no filemark ${index}`);
    return m;
  }

  private async markLba(index: number): Promise<number> {
    const m = await this.markRun(index);
    return m.lba + (index - m.index);
  }

  private async marksBeforePos(): Promise<number> {
    if (this.pos >= this.geo.eodLba) return this.geo.filemarks;
    return marksBefore(await this.objectAt(this.pos), this.pos);
  }

  /** Reads can verify a file only when they start at its first object. */
  private async afterMove(): Promise<void> {
    const fm = await this.marksBeforePos();
    const start = fm === 0 ? 0 : (await this.markLba(fm - 1)) + 1;
    this.verifying = start === this.pos ? new FileChecksum() : null;
  }

  private async doSpace(kind: SpaceKind, count: number): Promise<TapeResult> {
    const bad = this.check() ?? (Number.isSafeInteger(count) ? undefined : this.checkInt(count, 0, 'space count'));
    if (bad) return bad;
    await this.endWrite();
    let r: TapeResult;
    if (kind === 'eod') {
      this.moveTo(this.geo.eodLba);
      r = result();
    } else if (count === 0) {
      return result();
    } else if (kind === 'records') {
      r = count > 0 ? await this.spaceRecordsForward(count) : await this.spaceRecordsBack(-count);
    } else if (kind === 'filemarks') {
      r = count > 0 ? await this.spaceMarksForward(count) : await this.spaceMarksBack(-count);
    } else {
      return failure(SENSE.invalid(`unknown space kind ${String(kind)}`));
    }
    await this.afterMove();
    return r;
  }

  private async spaceRecordsForward(n: number): Promise<TapeResult> {
    const fm = await this.marksBeforePos();
    const next = fm < this.geo.filemarks ? await this.markLba(fm) : undefined;
    const limit = (next ?? this.geo.eodLba) - this.pos;
    if (n <= limit) {
      this.moveTo(this.pos + n);
      return result();
    }
    if (next !== undefined) {
      this.moveTo(next + 1);
      return failure(SENSE.filemark(), { filemark: true, residue: n - limit });
    }
    this.moveTo(this.geo.eodLba);
    return failure(SENSE.eod(), { eod: true, residue: n - limit });
  }

  private async spaceRecordsBack(n: number): Promise<TapeResult> {
    const fm = await this.marksBeforePos();
    const prev = fm > 0 ? await this.markLba(fm - 1) : undefined;
    const limit = this.pos - (prev === undefined ? 0 : prev + 1);
    if (n <= limit) {
      this.moveTo(this.pos - n);
      return result();
    }
    if (prev !== undefined) {
      this.moveTo(prev); // on the BOM side of the filemark
      return failure(SENSE.filemark(), { filemark: true, residue: n - limit });
    }
    this.moveTo(0);
    return failure(SENSE.bom(), { bom: true, residue: n - limit });
  }

  private async spaceMarksForward(n: number): Promise<TapeResult> {
    const fm = await this.marksBeforePos();
    const target = fm + n - 1;
    if (target < this.geo.filemarks) {
      this.moveTo((await this.markLba(target)) + 1);
      return result();
    }
    this.moveTo(this.geo.eodLba);
    return failure(SENSE.eod(), { eod: true, residue: fm + n - this.geo.filemarks });
  }

  private async spaceMarksBack(n: number): Promise<TapeResult> {
    const fm = await this.marksBeforePos();
    if (n <= fm) {
      this.moveTo(await this.markLba(fm - n)); // on the BOM side of the n-th filemark back
      return result();
    }
    this.moveTo(0);
    return failure(SENSE.bom(), { bom: true, residue: n - fm });
  }

  private async position(): Promise<TapePosition> {
    if (!this.loaded) throw new Error(`medium ${this.id} is not loaded`);
    const g = this.geo;
    const ew = this.beyondEarlyWarning();
    if (this.pos >= g.eodLba) {
      return { lba: g.eodLba, file: g.filemarks, block: g.eodLba - g.tailLba, byte: g.eodByte, bop: g.eodLba === 0, eod: true, beyondEarlyWarning: ew };
    }
    const run = await this.objectAt(this.pos);
    const fm = marksBefore(run, this.pos);
    const fileStart = fm === 0 ? 0 : (await this.markLba(fm - 1)) + 1;
    const byte = byteIn(run, this.pos);
    return { lba: this.pos, file: fm, block: this.pos - fileStart, byte, bop: this.pos === 0, eod: false, beyondEarlyWarning: byte > this.cfg.capacity - this.cfg.earlyWarning };
  }
}

/**
 * The parts in one pooled buffer; the parts go back where they came from (stream/buffers.ts).
 * Lent parts are views of a reader's shared slab: copyBytes keeps those copies in step.
 */
function joined(parts: Buffer[]): Buffer {
  let n = 0;
  for (const p of parts) n += p.length;
  const all = takeBuffer(n);
  let at = 0;
  for (const p of parts) {
    copyBytes(all, at, p);
    at += p.length;
    recycleBuffer(p);
  }
  return all;
}
