/**
 * Tape layer: a cartridge's medium (records, filemarks, end of data) on top of a stream.
 *
 * Guarantees:
 * - A medium is a sequence of objects ending at EOD: data records (1 byte to 2 MiB) and
 *   filemarks. Each object has one logical block address (LBA) counted as SCSI READ POSITION
 *   counts them. Operations behave as SSC tape commands and report what a drive reports.
 * - The tape map (runs of equal-size records and runs of filemarks against stream byte
 *   offsets, plus an index of filemarks) lives in LevelDB, so locate, space and read position
 *   cost O(log n) on a cartridge of millions of records.
 * - Sync points: writing filemarks (count 0 = flush only), rewind or any repositioning after a
 *   write, erase and unload. The stream's bytes and the tape map commit in one LevelDB batch,
 *   and the caller gets the result only after it: after SIGKILL the medium reopens exactly at
 *   its last sync point.
 * - Writing anywhere but EOD truncates the map and the stream there. WORM media accept writes
 *   only at EOD and refuse erase while retention holds (forever when no retention date is set).
 *   Any medium whose retention date lies ahead accepts writes only at EOD, refuses erase and
 *   deletion, and its date can be extended but not shortened, whoever asks. On WORM, no date
 *   is forever: a WORM medium holding data never gets a date, and may drop its date.
 *   Write-protected media refuse every write and erase, and deletion once they hold data.
 * - Capacity counts logical bytes. Writes that end inside the early-warning zone succeed and
 *   report early warning; a write that would pass the end fails with VOLUME OVERFLOW.
 * - Every tape file (the bytes between filemarks) has a 128-bit streaming checksum stored in the
 *   map; reading a whole file sequentially from its start verifies it when the read reaches the
 *   filemark (or EOD for the last file). A mismatch is a MEDIUM ERROR result, never silent.
 *
 * Results: every operation resolves to a `TapeResult` (it throws only on internal failures such
 * as I/O errors of the store). `ok` is false when the command failed or stopped short of what
 * was asked; `sense` is present whenever a drive would return CHECK CONDITION, including the
 * informational cases where `ok` stays true: a read that meets a filemark (0 bytes, or fewer
 * fixed blocks), a variable read with a buffer longer than the record (ILI, positive residue),
 * and writes that end in the early-warning zone.
 * `residue` is in the command's unit: bytes for variable-mode reads and writes, blocks for
 * fixed-mode ones, objects for space and write filemarks; negative when a record was longer
 * than the buffer (SCSI INFORMATION field semantics).
 */
import type { AbstractLevel } from 'abstract-level';
import type { Streams } from '../stream/index.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type TapeDb = AbstractLevel<any, any, any>;

/** What the tape layer needs: the shared LevelDB (root) and the streams over the chunk store. */
export interface TapeDeps {
  db: TapeDb;
  streams: Streams;
}

export type SenseKeyName =
  | 'NO SENSE'
  | 'NOT READY'
  | 'MEDIUM ERROR'
  | 'ILLEGAL REQUEST'
  | 'DATA PROTECT'
  | 'BLANK CHECK'
  | 'VOLUME OVERFLOW';

export interface Sense {
  key: SenseKeyName;
  /** Numeric sense key. */
  code: number;
  asc: number;
  ascq: number;
  message: string;
}

export interface TapeResult {
  ok: boolean;
  /** Bytes moved to or from the client. */
  transferred: number;
  residue: number;
  /** A filemark was crossed or met (read, space). */
  filemark: boolean;
  /** End of data met (BLANK CHECK). */
  eod: boolean;
  /** End of medium: early warning or the physical end. */
  eom: boolean;
  earlyWarning: boolean;
  /** Beginning of medium met while spacing backward. */
  bom: boolean;
  /** Incorrect length: the record's size was not what the command asked for. */
  ili: boolean;
  sense?: Sense;
}

export interface ReadResult extends TapeResult {
  /**
   * The bytes read. From `read(n, true)` they may be lent (stream/buffers.ts): not to be
   * modified, and given back with `recycleBuffer` once nobody looks at them.
   */
  data: Buffer;
}

export interface TapePosition {
  /** Logical block address: objects (records and filemarks) before the position. */
  lba: number;
  /** Tape file number (filemarks before the position). */
  file: number;
  /** Objects since the start of the current tape file. */
  block: number;
  /** Byte offset in the stream (logical bytes before the position). */
  byte: number;
  /** Beginning of partition. */
  bop: boolean;
  /** At end of data. */
  eod: boolean;
  /** Beyond the early-warning point. */
  beyondEarlyWarning: boolean;
}

export type SpaceKind = 'records' | 'filemarks' | 'eod';

export { MEDIA_TYPES, mediaCapacity, DEFAULT_EARLY_WARNING, MAX_RECORD } from './media.js';
export type { MediaType } from './media.js';
export { Medium, retentionHolds } from './medium.js';
export { MediumInUseError, TapeStore } from './store.js';
export type { MediumSpec, MediumInfo, MediumFlags, MediumImage, TapeFileInfo } from './store.js';
export type { Geometry, MediumConfig } from './medium.js';
export type { Run, MarkRun } from './map.js';
export { FileChecksum, CHECKSUM_ALGORITHM } from './checksum.js';
/** Record buffers that go round: taken or lent, and given back once nobody looks at them (stream/buffers.ts). */
export { lendView, recycleBuffer, takeBuffer } from '../stream/buffers.js';
export { result as tapeResult, failure as tapeFailure, SENSE } from './sense.js';
