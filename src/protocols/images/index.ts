/**
 * Tape images: one codec per image format behind one interface, and import/export of whole
 * images into and out of a cartridge's medium.
 *
 * A codec translates between image bytes and tape events: `record` (1 byte to 2 MiB of data),
 * `tapemark` (a filemark) and `end` (end of the image). Every codec guarantees:
 * - Streaming with bounded memory: a decoder holds at most one record (2 MiB) plus the input
 *   chunk being decoded; an encoder holds nothing (it returns headers and views of the data).
 * - Strict decoding: anything the format does not define, or that disagrees with itself
 *   (truncated header or data, length words that differ, a record that never ends, a record
 *   over 2 MiB or of 0 bytes, unknown flags, bytes after the end marker) throws an
 *   `ImageFormatError` with the byte offset in the image and the reason. A decoder never
 *   yields an event past the first error.
 * - Canonical encoding: decoding what `encoder()` wrote gives back the same events, and
 *   encoding the events of a canonical image (one the encoder could have written) gives back
 *   the same bytes. Canonical: aws chunks of 65535 bytes (the last one shorter), no
 *   compression; simh without erase gaps and with the end-of-medium marker only when asked;
 *   raw: one tape file cut into `blockSize` records (the last one shorter).
 * - `keepsRecords` / `multiFile` say what a format can carry: raw keeps neither record
 *   boundaries nor more than one tape file; aws and simh keep both.
 *
 * Import (`importImage`) is atomic: the medium ends up either with the whole image written
 * after its old end of data, or exactly as it was (see transfer.ts and journal.ts).
 */
import { awsCodec } from './aws.js';
import { ImageRequestError } from './errors.js';
import { rawCodec } from './raw.js';
import { simhCodec } from './simh.js';

export const IMAGE_FORMATS = ['aws', 'simh', 'raw'] as const;
export type ImageFormat = (typeof IMAGE_FORMATS)[number];

export type TapeEvent =
  | { kind: 'record'; data: Buffer; offset: number; /** SIMH bad-data record (only with `acceptBadRecords`). */ bad?: boolean }
  | { kind: 'tapemark'; offset: number }
  | { kind: 'end'; offset: number };

export interface DecodeOptions {
  /** raw: the record size the image is cut into (default 65536). */
  blockSize?: number;
  /** simh: yield records flagged bad (class 8) with `bad: true` instead of rejecting the image. */
  acceptBadRecords?: boolean;
}

export interface EncodeOptions {
  /** aws: largest chunk (1..65535, default 65535). */
  chunkSize?: number;
  /** simh: end the image with the end-of-medium marker 0xFFFFFFFF (default false). */
  endOfMedium?: boolean;
}

export interface ImageDecoder {
  /** Feeds the next bytes of the image; yields the events they complete. Drain before pushing again. */
  push(chunk: Uint8Array): Generator<TapeEvent, void, undefined>;
  /** End of input: yields the last events, always ending with `end`; throws if the image is cut short. */
  finish(): Generator<TapeEvent, void, undefined>;
}

export interface ImageEncoder {
  record(data: Buffer): Buffer[];
  tapemark(): Buffer[];
  end(): Buffer[];
}

export interface ImageCodec {
  readonly format: ImageFormat;
  readonly keepsRecords: boolean;
  readonly multiFile: boolean;
  decoder(opts?: DecodeOptions): ImageDecoder;
  encoder(opts?: EncodeOptions): ImageEncoder;
}

export const CODECS: Readonly<Record<ImageFormat, ImageCodec>> = { aws: awsCodec, simh: simhCodec, raw: rawCodec };

/** The codec of a format name; throws a clear error for anything else. */
export function codecFor(format: string): ImageCodec {
  if (!(IMAGE_FORMATS as readonly string[]).includes(format)) {
    throw new ImageRequestError('BAD_FORMAT', `unknown image format ${JSON.stringify(format)}; expected one of ${IMAGE_FORMATS.join(', ')}`);
  }
  return CODECS[format as ImageFormat];
}

export { ImageFormatError, ImageRequestError } from './errors.js';
export type { ImageRequestCode } from './errors.js';
export { importImage, exportImage } from './transfer.js';
export type { ImportOptions, ImportSummary, ExportOptions } from './transfer.js';
export { ImportJournal } from './journal.js';
export type { JournalEntry, Recovered } from './journal.js';
export { importCartridgeImage, exportCartridgeImage } from './cartridge.js';
export type { ImageDeps } from './cartridge.js';
