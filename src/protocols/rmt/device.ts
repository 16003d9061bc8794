/**
 * An open tape device as Linux st presents one to a program: a drive session of a vtl library,
 * with st's read, write, close and MTIOCTOP behavior mapped onto the medium's SSC results.
 *
 * - Reads: a filemark reads as 0 bytes; at end of data the first read returns 0 bytes and the
 *   next fail with EIO; a record longer than the request fails with ENOMEM (variable mode).
 *   In fixed-block mode a read that stops at a filemark returns what it got and the next read
 *   returns 0 bytes.
 * - After writing, close writes the device's filemarks (one; two on AIX rewinding devices), and
 *   rewind, offline, seek and backward spacing write one first, as st does. Every filemark and
 *   the close are sync points, answered only after the data is durable. A device the server
 *   ends without the client's close (`abandon`: the server stops) writes no filemark: what was
 *   written after the cartridge's last sync point is rolled back, as after a crash, so a file
 *   the client never finished cannot pass for a complete one.
 * - Streaming, as st's buffered mode: while a client writes records one after another (far from
 *   the end of the medium), a write is answered once its record is accepted and is stored while
 *   the next one travels; an error of that store is reported by the next command (a deferred
 *   error, as st reports them). While a client reads records one after another, the next
 *   record is read ahead; any other command first puts the tape back where the client left it.
 *   At most one record is in flight either way.
 * - End of medium, as st (Documentation/scsi/st.rst): the write that reaches the early-warning
 *   zone is finished and returns its count; the next write fails with ENOSPC and is not stored
 *   (a multi-volume tar rewrites that record on the next volume); the one after is written (a
 *   trailer), and from then on ENOSPC and written counts alternate until the physical end, where
 *   the write fails with ENOSPC. Filemarks (and close's) are written in the zone; any command
 *   but a write (or S, L, nop, setblk, tell) ends the alternation, as it resets st's EOM state.
 *   S reports GMT_EOT past the early-warning point.
 * - Before the first change an open makes to the cartridge (a write, a filemark, an erase; not a
 *   read-only open, not a flush) it awaits `beforeChange` once (the audit log's note, so a crash
 *   mid-session is on record); every later record goes straight to the medium.
 * - For the `vtl rmt` bridge (see bridge.ts): `writeCredit` says how many bytes of further
 *   records a client may be told are written before they are (never into the early-warning
 *   zone), and `undoReads` takes back the client's last reads exactly (position and st's read
 *   state), so a bridge can read ahead of its client.
 */
import { LibraryError, type Drive, type Libraries } from '../../library/index.js';
import { MAX_RECORD, type Medium, type ReadResult, type TapeResult } from '../../tape/index.js';
import { RmtError, tapeOp, type DeviceName, type ErrnoName, type OpenFlags } from './names.js';

/** Largest record (and read request) a client may transfer: the tape maximum. */
export const MAX_TRANSFER = MAX_RECORD;

/** `struct mtget` of Linux x86-64: seven longs/ints, 48 bytes. */
export const MTGET_SIZE = 48;
const MT_ISSCSI2 = 0x72;
export const GMT = {
  EOF: 0x80000000,
  BOT: 0x40000000,
  EOT: 0x20000000,
  EOD: 0x08000000,
  WR_PROT: 0x04000000,
  ONLINE: 0x01000000,
  DR_OPEN: 0x00040000,
} as const;

/** SCSI density codes, reported in the top byte of mt_dsreg. */
const DENSITY: Record<string, number> = { 'LTO-5': 0x58, 'LTO-6': 0x5a, 'LTO-7': 0x5c, 'LTO-8': 0x5e, 'LTO-9': 0x60 };

/** Ops after which st still considers itself writing (no automatic filemark needed yet). */
const KEEPS_WRITING = new Set(['nop', 'setblk', 'ignored', 'tell']);
/** Ops before which st writes a filemark when the last operation was a write. */
const FILEMARK_FIRST = new Set(['rewind', 'offline', 'unload', 'seek', 'bsf', 'bsfm']);

/** Most bytes of records a bridge may hold acknowledged ahead of the tape (its write window). */
export const WRITE_WINDOW = 8 * 2 ** 20;
/** Most reads `undoReads` can take back (a bridge's read-ahead stays below this). */
export const MAX_UNDO = 256;

/** What a change to the cartridge is, for `beforeChange`: records and filemarks, or an erase. */
export type ChangeKind = 'write' | 'erase';
/** Awaited once per open, before its first change reaches the medium; must not reject. */
export type BeforeChange = (kind: ChangeKind) => Promise<void>;

/**
 * What `abandon` rolled back: the records (blocks, in fixed-block mode) and bytes written after
 * the cartridge's last sync point, and what the cartridge ends with now: a filemark, nothing
 * (blank), or its last tape file unterminated (synced by a flush, never closed by a filemark).
 */
export interface RolledBack {
  records: number;
  bytes: number;
  endsAt: 'filemark' | 'beginning' | 'unterminated';
}

/** What a read changes besides the position: restored when it is taken back. */
interface ReadState {
  writing: boolean;
  eomRefuseNext: boolean;
  eodSeen: boolean;
  filemarkPending: boolean;
  residue: number;
}

/** One read a client made: the objects it passed (NaN: unknown) and the state before it. */
interface ReadEntry {
  moved: number;
  before: ReadState;
}

function errnoOfLibrary(err: LibraryError): RmtError {
  switch (err.code) {
    case 'IN_USE':
      return new RmtError('EBUSY', err.message);
    case 'DRIVE_EMPTY':
      return new RmtError('ENOMEDIUM', err.message);
    case 'INVALID_ELEMENT':
      return new RmtError('ENXIO', err.message);
    case 'NOT_FOUND':
      return new RmtError('ENOENT', err.message);
    default:
      return new RmtError('EIO', err.message);
  }
}

/** The errno a failed tape command gives (st's mapping of sense keys). */
function errnoOf(r: TapeResult): RmtError {
  const msg = r.sense?.message;
  const code: ErrnoName =
    r.sense?.key === 'VOLUME OVERFLOW'
      ? 'ENOSPC'
      : r.sense?.key === 'DATA PROTECT'
        ? 'EACCES'
        : r.sense?.key === 'ILLEGAL REQUEST'
          ? 'EINVAL'
          : r.sense?.key === 'NOT READY'
            ? 'ENOMEDIUM'
            : 'EIO';
  return new RmtError(code, msg);
}

/** Opening a write-protected cartridge for writing: `open(2)` fails with EROFS. */
export class WriteProtectedOpen extends RmtError {
  /** Why, without the errno's words (for the audit log). */
  readonly reason: string;

  /** `readOnly`: why the cartridge cannot be written, when it says (a DR replica: how to promote it). */
  constructor(
    readonly barcode: string,
    readOnly?: string,
  ) {
    const reason = readOnly ? `cartridge ${barcode} is read-only: ${readOnly}` : `cartridge ${barcode} is write protected`;
    super('EROFS', reason);
    this.reason = reason;
  }
}

export class TapeDevice {
  /** The last operation was a write: close (and some moves) must write filemarks. */
  private writing = false;
  /** Reads at EOD: the first returns 0 bytes, the next fail. */
  private eodSeen = false;
  /** A fixed-block read stopped at a filemark: the next read returns 0 bytes. */
  private filemarkPending = false;
  private residue = 0;
  /**
   * st's ST_EOM_OK: the last write met the end of medium (early warning or the physical end),
   * so the next write is refused with ENOSPC without reaching the tape; the one after may
   * proceed again. Cleared by the refusal and by any command but a write.
   */
  private eomRefuseNext = false;
  private closed = false;
  /** The record being stored behind the client's back, and its error if it failed. */
  private pendingWrite: Promise<void> | undefined;
  private deferred: RmtError | undefined;
  /** The record read ahead for a read of `length` bytes. */
  private ahead: { length: number; result: Promise<ReadResult> } | undefined;
  /** The client's reads since its last other command, newest last (at most MAX_UNDO). */
  private journal: ReadEntry[] = [];
  /** Bytes of the record being stored behind the client's back. */
  private pendingBytes = 0;
  /** What this session changed on the cartridge (the audit log's entry at close). */
  readonly changes = { records: 0, bytes: 0, filemarks: 0, erased: false };
  /**
   * Writes the store failed (an I/O error, a full disk; not a cartridge's refusal): the first
   * reason and how often. The medium went back to its last sync point each time, so the
   * audit entry must not pass for a good one.
   */
  readonly failures = { times: 0, reason: '' };
  /** Writes and erases the cartridge refused (write protect, WORM): the first reason and how often. */
  readonly refusals = new Map<ChangeKind, { reason: string; times: number }>();
  /** `beforeChange` has run (or is running): a flag, so streaming records pay no await for it. */
  private changeNoted = false;

  private constructor(
    readonly name: DeviceName,
    private readonly flags: OpenFlags,
    private readonly drive: Drive,
    private readonly medium: Medium,
    private readonly beforeChange?: BeforeChange,
  ) {}

  /** Opens a drive session; fails as `open(2)` on a tape device would. */
  static async open(libs: Libraries, name: DeviceName, flags: OpenFlags, beforeChange?: BeforeChange): Promise<TapeDevice> {
    let drive: Drive;
    let medium: Medium;
    try {
      drive = await libs.drive(name.library, name.drive);
      medium = await drive.open();
    } catch (err) {
      if (err instanceof LibraryError) throw errnoOfLibrary(err);
      throw err;
    }
    const refuse = async (e: RmtError): Promise<never> => {
      await drive.close();
      throw e;
    };
    if (!medium.isLoaded && !flags.nonblock) await refuse(new RmtError('ENOMEDIUM', `the cartridge in drive ${name.drive} of ${name.library} is offline (load it, or open with O_NONBLOCK and send MTLOAD)`));
    if (flags.access !== 'read' && medium.isLoaded && medium.cfg.writeProtected) await refuse(new WriteProtectedOpen(medium.id, medium.cfg.readOnly));
    return new TapeDevice(name, flags, drive, medium, beforeChange);
  }

  /** Runs `beforeChange` before this open's first change; once, whatever the change's outcome. */
  private async firstChange(kind: ChangeKind): Promise<void> {
    this.changeNoted = true;
    await this.beforeChange?.(kind);
  }

  /** The cartridge in the drive (loaded or taken offline). */
  get barcode(): string {
    return this.medium.id;
  }

  get writable(): boolean {
    return this.flags.access !== 'read';
  }

  /**
   * Writes one record. `done`, if given, is called once the medium no longer needs `data`
   * (stored, failed or never started): in streaming mode that is after this returns.
   */
  async write(data: Buffer, done?: () => void): Promise<number> {
    let stored: Promise<TapeResult> | undefined;
    let streaming = false;
    try {
      this.journal.length = 0;
      if (!this.writable) throw new RmtError('EBADF', 'the device is open for reading only');
      if (data.length > MAX_TRANSFER) throw new RmtError('EINVAL', `a record holds at most ${MAX_TRANSFER} bytes`);
      await this.settle();
      this.moved();
      const bs = this.medium.blockSize;
      if (bs > 0 && data.length % bs !== 0) throw new RmtError('EINVAL', `${data.length} bytes is not a whole number of ${bs}-byte blocks`);
      if (this.eomRefuseNext) {
        // st refuses this one so the program learns of the end of medium, and lets the next
        // one through (room for a trailer). Nothing of it is stored: the program writes it
        // again, on the next volume.
        this.eomRefuseNext = false;
        throw new RmtError('ENOSPC', 'end of medium: the cartridge is past its early-warning point or full; this record was not written, the next write may write a trailer');
      }
      if (!this.changeNoted) await this.firstChange('write');
      streaming = this.writing && this.farFromEnd();
      stored = this.medium.write(data);
      if (done) stored.then(done, done);
    } finally {
      if (!stored) done?.();
    }
    if (streaming) {
      // Streaming: the previous write succeeded at EOD and this one cannot reach the early
      // warning zone, so it can only fail on an internal error, reported by the next command.
      this.pendingBytes = data.length;
      this.counted(data.length);
      this.pendingWrite = stored.then(
        (r) => {
          this.residue = r.residue;
          if (!r.ok || r.transferred !== data.length) {
            this.deferred = errnoOf(r);
            this.uncounted(data.length, r.transferred);
          }
          // Cannot happen while streaming stays clear of the zone; if it did, the client was
          // told the count already, which is st's answer, and the next write must be refused.
          else if (r.eom) this.eomRefuseNext = true;
        },
        (err: Error) => {
          this.deferred = new RmtError('EIO', err.message);
          this.uncounted(data.length, 0);
          this.failed(err);
        },
      );
      return data.length;
    }
    const r = await stored.catch((err: Error) => {
      this.failed(err);
      throw err;
    });
    this.residue = r.residue;
    this.noteRefusal('write', r);
    // Early warning (the record is written and its count returned) or the physical end (ENOSPC,
    // or in fixed-block mode the blocks that fit): st refuses the next write either way.
    if (r.eom) this.eomRefuseNext = true;
    if (!r.ok && r.transferred === 0) throw errnoOf(r);
    this.writing = true;
    this.counted(r.transferred);
    return r.transferred;
  }

  private failed(err: Error): void {
    if (this.failures.times++ === 0) this.failures.reason = err.message;
  }

  private counted(bytes: number): void {
    this.changes.records++;
    this.changes.bytes += bytes;
  }

  /** A streamed record counted when acknowledged, that then failed: the audit counts what was stored. */
  private uncounted(bytes: number, stored: number): void {
    if (stored === 0) this.changes.records--;
    this.changes.bytes -= bytes - stored;
  }

  private farFromEnd(): boolean {
    const m = this.medium;
    return m.eod.eodByte + 2 * MAX_TRANSFER < m.cfg.capacity - m.cfg.earlyWarning;
  }

  /**
   * After a write: how many bytes of further records may be acknowledged before they reach the
   * device. Only while streaming variable-size records at EOD with no error pending, and only
   * as far as they all stay clear of the early-warning zone (so every one of them fits, and the
   * streaming rule of `write` holds for each): 0 otherwise.
   */
  writeCredit(): number {
    const m = this.medium;
    if (!this.writing || this.deferred || this.eomRefuseNext || !m.isLoaded || m.blockSize !== 0) return 0;
    const inFlight = this.pendingWrite ? this.pendingBytes : 0;
    const room = m.cfg.capacity - m.cfg.earlyWarning - m.eod.eodByte - inFlight - 2 * MAX_TRANSFER;
    return Math.max(0, Math.min(WRITE_WINDOW, room));
  }

  /**
   * Before any command but a streaming write or read: waits for the record in flight and puts
   * a record read ahead back; throws a deferred error.
   */
  private async settle(): Promise<void> {
    const w = this.pendingWrite;
    this.pendingWrite = undefined;
    if (w) await w;
    const a = this.ahead;
    this.ahead = undefined;
    if (a) await this.unread(await a.result);
    const e = this.deferred;
    this.deferred = undefined;
    if (e) {
      this.writing = false;
      throw e;
    }
  }

  /** Moves back over the object a read-ahead passed; a checksum failure it met is deferred. */
  private async unread(r: ReadResult): Promise<void> {
    if (r.transferred > 0 || r.filemark) {
      const back = await this.medium.space('records', -1);
      // Back over a filemark, space stops on its BOM side and reports it: that is the goal.
      if (!back.ok && !back.filemark) this.deferred = errnoOf(back);
    }
    if (r.sense?.key === 'MEDIUM ERROR') this.deferred = errnoOf(r);
  }

  /** One read(2) of `length` bytes (0 moves nothing and returns nothing). */
  async read(length: number): Promise<Buffer> {
    const entry: ReadEntry = { moved: 0, before: { writing: this.writing, eomRefuseNext: this.eomRefuseNext, eodSeen: this.eodSeen, filemarkPending: this.filemarkPending, residue: this.residue } };
    if (this.journal.push(entry) > MAX_UNDO) this.journal.shift();
    if (this.flags.access === 'write') throw new RmtError('EBADF', 'the device is open for writing only');
    if (length === 0) return Buffer.alloc(0);
    let r: ReadResult;
    const a = this.ahead;
    if (a && a.length === length) {
      this.ahead = undefined;
      entry.moved = NaN; // until the result says
      r = await a.result;
    } else {
      await this.settle();
      this.writing = false;
      this.eomRefuseNext = false;
      if (this.filemarkPending) {
        this.filemarkPending = false;
        return Buffer.alloc(0);
      }
      const bs = this.medium.blockSize;
      if (bs > 0 && length > MAX_TRANSFER) throw new RmtError('EINVAL', `a fixed-block read transfers at most ${MAX_TRANSFER} bytes`);
      if (bs > 0 && length % bs !== 0) throw new RmtError('EINVAL', `${length} bytes is not a whole number of ${bs}-byte blocks`);
      entry.moved = NaN;
      r = await this.medium.read(this.readLength(length), true);
    }
    entry.moved = this.objectsPassed(r);
    this.residue = r.residue;
    // A whole record in variable mode: the client will most likely ask for the next one.
    if (r.ok && r.transferred > 0 && !r.filemark && this.medium.blockSize === 0) {
      this.ahead = { length, result: this.medium.read(this.readLength(length), true) };
      // A failure surfaces when the result is used (or put back); never as unhandled.
      this.ahead.result.catch(() => undefined);
    }
    return this.answer(r);
  }

  /**
   * The objects (records, blocks, filemarks) a read moved over. Variable mode: the record read
   * (also when too long for the buffer) or the filemark met. Fixed mode: the blocks read, plus
   * the filemark or wrong-size record it stopped at.
   */
  private objectsPassed(r: ReadResult): number {
    const bs = this.medium.blockSize;
    if (bs === 0) return r.transferred > 0 || r.filemark ? 1 : 0;
    return r.transferred / bs + (r.filemark || r.ili ? 1 : 0);
  }

  /**
   * Takes back the client's last `count` reads: the tape goes back to where it was before the
   * first of them and st's read state (EOF/EOD seen, residue) is as it was then. A read-ahead
   * of the device itself is dropped with them (never reported: the client did not ask for it).
   */
  async undoReads(count: number): Promise<void> {
    if (!Number.isSafeInteger(count) || count < 0 || count > this.journal.length) {
      throw new RmtError('EINVAL', `cannot take back ${count} reads: ${this.journal.length} can be`);
    }
    let moved = 0;
    const a = this.ahead;
    this.ahead = undefined;
    if (a) moved += this.objectsPassed(await a.result.catch(() => ({ transferred: NaN, filemark: false, ili: false }) as ReadResult));
    const undone = this.journal.splice(this.journal.length - count);
    for (const e of undone) moved += e.moved;
    if (Number.isNaN(moved)) throw new RmtError('EIO', 'a read being taken back failed inside the tape layer: the position is unknown');
    if (moved > 0) {
      const p = await this.medium.readPosition();
      this.check(await this.medium.locate(p.lba - moved));
    }
    if (undone.length > 0) {
      const s = undone[0].before;
      this.writing = s.writing;
      this.eomRefuseNext = s.eomRefuseNext;
      this.eodSeen = s.eodSeen;
      this.filemarkPending = s.filemarkPending;
      this.residue = s.residue;
    }
  }

  /** No record is longer than the tape maximum: a larger buffer reads the same. */
  private readLength(length: number): number {
    return this.medium.blockSize === 0 ? Math.min(length, MAX_TRANSFER) : length;
  }

  /** st's answer to a read result. */
  private answer(r: ReadResult): Buffer {
    if (r.eod && r.sense?.key === 'BLANK CHECK') {
      if (r.transferred > 0) {
        this.eodSeen = false;
        return r.data;
      }
      if (this.eodSeen) throw new RmtError('EIO', 'end of data');
      this.eodSeen = true;
      return r.data;
    }
    this.eodSeen = false;
    if (r.ili && r.residue < 0) throw new RmtError('ENOMEM', r.sense?.message);
    if (!r.ok) throw errnoOf(r);
    if (r.filemark && r.transferred > 0) this.filemarkPending = true;
    return r.data;
  }

  /** MTIOCTOP: returns the value of the `A` reply. */
  async ioctl(opcode: number, count: number): Promise<number> {
    this.journal.length = 0;
    await this.settle();
    const op = tapeOp(this.name.dialect, opcode);
    if (op === undefined) throw new RmtError('EINVAL', `unknown ${this.name.dialect === 'linux' ? 'MTIOCTOP' : 'STIOCTOP'} operation ${opcode}`);
    if (!Number.isSafeInteger(count) || Math.abs(count) > 0x7fffffff) throw new RmtError('EINVAL', `count ${count} is out of range`);
    if (this.writing && FILEMARK_FIRST.has(op)) await this.check(await this.medium.writeFilemarks(1));
    if (!KEEPS_WRITING.has(op)) {
      this.writing = false;
      // st's EOM state ends with the op (a filemark written in the zone included): the next
      // write goes to the tape again, and meets early warning again if still in the zone.
      this.eomRefuseNext = false;
    }
    this.moved();
    return this.operate(op, count);
  }

  private async operate(op: string, count: number): Promise<number> {
    const m = this.medium;
    switch (op) {
      case 'fsf':
        return this.space('filemarks', count);
      case 'bsf':
        return this.space('filemarks', -count);
      case 'fsr':
        return this.space('records', count);
      case 'bsr':
        return this.space('records', -count);
      case 'fsfm': // past `count` filemarks, then back before the last one
        await this.space('filemarks', count);
        return this.space('filemarks', -1);
      case 'bsfm': // back over `count` filemarks, then forward past the last one
        await this.space('filemarks', -count);
        return this.space('filemarks', 1);
      case 'eom':
        return this.check(await m.space('eod'));
      case 'weof':
        if (!this.writable) throw new RmtError('EACCES', 'the device is open for reading only');
        if (count < 0) throw new RmtError('EINVAL', 'negative filemark count');
        if (count > 0 && !this.changeNoted) await this.firstChange('write');
        this.check(this.noteRefusal('write', await m.writeFilemarks(count)));
        this.changes.filemarks += count;
        return count;
      case 'nop':
        if (this.writable && m.isLoaded) return this.check(await m.writeFilemarks(0));
        return 0;
      case 'reset':
      case 'rewind':
      case 'retension':
        return this.check(await m.rewind());
      case 'offline':
      case 'unload':
        this.check(await m.rewind());
        return this.check(await m.unload());
      case 'load':
        return this.check(await m.load());
      case 'erase':
        if (!this.writable) throw new RmtError('EACCES', 'the device is open for reading only');
        if (!this.changeNoted) await this.firstChange('erase');
        this.check(this.noteRefusal('erase', await m.erase()));
        this.changes.erased = true;
        return 0;
      case 'setblk':
        return this.check(await this.drive.setBlockSize(count));
      case 'seek':
        return this.check(await m.locate(count));
      case 'tell':
        if (!m.isLoaded) throw new RmtError('ENOMEDIUM');
        return (await m.readPosition()).lba;
      default:
        return 0;
    }
  }

  private async space(kind: 'filemarks' | 'records', count: number): Promise<number> {
    return this.check(await this.medium.space(kind, count), Math.abs(count));
  }

  /** Counts a write or erase the cartridge refused (DATA PROTECT); passes the result on. */
  private noteRefusal(kind: ChangeKind, r: TapeResult): TapeResult {
    if (r.ok || r.sense?.key !== 'DATA PROTECT') return r;
    const seen = this.refusals.get(kind);
    if (seen) seen.times++;
    else this.refusals.set(kind, { reason: r.sense.message, times: 1 });
    return r;
  }

  /** A failed result throws its errno; a good one answers `value`. */
  private check(r: TapeResult, value = 0): number {
    this.residue = r.residue;
    if (!r.ok) throw errnoOf(r);
    return value;
  }

  /** Anything but reading forgets st's read state. */
  private moved(): void {
    this.eodSeen = false;
    this.filemarkPending = false;
  }

  /** MTIOCGET: Linux x86-64 `struct mtget`. */
  async status(): Promise<Buffer> {
    this.journal.length = 0;
    await this.settle();
    const b = Buffer.alloc(MTGET_SIZE);
    const m = this.medium;
    b.writeBigInt64LE(BigInt(MT_ISSCSI2), 0);
    b.writeBigInt64LE(BigInt(this.residue), 8);
    let gstat = 0;
    let fileno = -1;
    let blkno = -1;
    if (m.isLoaded) {
      const p = await m.readPosition();
      const dsreg = (((DENSITY[m.cfg.mediaType] ?? 0) << 24) | (m.blockSize & 0xffffff)) >>> 0;
      b.writeBigInt64LE(BigInt(dsreg), 16);
      gstat = GMT.ONLINE;
      if (p.lba === 0) gstat |= GMT.BOT;
      else if (p.block === 0 && p.file > 0) gstat |= GMT.EOF;
      if (p.eod) gstat |= GMT.EOD;
      if (p.beyondEarlyWarning) gstat |= GMT.EOT;
      if (m.cfg.writeProtected) gstat |= GMT.WR_PROT;
      fileno = p.file;
      blkno = p.block;
    } else {
      gstat = GMT.DR_OPEN;
    }
    b.writeBigInt64LE(BigInt(gstat >>> 0), 24);
    b.writeInt32LE(fileno, 40);
    b.writeInt32LE(blkno, 44);
    return b;
  }

  /** lseek(2) on a tape device moves nothing (Linux st uses noop_llseek): answers 0. */
  seek(offset: number, whence: number): number {
    this.journal.length = 0;
    if (!Number.isSafeInteger(offset) || whence < 0 || whence > 2) throw new RmtError('EINVAL', 'bad lseek offset or whence');
    return 0;
  }

  /**
   * Ends the device without the client's close, as a crash would end it (the server stops):
   * the record in flight finishes, then what was written since the cartridge's last sync point
   * is dropped rather than closed with filemarks (the client never closed its file, and was
   * never told those records were durable). The drive's session ends as a close ends it
   * (rewind for rewinding devices), the cartridge stays loaded at the end of data of that sync
   * point. Says what was dropped; nothing when the device had nothing unsynced.
   */
  async abandon(): Promise<RolledBack> {
    const none: RolledBack = { records: 0, bytes: 0, endsAt: 'filemark' };
    if (this.closed) return none;
    this.closed = true;
    try {
      // A deferred error of the record in flight no longer matters: it is rolled back with the rest.
      await this.settle().catch(() => undefined);
      if (!this.medium.isLoaded) return none;
      const dropped = await this.medium.discardUnsynced();
      const g = this.medium.eod;
      const endsAt = g.eodLba === 0 ? 'beginning' : g.eodLba === g.tailLba ? 'filemark' : 'unterminated';
      return { records: dropped.objects, bytes: dropped.bytes, endsAt };
    } finally {
      this.writing = false;
      await this.drive.close({ rewind: this.name.rewindOnClose });
    }
  }

  /** Closes the device: filemarks after writing, rewind for rewinding devices; a sync point. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.settle();
      if (this.writing && this.medium.isLoaded) {
        const r = await this.medium.writeFilemarks(this.name.closeFilemarks);
        if (!r.ok) throw errnoOf(r);
        this.changes.filemarks += this.name.closeFilemarks;
      }
    } finally {
      this.writing = false;
      await this.drive.close({ rewind: this.name.rewindOnClose });
    }
  }
}
