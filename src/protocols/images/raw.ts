/**
 * Raw images: the plain bytes of one tape file (a `tar` archive, an AIX `mksysb`, a dump).
 * Decoding cuts them into records of `blockSize` bytes (the last one may be shorter) and ends
 * the file with a filemark; an empty image is an empty tape. Encoding writes the data of the
 * records of one tape file back to back, so record boundaries are not kept; a second tape file
 * is refused (the exporter picks which tape file to write, see transfer.ts).
 */
import { MAX_RECORD } from '../../tape/index.js';
import { ByteQueue } from './bytes.js';
import type { DecodeOptions, ImageCodec, ImageDecoder, ImageEncoder, TapeEvent } from './index.js';

export const DEFAULT_RAW_BLOCK = 65536;

class RawDecoder implements ImageDecoder {
  private readonly q = new ByteQueue();

  constructor(private readonly bs: number) {}

  *push(chunk: Uint8Array): Generator<TapeEvent, void, undefined> {
    this.q.push(chunk);
    while (this.q.available >= this.bs) {
      const offset = this.q.offset;
      yield { kind: 'record', data: this.q.take(this.bs), offset };
    }
  }

  *finish(): Generator<TapeEvent, void, undefined> {
    const q = this.q;
    if (q.available > 0) {
      const offset = q.offset;
      yield { kind: 'record', data: q.take(q.available), offset };
    }
    if (q.offset > 0) yield { kind: 'tapemark', offset: q.offset };
    yield { kind: 'end', offset: q.offset };
  }
}

class RawEncoder implements ImageEncoder {
  private closed = false;

  record(data: Buffer): Buffer[] {
    if (this.closed) throw new RangeError('raw: an image holds one tape file; a record follows its filemark');
    return [data];
  }

  tapemark(): Buffer[] {
    if (this.closed) throw new RangeError('raw: an image holds one tape file; a second filemark follows it');
    this.closed = true;
    return [];
  }

  end(): Buffer[] {
    return [];
  }
}

export function checkBlockSize(bs: number): number {
  if (!Number.isSafeInteger(bs) || bs < 1 || bs > MAX_RECORD) throw new RangeError(`raw block size must be 1..${MAX_RECORD} bytes, got ${bs}`);
  return bs;
}

export const rawCodec: ImageCodec = {
  format: 'raw',
  keepsRecords: false,
  multiFile: false,
  decoder: (opts: DecodeOptions = {}) => new RawDecoder(checkBlockSize(opts.blockSize ?? DEFAULT_RAW_BLOCK)),
  encoder: () => new RawEncoder(),
};
