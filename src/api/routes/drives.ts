/**
 * HTTP tape streams and positioning: a drive's session for tools without rmt.
 *
 * - `PUT .../file?blockSize=N` writes the request body as one tape file at the drive's
 *   position: records of N bytes (the last one may be shorter), then a filemark. Where data
 *   follows the position it is refused (409 WOULD_OVERWRITE) unless `overwrite=true`. The body is
 *   read as a stream with backpressure (one record in hand at a time), so memory stays bounded
 *   whatever its size. The answer comes only after the filemark, a sync point. When the upload
 *   breaks off or does not fit, the partial file is erased again and nothing is reported as
 *   written; where it cannot be erased (WORM, retention) it stays, and the error says so.
 * - `GET .../file` streams the next tape file (up to its filemark, or end of data) and leaves
 *   the drive past that filemark, so repeated GETs read file after file. At end of data it
 *   answers 409 END_OF_DATA. A checksum mismatch met at the end of a file aborts the transfer
 *   (the client sees a broken connection, never silently wrong data).
 * - rewind, space, locate and weof run as short sessions and answer the SSC result flags and
 *   the new position; stopping short (at a filemark, EOD or BOM) is a result, not an error.
 * Each request opens the drive's session, so it conflicts (409 IN_USE) with an rmt client or
 * another HTTP stream on the same drive instead of interleaving with it.
 */
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Drive } from '../../library/index.js';
import { MAX_RECORD, type Medium, type SpaceKind, type TapePosition, type TapeResult } from '../../tape/index.js';
import type { ApiContext } from '../app.js';
import { ApiError, checkTape, damageError, isDamage, isDiskFull, senseError } from '../errors.js';
import { errors, libName, positionSchema, tapeOpSchema } from '../schemas.js';

const driveParams = { type: 'object', required: ['lib', 'n'], properties: { lib: libName, n: { type: 'integer', minimum: 0 } } } as const;
type DriveP = { Params: { lib: string; n: number } };
const DEFAULT_BLOCK = 64 * 1024;
const tags = ['tape streams'];

export async function driveRoutes(app: FastifyInstance, ctx: ApiContext): Promise<void> {
  await app.register(async (raw) => fileRoutes(raw, ctx));
  positioningRoutes(app, ctx);
}

async function fileRoutes(app: FastifyInstance, ctx: ApiContext): Promise<void> {
  // The tape file body is never parsed: the handler reads the raw request stream itself.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, _payload, done) => done(null, undefined));

  app.put<DriveP & { Querystring: { blockSize: number; overwrite: boolean } }>('/api/v1/libraries/:lib/drives/:n/file', {
    config: { access: 'operator' },
    schema: {
      summary: 'write the request body as one tape file at the drive position (records of blockSize, then a filemark); refused where data follows unless overwrite=true',
      tags,
      params: driveParams,
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: {
          blockSize: { type: 'integer', minimum: 1, maximum: MAX_RECORD, default: DEFAULT_BLOCK },
          overwrite: { type: 'boolean', default: false, description: 'write even where data follows the position (it is cut off, as on tape)' },
        },
      },
      consumes: ['application/octet-stream'],
      response: {
        200: {
          type: 'object',
          properties: { bytes: { type: 'number' }, records: { type: 'integer' }, blockSize: { type: 'integer' }, file: { type: 'integer' }, earlyWarning: { type: 'boolean' }, position: positionSchema },
        },
        ...errors,
      },
    },
    handler: (req, reply) => putFile(ctx, req, reply),
  });

  app.get<DriveP>('/api/v1/libraries/:lib/drives/:n/file', {
    config: { access: 'operator' },
    schema: { summary: 'read the next tape file as a byte stream', tags, params: driveParams, produces: ['application/octet-stream'], response: { ...errors } },
    handler: (req, reply) => getFile(ctx, req, reply),
  });
}

function positioningRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const op = <B>(name: string, summary: string, body: object | undefined, run: (m: Medium, b: B) => Promise<TapeResult>) =>
    app.post<DriveP & { Body: B }>(`/api/v1/libraries/:lib/drives/:n/${name}`, {
      config: { access: 'operator' },
      schema: { summary, tags, params: driveParams, ...(body ? { body } : {}), response: { 200: tapeOpSchema, ...errors } },
      handler: async (req) => withSession(ctx, req.params, async (m) => {
        const r = await run(m, req.body as B);
        if (!r.ok && !['NO SENSE', 'BLANK CHECK'].includes(r.sense?.key ?? '')) throw senseError(r.sense, name);
        return { ...r, position: await m.readPosition() };
      }),
    });

  op('rewind', 'rewind to the beginning of the medium (a sync point)', undefined, (m) => m.rewind());
  op<{ kind: SpaceKind; count?: number }>(
    'space',
    'SPACE over records or filemarks (negative counts move toward BOM), or to end of data',
    {
      type: 'object',
      required: ['kind'],
      additionalProperties: false,
      properties: { kind: { type: 'string', enum: ['records', 'filemarks', 'eod'] }, count: { type: 'integer', default: 1 } },
    },
    (m, b) => m.space(b.kind, b.count ?? 1),
  );
  op<{ lba: number }>(
    'locate',
    'LOCATE to a logical block address',
    { type: 'object', required: ['lba'], additionalProperties: false, properties: { lba: { type: 'integer', minimum: 0 } } },
    (m, b) => m.locate(b.lba),
  );
  op<{ count?: number }>(
    'weof',
    'WRITE FILEMARKS at the position (count 0 only flushes); a sync point',
    { type: 'object', additionalProperties: false, properties: { count: { type: 'integer', minimum: 0, maximum: 1000000, default: 1 } } },
    (m, b) => m.writeFilemarks(b?.count ?? 1),
  );
}

/** Runs `fn` inside the drive's session; the session's end is a sync point. */
async function withSession<T>(ctx: ApiContext, p: { lib: string; n: number }, fn: (m: Medium, d: Drive) => Promise<T>): Promise<T> {
  const drive = await ctx.libraries.drive(p.lib, p.n);
  const medium = await drive.open();
  let out: T;
  try {
    medium.setBlockSize(0); // HTTP streams speak variable-length records; the next session restores the drive's mode
    out = await fn(medium, drive);
  } catch (err) {
    await drive.close().catch(() => undefined);
    throw err;
  }
  await drive.close();
  return out;
}

async function putFile(ctx: ApiContext, req: FastifyRequest<DriveP & { Querystring: { blockSize: number; overwrite: boolean } }>, reply: FastifyReply) {
  const bs = req.query.blockSize;
  const result = await withSession(ctx, req.params, async (m) => {
    const start = await m.readPosition();
    if (!req.query.overwrite) refuseOverwrite(m, start, req.params);
    let bytes = 0;
    let records = 0;
    let ew = false;
    let stored = true;
    const writeRecord = async (rec: Buffer) => {
      stored = false;
      const r = checkTape(await m.write(rec), 'writing a record');
      stored = true;
      ew ||= r.earlyWarning;
      bytes += rec.length;
      records++;
      ctx.metrics.tapeBytes.inc({ direction: 'write' }, rec.length);
    };
    try {
      let rec = Buffer.allocUnsafe(bs);
      let fill = 0;
      for await (const chunk of req.raw as AsyncIterable<Buffer>) {
        for (let at = 0; at < chunk.length; ) {
          const n = Math.min(bs - fill, chunk.length - at);
          chunk.copy(rec, fill, at, at + n);
          fill += n;
          at += n;
          if (fill === bs) {
            await writeRecord(rec); // the medium may keep the buffer: a fresh one per record
            rec = Buffer.allocUnsafe(bs);
            fill = 0;
          }
        }
      }
      if (!req.raw.complete) throw new ApiError(400, 'INCOMPLETE', 'the upload ended before its declared length');
      if (fill > 0) await writeRecord(rec.subarray(0, fill));
      stored = false;
      checkTape(await m.writeFilemarks(1), 'writing the filemark');
      stored = true;
    } catch (err) {
      const partial = await rollBack(m, start.lba).catch((e: Error) => `the partial file could not be rolled back now (${e.message})`);
      // The store failed (a full disk): the server's trouble, whatever became of the request.
      if (!stored && !(err instanceof ApiError)) throw new ApiError(isDiskFull(err) ? 507 : 500, isDiskFull(err) ? 'STORE_FULL' : 'STORE_FAILED', `writing the tape file failed after ${bytes} bytes: ${(err as Error).message}; ${partial}`);
      if (err instanceof ApiError && err.code === 'END_OF_MEDIUM') {
        throw new ApiError(507, err.code, `the tape file does not fit on ${m.id}: it ran out of room after ${bytes} bytes, and ${partial}; write it to another cartridge (or with a larger capacity)`);
      }
      if (err instanceof ApiError) throw err;
      // A body received whole was not broken off, whatever state the socket is in now.
      if (!req.raw.complete && (req.raw.destroyed || (err as Error).message === 'aborted')) {
        throw new ApiError(400, 'ABORTED', `the upload broke off after ${bytes} bytes; ${partial}`);
      }
      throw err;
    }
    ctx.metrics.tapeFiles.inc({ direction: 'write' });
    return { bytes, records, blockSize: bs, file: start.file, earlyWarning: ew, position: await m.readPosition() };
  });
  return reply.send(result);
}

/**
 * Writing on tape cuts off everything after the position. A PUT is mostly meant to add a file,
 * so it does not do that unasked (after a load the drive is at BOT).
 */
function refuseOverwrite(m: Medium, at: TapePosition, p: { lib: string; n: number }): void {
  const eod = m.eod;
  if (at.lba >= eod.eodLba) return;
  throw new ApiError(
    409,
    'WOULD_OVERWRITE',
    `drive ${p.n} of ${p.lib} is at tape file ${at.file} of ${m.id}, with data after it (the cartridge holds ${eod.eodByte} bytes and ${eod.filemarks} filemarks): ` +
      `writing there would cut that off. Write at end of data (vtl drive write --append), or overwrite on purpose (--overwrite, overwrite=true)`,
  );
}

/**
 * Cuts a broken-off upload away so the tape ends where it did before the request, and says
 * what became of the partial file: a WORM cartridge, or one under retention, keeps it.
 */
async function rollBack(m: Medium, lba: number): Promise<string> {
  let why = 'the drive could not go back to where the file began';
  try {
    const r = await m.locate(lba);
    const e = r.ok ? await m.erase() : r;
    if (!e.ok && e.sense) why = e.sense.message;
  } catch (err) {
    why = (err as Error).message; // the medium's own error handling went back to its last sync point
  }
  if (m.eod.eodLba <= lba) return 'the partial file was rolled back';
  return `the partial file stays on the cartridge (${why})`;
}

async function getFile(ctx: ApiContext, req: FastifyRequest<DriveP>, reply: FastifyReply) {
  const drive = await ctx.libraries.drive(req.params.lib, req.params.n);
  const m = await drive.open();
  let first: Awaited<ReturnType<Medium['read']>>;
  let pos: TapePosition | undefined;
  try {
    m.setBlockSize(0);
    pos = await m.readPosition();
    first = await m.read(MAX_RECORD);
    if (!first.ok) throw senseError(first.sense, pos.eod ? `drive ${req.params.n} is at end of data (tape file ${pos.file})` : 'reading');
    void reply.header('x-tape-file', String(pos.file));
  } catch (err) {
    await drive.close().catch(() => undefined);
    // Damage met before the first byte is an answer that names what cannot be read; met later,
    // it cuts the transfer (below): never silently wrong data.
    if (isDamage(err)) throw damageError(err, `tape file ${pos?.file ?? '?'} of cartridge ${m.id} (drive ${req.params.n} of ${req.params.lib})`);
    throw err;
  }
  async function* records(): AsyncGenerator<Buffer> {
    let r = first;
    try {
      for (;;) {
        if (r.data.length > 0) {
          ctx.metrics.tapeBytes.inc({ direction: 'read' }, r.data.length);
          yield r.data;
        }
        if (r.filemark || r.eod) break; // the filemark was read: the drive now stands past it
        r = await m.read(MAX_RECORD);
        if (!r.ok && !r.eod) throw senseError(r.sense, 'reading');
        if (!r.ok && r.sense?.key === 'MEDIUM ERROR') throw senseError(r.sense, 'reading');
      }
      ctx.metrics.tapeFiles.inc({ direction: 'read' });
    } finally {
      await drive.close().catch(() => undefined);
    }
  }
  return reply.type('application/octet-stream').send(Readable.from(records(), { objectMode: false, highWaterMark: 1 }));
}
