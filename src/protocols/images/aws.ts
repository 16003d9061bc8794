/**
 * AWSTAPE (and Hercules HET): every block has a 6-byte header: u16 LE length of this block,
 * u16 LE length of the previous block, flags1, flags2. flags1: 0x80 new record, 0x40 tapemark,
 * 0x20 end of record; a record is a sequence of chunks from the new-record flag to the
 * end-of-record flag. HET adds compression in flags1 & 0x03 (1 = zlib, 2 = bzip2) over the
 * whole record's data: zlib is inflated on import, bzip2 is refused.
 *
 * The decoder checks the previous-length field of every header against the block before it:
 * that is what makes trailing garbage and corruption detectable in a format with no checksums.
 */
import { inflateSync } from 'node:zlib';
import { MAX_RECORD } from '../../tape/index.js';
import { ByteQueue } from './bytes.js';
import { ImageFormatError } from './errors.js';
import type { DecodeOptions, EncodeOptions, ImageCodec, ImageDecoder, ImageEncoder, TapeEvent } from './index.js';

const HEADER = 6;
const MAX_CHUNK = 0xffff;
const NEW_RECORD = 0x80;
const TAPEMARK = 0x40;
const END_RECORD = 0x20;
const COMPRESSION = 0x03;
const ZLIB = 0x01;
const UNKNOWN = 0x1c;
/** Compressed records may come out slightly larger than their 2 MiB of data. */
const MAX_COMPRESSED = MAX_RECORD + MAX_CHUNK;

interface Header {
  at: number;
  cur: number;
  flags: number;
}

interface Pending {
  at: number;
  parts: Buffer[];
  bytes: number;
  compression: number;
}

class AwsDecoder implements ImageDecoder {
  private readonly q = new ByteQueue();
  private prev = 0;
  private hdr: Header | null = null;
  private rec: Pending | null = null;

  *push(chunk: Uint8Array): Generator<TapeEvent, void, undefined> {
    this.q.push(chunk);
    for (;;) {
      if (!this.hdr) {
        if (this.q.available < HEADER) return;
        this.hdr = this.header();
      }
      if (this.q.available < this.hdr.cur) return;
      const h = this.hdr;
      this.hdr = null;
      const data = this.q.take(h.cur);
      this.prev = h.cur;
      const ev = this.block(h, data);
      if (ev) yield ev;
    }
  }

  *finish(): Generator<TapeEvent, void, undefined> {
    const q = this.q;
    if (this.hdr) {
      throw this.fail(this.hdr.at, `image ends inside a block: its header announces ${this.hdr.cur} bytes, only ${q.available} follow`);
    }
    if (q.available > 0) throw this.fail(q.offset, `image ends with ${q.available} bytes, short of a ${HEADER}-byte block header`);
    if (this.rec) throw this.fail(this.rec.at, 'the record starting here never ends: no chunk with the end-of-record flag before the end of the image');
    yield { kind: 'end', offset: q.offset };
  }

  private fail(at: number, reason: string): ImageFormatError {
    return new ImageFormatError('aws', at, reason);
  }

  /** Reads and checks one header against the state it arrives in. */
  private header(): Header {
    const at = this.q.offset;
    const b = this.q.take(HEADER);
    const cur = b.readUInt16LE(0);
    const prev = b.readUInt16LE(2);
    const flags = b[4];
    const hex = (n: number) => `0x${n.toString(16).padStart(2, '0')}`;
    if (prev !== this.prev) throw this.fail(at, `previous-length field is ${prev}, but the block before is ${this.prev} bytes`);
    if (b[5] !== 0) throw this.fail(at, `unsupported flags2 byte ${hex(b[5])}`);
    if (flags & UNKNOWN) throw this.fail(at, `unknown flag bits in ${hex(flags)}`);
    if (flags & TAPEMARK) {
      if (flags !== TAPEMARK || cur !== 0) throw this.fail(at, `a tapemark header must have flags 0x40 and length 0, got flags ${hex(flags)}, length ${cur}`);
      if (this.rec) throw this.fail(at, `tapemark inside the record that starts at byte ${this.rec.at} (it has no end-of-record chunk)`);
      return { at, cur, flags };
    }
    if (cur === 0) throw this.fail(at, 'empty data chunk (length 0 without the tapemark flag)');
    const method = flags & COMPRESSION;
    if (method !== 0 && method !== ZLIB) {
      throw this.fail(at, `compression method ${method} is not supported (only zlib): convert the image with hetupd -d first`);
    }
    if (this.rec) {
      if (flags & NEW_RECORD) throw this.fail(at, `a new record starts, but the record at byte ${this.rec.at} never ended (no end-of-record flag)`);
      if (method !== this.rec.compression) throw this.fail(at, 'chunk compression differs from the first chunk of its record');
      const max = this.rec.compression ? MAX_COMPRESSED : MAX_RECORD;
      if (this.rec.bytes + cur > max) throw this.fail(this.rec.at, `record over ${max} bytes (tapes hold records of 1 byte to ${MAX_RECORD} bytes)`);
    } else if (!(flags & NEW_RECORD)) {
      throw this.fail(at, 'chunk continues a record, but no record was started (no new-record flag)');
    }
    return { at, cur, flags };
  }

  /** Applies one block; returns the event it completes. */
  private block(h: Header, data: Buffer): TapeEvent | undefined {
    if (h.flags & TAPEMARK) return { kind: 'tapemark', offset: h.at };
    const rec = (this.rec ??= { at: h.at, parts: [], bytes: 0, compression: h.flags & COMPRESSION });
    rec.parts.push(data);
    rec.bytes += data.length;
    if (!(h.flags & END_RECORD)) return undefined;
    this.rec = null;
    const raw = rec.parts.length === 1 ? rec.parts[0] : Buffer.concat(rec.parts, rec.bytes);
    return { kind: 'record', data: rec.compression ? this.inflate(rec.at, raw) : raw, offset: rec.at };
  }

  private inflate(at: number, data: Buffer): Buffer {
    let out: Buffer;
    try {
      out = inflateSync(data, { maxOutputLength: MAX_RECORD });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ERR_BUFFER_TOO_LARGE') throw this.fail(at, `compressed record inflates to over ${MAX_RECORD} bytes`);
      throw this.fail(at, `compressed record does not inflate: ${e.message}`);
    }
    if (out.length === 0) throw this.fail(at, 'compressed record inflates to 0 bytes');
    return out;
  }
}

class AwsEncoder implements ImageEncoder {
  private prev = 0;

  constructor(private readonly chunk: number) {}

  record(data: Buffer): Buffer[] {
    if (data.length < 1 || data.length > MAX_RECORD) throw new RangeError(`aws: record of ${data.length} bytes (1..${MAX_RECORD})`);
    const out: Buffer[] = [];
    for (let at = 0; at < data.length; at += this.chunk) {
      const part = data.subarray(at, at + this.chunk);
      const flags = (at === 0 ? NEW_RECORD : 0) | (at + part.length === data.length ? END_RECORD : 0);
      out.push(this.header(part.length, flags), part);
    }
    return out;
  }

  tapemark(): Buffer[] {
    return [this.header(0, TAPEMARK)];
  }

  end(): Buffer[] {
    return [];
  }

  private header(cur: number, flags: number): Buffer {
    const h = Buffer.alloc(HEADER);
    h.writeUInt16LE(cur, 0);
    h.writeUInt16LE(this.prev, 2);
    h[4] = flags;
    this.prev = cur;
    return h;
  }
}

export const awsCodec: ImageCodec = {
  format: 'aws',
  keepsRecords: true,
  multiFile: true,
  decoder: (_opts?: DecodeOptions) => new AwsDecoder(),
  encoder: (opts: EncodeOptions = {}) => {
    const size = opts.chunkSize ?? MAX_CHUNK;
    if (!Number.isSafeInteger(size) || size < 1 || size > MAX_CHUNK) throw new RangeError(`aws chunk size must be 1..${MAX_CHUNK}, got ${size}`);
    return new AwsEncoder(size);
  },
};
