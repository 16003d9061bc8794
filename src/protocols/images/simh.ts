/**
 * SIMH magtape (`.tap`): each record is a u32 LE word (class in the top 4 bits, length in the
 * low 28), the data padded to an even length, and the same word again. Words 0 (tapemark) and
 * 0xFFFFFFFF (end of medium) stand alone; 0xFFFFFFFE (erase gap) is skipped. Class 0 is good
 * data; class 8 is a record the source drive could not read: it is rejected unless the caller
 * asks to accept bad records, and even then it is reported (`bad: true`), never silent.
 */
import { MAX_RECORD } from '../../tape/index.js';
import { ByteQueue } from './bytes.js';
import { ImageFormatError } from './errors.js';
import type { DecodeOptions, EncodeOptions, ImageCodec, ImageDecoder, ImageEncoder, TapeEvent } from './index.js';

const WORD = 4;
const TAPEMARK = 0;
const END_OF_MEDIUM = 0xffffffff;
const ERASE_GAP = 0xfffffffe;
const LENGTH = 0x0fffffff;
const GOOD = 0;
const BAD = 8;

const hex = (w: number) => `0x${w.toString(16).padStart(8, '0')}`;

class SimhDecoder implements ImageDecoder {
  private readonly q = new ByteQueue();
  /** The leading word of the record whose data is awaited, and where it was. */
  private word: { at: number; w: number; len: number } | null = null;
  /** Offset of the end-of-medium marker once seen. */
  private eom: number | null = null;

  constructor(private readonly acceptBad: boolean) {}

  *push(chunk: Uint8Array): Generator<TapeEvent, void, undefined> {
    this.q.push(chunk);
    for (;;) {
      if (this.eom !== null) {
        if (this.q.available > 0) throw this.fail(this.q.offset, `${this.q.available}+ bytes after the end-of-medium marker at byte ${this.eom}`);
        return;
      }
      if (!this.word) {
        if (this.q.available < WORD) return;
        const at = this.q.offset;
        const w = this.q.take(WORD).readUInt32LE(0);
        const ev = this.marker(at, w);
        if (ev) yield ev;
        continue;
      }
      const { at, w, len } = this.word;
      const padded = len + (len & 1);
      if (this.q.available < padded + WORD) return;
      this.word = null;
      const data = this.q.take(len);
      if (padded > len) this.q.take(1);
      const trailAt = this.q.offset;
      const trail = this.q.take(WORD).readUInt32LE(0);
      if (trail !== w) throw this.fail(trailAt, `trailing length word ${hex(trail)} differs from the leading word ${hex(w)} at byte ${at}`);
      yield w >>> 28 === BAD ? { kind: 'record', data, offset: at, bad: true } : { kind: 'record', data, offset: at };
    }
  }

  *finish(): Generator<TapeEvent, void, undefined> {
    const q = this.q;
    if (this.word) {
      const need = this.word.len + (this.word.len & 1) + WORD;
      throw this.fail(this.word.at, `image ends inside a record: ${this.word.len} data bytes and the trailing length word need ${need} bytes, only ${q.available} follow`);
    }
    if (q.available > 0) throw this.fail(q.offset, `image ends with ${q.available} bytes, short of a ${WORD}-byte length word`);
    yield { kind: 'end', offset: this.eom ?? q.offset };
  }

  private fail(at: number, reason: string): ImageFormatError {
    return new ImageFormatError('simh', at, reason);
  }

  /** A leading word: a marker (returns its event) or the start of a record. */
  private marker(at: number, w: number): TapeEvent | undefined {
    if (w === TAPEMARK) return { kind: 'tapemark', offset: at };
    if (w === END_OF_MEDIUM) {
      this.eom = at;
      return undefined;
    }
    if (w === ERASE_GAP) return undefined;
    const cls = w >>> 28;
    const len = w & LENGTH;
    if (cls !== GOOD && cls !== BAD) throw this.fail(at, `unsupported SIMH record class ${cls.toString(16).toUpperCase()} (word ${hex(w)})`);
    // Lengths first: a garbage word must not send the user after a bad-record option that
    // would fail next anyway.
    if (len > MAX_RECORD) throw this.fail(at, `record of ${len} bytes is over the ${MAX_RECORD}-byte maximum`);
    if (len === 0) throw this.fail(at, `record of 0 bytes (word ${hex(w)})`);
    if (cls === BAD && !this.acceptBad) {
      throw this.fail(at, `record of ${len} bytes flagged bad (class 8): the source drive could not read it; import with --accept-bad-records (acceptBadRecords=true in the API) to keep its data anyway`);
    }
    this.word = { at, w, len };
    return undefined;
  }
}

class SimhEncoder implements ImageEncoder {
  constructor(private readonly eom: boolean) {}

  record(data: Buffer): Buffer[] {
    if (data.length < 1 || data.length > MAX_RECORD) throw new RangeError(`simh: record of ${data.length} bytes (1..${MAX_RECORD})`);
    const len = word(data.length);
    return data.length & 1 ? [len, data, Buffer.alloc(1), len] : [len, data, len];
  }

  tapemark(): Buffer[] {
    return [word(TAPEMARK)];
  }

  end(): Buffer[] {
    return this.eom ? [word(END_OF_MEDIUM)] : [];
  }
}

function word(w: number): Buffer {
  const b = Buffer.alloc(WORD);
  b.writeUInt32LE(w, 0);
  return b;
}

export const simhCodec: ImageCodec = {
  format: 'simh',
  keepsRecords: true,
  multiFile: true,
  decoder: (opts: DecodeOptions = {}) => new SimhDecoder(opts.acceptBadRecords ?? false),
  encoder: (opts: EncodeOptions = {}) => new SimhEncoder(opts.endOfMedium ?? false),
};
