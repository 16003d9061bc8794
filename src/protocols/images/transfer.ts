/**
 * Import and export of whole images on a loaded medium that the caller holds exclusively.
 *
 * Import writes at end of data (a blank medium, or after the old data with `append`) while it
 * decodes, so a 20 GB image needs no staging space and no second pass. Atomicity comes from
 * the tape layer's truncation: on any error (malformed image, source error, full cartridge)
 * the medium is cut back to the LBA where the import started, which restores its tape map,
 * stream length and checksums exactly. A crash in the middle leaves the files written up to
 * the last sync point (each filemark is one); the journal records the start LBA before the
 * first write, and `ImportJournal.recover` cuts such media back at the next start. WORM media
 * cannot be cut back, so imports into them are refused.
 */
import { Readable } from 'node:stream';
import { MAX_RECORD, retentionHolds, type Medium, type TapeResult } from '../../tape/index.js';
import { ImageRequestError } from './errors.js';
import { codecFor, type DecodeOptions, type EncodeOptions, type ImageCodec, type ImageDecoder, type ImageEncoder, type ImageFormat, type TapeEvent } from './index.js';
import type { ImportJournal } from './journal.js';

const MAX_BAD_OFFSETS = 1000;

export interface ImportOptions extends DecodeOptions {
  /** Write the image after the medium's data (starting a new tape file) instead of requiring a blank medium. */
  append?: boolean;
  /** Records the import's start so that `ImportJournal.recover` can undo it after a crash. */
  journal?: ImportJournal;
  /** Called after each chunk of the source is written. */
  onProgress?: (p: { bytes: number; records: number; tapemarks: number }) => void;
}

export interface ImportSummary {
  format: ImageFormat;
  medium: string;
  /** Image bytes read. */
  bytes: number;
  records: number;
  tapemarks: number;
  /** Data bytes written to the medium. */
  logicalBytes: number;
  /** Records flagged bad (SIMH class 8) that were imported with `acceptBadRecords`. */
  badRecords: number;
  /** Image offsets of the first 1000 of them. */
  badRecordOffsets: number[];
  /** Where the imported data starts and ends on the medium. */
  startLba: number;
  endLba: number;
}

export interface ExportOptions extends EncodeOptions {
  /** raw only: the tape file to write (0-based); default: the only tape file holding data. */
  file?: number;
  onProgress?: (p: { bytes: number; records: number; tapemarks: number }) => void;
}

/**
 * Decodes `source` in `format` onto `medium`: all of it, or nothing (see the header). Records
 * may be views of the source's chunks: a source must not reuse a chunk's memory after yielding
 * it (Node's file and HTTP streams never do). Ends with the medium rewound.
 */
export async function importImage(medium: Medium, format: string, source: AsyncIterable<Uint8Array>, opts: ImportOptions = {}): Promise<ImportSummary> {
  const codec = codecFor(format);
  const decoder = makeDecoder(codec, opts);
  checkWritable(medium);
  const g = medium.eod;
  if (g.eodLba > 0 && !opts.append) {
    throw new ImageRequestError('NOT_BLANK', `cartridge ${medium.id} is not blank (${g.eodLba} objects, ${g.eodByte} bytes): erase it first, or import with append`);
  }
  await must(medium, await medium.space('eod'));
  const start = medium.eod.eodLba;
  const sum: ImportSummary = { format: codec.format, medium: medium.id, bytes: 0, records: 0, tapemarks: 0, logicalBytes: 0, badRecords: 0, badRecordOffsets: [], startLba: start, endLba: start };
  const oldBs = medium.blockSize;
  medium.setBlockSize(0);
  await opts.journal?.begin({ medium: medium.id, startLba: start, format: codec.format, startedAt: new Date().toISOString() });
  try {
    // Appending after an unterminated last file: end it, so the image starts a new tape file.
    if (g.eodLba > g.tailLba) await must(medium, await medium.writeFilemarks(1));
    const apply = (ev: TapeEvent) => applyEvent(medium, ev, sum);
    for await (const chunk of source) {
      sum.bytes += chunk.length;
      for (const ev of decoder.push(chunk)) await apply(ev);
      opts.onProgress?.({ bytes: sum.bytes, records: sum.records, tapemarks: sum.tapemarks });
    }
    for (const ev of decoder.finish()) await apply(ev);
    await must(medium, await medium.writeFilemarks(0)); // sync point: the import is durable
  } catch (err) {
    await rollback(medium, start, err as Error);
    await opts.journal?.finish(medium.id);
    medium.setBlockSize(oldBs);
    throw err;
  }
  await opts.journal?.finish(medium.id);
  sum.endLba = medium.eod.eodLba;
  medium.setBlockSize(oldBs);
  await must(medium, await medium.rewind());
  return sum;
}

function makeDecoder(codec: ImageCodec, opts: DecodeOptions): ImageDecoder {
  try {
    return codec.decoder(opts);
  } catch (err) {
    throw new ImageRequestError('BAD_OPTION', (err as Error).message);
  }
}

function checkWritable(medium: Medium): void {
  if (!medium.isLoaded) throw new ImageRequestError('NOT_LOADED', `medium ${medium.id} is not loaded`);
  if (medium.cfg.writeProtected) {
    throw new ImageRequestError('WRITE_PROTECTED', medium.cfg.readOnly ? `cartridge ${medium.id} is read-only: ${medium.cfg.readOnly}` : `cartridge ${medium.id} is write protected: clear it first (vtl cartridge protect ${medium.id} --off)`);
  }
  if (medium.cfg.worm) {
    throw new ImageRequestError('WORM', `cartridge ${medium.id} is WORM: a failed import could not be undone there, so images are imported only into rewritable cartridges`);
  }
  if (retentionHolds(medium.cfg)) {
    throw new ImageRequestError(
      'WRITE_PROTECTED',
      `cartridge ${medium.id} is under retention until ${medium.cfg.retentionUntil}: a failed import could not be undone there`,
    );
  }
}

async function applyEvent(medium: Medium, ev: TapeEvent, sum: ImportSummary): Promise<void> {
  if (ev.kind === 'tapemark') {
    await must(medium, await medium.writeFilemarks(1));
    sum.tapemarks++;
  } else if (ev.kind === 'record') {
    if (ev.bad && sum.badRecords++ < MAX_BAD_OFFSETS) sum.badRecordOffsets.push(ev.offset);
    await must(medium, await medium.write(ev.data));
    sum.records++;
    sum.logicalBytes += ev.data.length;
  }
}

/** Turns a failed tape result into an error naming what the drive reported. */
async function must(medium: Medium, r: TapeResult): Promise<void> {
  if (r.ok) return;
  const why = r.sense?.message ?? 'unknown failure';
  if (r.sense?.key === 'VOLUME OVERFLOW') throw new ImageRequestError('NO_ROOM', `the image does not fit on cartridge ${medium.id} (${medium.cfg.capacity} bytes): ${why}`);
  if (r.sense?.key === 'DATA PROTECT') throw new ImageRequestError('WRITE_PROTECTED', `cartridge ${medium.id}: ${why}`);
  throw new ImageRequestError('TAPE_ERROR', `cartridge ${medium.id}: ${why}`);
}

/** Cuts the medium back to `lba`; if that fails too, says so (the journal retries at the next start). */
async function rollback(medium: Medium, lba: number, cause: Error): Promise<void> {
  try {
    if (!medium.isLoaded) throw new Error('the medium was unloaded');
    const r = await medium.locate(lba);
    if (!r.ok) throw new Error(r.sense?.message);
    if (medium.eod.eodLba > lba) {
      const e = await medium.erase();
      if (!e.ok) throw new Error(e.sense?.message);
    }
  } catch (err) {
    throw new Error(`import into ${medium.id} failed (${cause.message}) and undoing it failed too (${(err as Error).message}); the import journal undoes it at the next start`, { cause });
  }
}

// ---- export ------------------------------------------------------------------------------------

/**
 * Encodes `medium` in `format`: every record and filemark from BOT to EOD (aws, simh), or one
 * tape file (raw). Checks the request before any byte is produced (so an HTTP route can still
 * answer with an error), then streams with bounded memory; checksum mismatches surface as
 * stream errors. The medium is rewound at the end.
 */
export async function exportImage(medium: Medium, format: string, opts: ExportOptions = {}): Promise<Readable> {
  const codec = codecFor(format);
  let enc: ImageEncoder;
  try {
    enc = codec.encoder(opts);
  } catch (err) {
    throw new ImageRequestError('BAD_OPTION', (err as Error).message);
  }
  if (!medium.isLoaded) throw new ImageRequestError('NOT_LOADED', `medium ${medium.id} is not loaded`);
  const file = codec.multiFile ? multiFileStart(opts) : await rawFile(medium, opts.file);
  return Readable.from(exportBytes(medium, enc, file, opts), { objectMode: false, highWaterMark: 1 << 20 });
}

function multiFileStart(opts: ExportOptions): { start: number; one: boolean } {
  if (opts.file !== undefined) throw new ImageRequestError('BAD_OPTION', 'file selects a tape file for raw images only; aws and simh images hold the whole tape');
  return { start: 0, one: false };
}

/** The one tape file a raw image holds, or null for a tape with no data. */
async function rawFile(medium: Medium, file: number | undefined): Promise<{ start: number; one: boolean } | null> {
  const files = [];
  for await (const f of medium.files()) files.push(f);
  if (file !== undefined) {
    if (!Number.isSafeInteger(file) || file < 0 || file >= files.length) {
      throw new ImageRequestError('BAD_OPTION', `cartridge ${medium.id} has tape files 0..${files.length - 1}; file ${file} does not exist`);
    }
    return { start: file, one: true };
  }
  const withData = files.filter((f) => f.bytes > 0);
  if (withData.length > 1) {
    throw new ImageRequestError(
      'NOT_REPRESENTABLE',
      `cartridge ${medium.id} holds ${withData.length} tape files with data (${withData.map((f) => f.file).join(', ')}); a raw image holds one: choose it with --file N (file=N in the API), or export the whole tape as aws or simh`,
    );
  }
  return withData.length === 1 ? { start: withData[0].file, one: true } : null;
}

async function* exportBytes(medium: Medium, enc: ImageEncoder, file: { start: number; one: boolean } | null, opts: ExportOptions): AsyncGenerator<Buffer> {
  const oldBs = medium.blockSize;
  const p = { bytes: 0, records: 0, tapemarks: 0 };
  const out = function* (bufs: Buffer[]) {
    for (const b of bufs) {
      p.bytes += b.length;
      yield b;
    }
  };
  medium.setBlockSize(0);
  try {
    await must(medium, await medium.rewind());
    if (file && file.start > 0) await must(medium, await medium.space('filemarks', file.start));
    while (file) {
      const r = await medium.read(MAX_RECORD);
      if (r.sense?.key === 'MEDIUM ERROR') throw new ImageRequestError('TAPE_ERROR', `cartridge ${medium.id}: ${r.sense.message}`);
      if (r.filemark) {
        p.tapemarks++;
        yield* out(enc.tapemark());
        if (file.one) break;
      } else if (r.eod) {
        break;
      } else {
        await must(medium, r);
        p.records++;
        yield* out(enc.record(r.data));
      }
      opts.onProgress?.(p);
    }
    yield* out(enc.end());
    opts.onProgress?.(p);
  } finally {
    medium.setBlockSize(oldBs);
    if (medium.isLoaded) await medium.rewind();
  }
}
