/**
 * HTTP routes of tape images, registered by the composition root through the API's `routes`
 * hook (the API never imports protocols), so they get its bearer-token roles and error shape.
 *
 * - `PUT /api/v1/cartridges/:barcode/image?format=` imports the request body. The body is never
 *   buffered: the handler decodes the raw request stream chunk by chunk and writes each record
 *   before it reads on (backpressure), and answers with the summary only after the final sync
 *   point. On any failure the cartridge is as it was before (see transfer.ts).
 * - `GET /api/v1/cartridges/:barcode/image?format=` streams the export; errors found before the
 *   first byte (unknown barcode, a raw image of several files) are normal error answers, later
 *   ones cut the connection. A client that goes away stops the tape reads.
 *
 * Errors: a malformed image is 422 MALFORMED_IMAGE with `offset` and `reason`; refused requests
 * map by their code (BAD_* and NOT_REPRESENTABLE 400, NOT_BLANK / WRITE_PROTECTED / WORM /
 * NOT_LOADED 409, NO_ROOM 507); library errors keep the API's mapping.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import type { ApiContext } from '../../api/app.js';
import { ApiError, damageError, isDamage } from '../../api/errors.js';
import { barcode, errorSchema, errors } from '../../api/schemas.js';
import { LibraryError, type Libraries } from '../../library/index.js';
import { MAX_RECORD } from '../../tape/index.js';
import { exportCartridgeImage, importCartridgeImage } from './cartridge.js';
import { ImageFormatError, ImageRequestError, type ImageRequestCode } from './errors.js';
import { IMAGE_FORMATS, type ImageFormat } from './index.js';
import type { ImportJournal } from './journal.js';

type Route = (app: FastifyInstance, ctx: ApiContext) => Promise<void>;

interface PutQuery {
  format: ImageFormat;
  blockSize?: number;
  append?: boolean;
  acceptBadRecords?: boolean;
}
interface GetQuery {
  format: ImageFormat;
  file?: number;
}
type Params = { Params: { barcode: string } };

const STATUS: Record<ImageRequestCode, number> = {
  BAD_FORMAT: 400,
  BAD_OPTION: 400,
  NOT_REPRESENTABLE: 400,
  NOT_BLANK: 409,
  WRITE_PROTECTED: 409,
  WORM: 409,
  NOT_LOADED: 409,
  NO_ROOM: 507,
  TAPE_ERROR: 500,
};

const tags = ['tape images'];
const params = { type: 'object', required: ['barcode'], properties: { barcode } } as const;
const format = { type: 'string', enum: [...IMAGE_FORMATS], description: 'aws (AWSTAPE), simh (.tap) or raw (one tape file)' } as const;
const int = { type: 'integer' } as const;

const summarySchema = {
  type: 'object',
  description: 'What was imported and where it lies on the cartridge',
  properties: {
    format: { type: 'string' },
    medium: { type: 'string' },
    bytes: { type: 'number', description: 'image bytes read' },
    records: int,
    tapemarks: int,
    logicalBytes: { type: 'number', description: 'data bytes written' },
    badRecords: int,
    badRecordOffsets: { type: 'array', items: { type: 'number' } },
    startLba: int,
    endLba: int,
  },
} as const;

const malformedSchema = {
  type: 'object',
  description: 'A malformed image: nothing was imported',
  required: ['error', 'message', 'offset', 'reason'],
  properties: { ...errorSchema.properties, offset: { type: 'number', description: 'byte offset in the image' }, reason: { type: 'string' } },
} as const;

/** The routes, with the journal that makes imports undoable after a crash. */
export function imageRoutes(journal?: ImportJournal): Route {
  return async (app, ctx) => {
    // The image body is never parsed: the handler reads the raw request stream itself.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', (_req, _payload, done) => done(null, undefined));

    app.put<Params & { Querystring: PutQuery }>('/api/v1/cartridges/:barcode/image', {
      config: { access: 'operator' },
      schemaErrorFormatter: namingAllowed,
      schema: {
        summary: 'import a tape image (the request body) onto a cartridge: all of it or nothing',
        description: 'The cartridge must be blank unless append=true. Answers after the final sync point.',
        tags,
        params,
        querystring: {
          type: 'object',
          required: ['format'],
          additionalProperties: false,
          properties: {
            format,
            blockSize: { type: 'integer', minimum: 1, maximum: MAX_RECORD, description: 'raw: record size (default 65536)' },
            append: { type: 'boolean', default: false, description: 'write after the data on the cartridge' },
            acceptBadRecords: { type: 'boolean', default: false, description: 'simh: import records flagged bad instead of refusing the image' },
          },
        },
        consumes: ['application/octet-stream'],
        response: { 200: summarySchema, 422: malformedSchema, ...errors },
      },
      handler: (req, reply) => putImage(ctx, journal, req, reply),
    });

    app.get<Params & { Querystring: GetQuery }>('/api/v1/cartridges/:barcode/image', {
      config: { access: 'auditor' },
      schemaErrorFormatter: namingAllowed,
      schema: {
        summary: 'export a cartridge as a tape image (streamed)',
        description: 'aws and simh hold the whole tape; raw holds one tape file (file=N, or the only one with data).',
        tags,
        params,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { format: { ...format, default: 'aws' }, file: { type: 'integer', minimum: 0, description: 'raw: the tape file (0-based)' } },
        },
        produces: ['application/octet-stream'],
        response: { ...errors },
      },
      handler: (req, reply) => getImage(ctx, req, reply),
    });
  };
}

async function putImage(ctx: ApiContext, journal: ImportJournal | undefined, req: FastifyRequest<Params & { Querystring: PutQuery }>, reply: FastifyReply) {
  const { barcode: code } = req.params;
  const q = req.query;
  try {
    await checkNotHeld(ctx.libraries, code);
    const sum = await importCartridgeImage({ libraries: ctx.libraries, journal }, code, q.format, body(req.raw), {
      blockSize: q.blockSize,
      append: q.append,
      acceptBadRecords: q.acceptBadRecords,
    });
    ctx.metrics.tapeBytes.inc({ direction: 'write' }, sum.logicalBytes);
    return reply.send(sum);
  } catch (err) {
    if (!req.raw.complete) discardRest(req.raw);
    if (err instanceof ImageFormatError) {
      return reply.code(422).send({ error: err.code, message: err.message, offset: err.offset, reason: err.reason });
    }
    if (req.raw.destroyed && !(err instanceof ImageRequestError) && !(err instanceof LibraryError)) {
      throw new ApiError(400, 'ABORTED', `the upload broke off; nothing was imported into ${code}`);
    }
    throw apiError(err);
  }
}

/**
 * The request body as chunks. Stopping early (a malformed image) leaves the request alive, so
 * the error can still be answered; an upload that ends short of its declared length fails.
 */
async function* body(raw: IncomingMessage): AsyncGenerator<Buffer> {
  for await (const chunk of raw.iterator({ destroyOnReturn: false })) yield chunk as Buffer;
  if (!raw.complete) throw new ApiError(400, 'INCOMPLETE', 'the upload ended before its declared length; nothing was imported');
}

/**
 * Reads and drops what is left of a refused upload, so that the client, still sending, gets
 * to read the answer (a connection closed under it loses the answer in most HTTP clients).
 * Past DISCARD_LIMIT bytes the connection is cut instead: the answer has long been sent.
 */
function discardRest(raw: IncomingMessage): void {
  let dropped = 0;
  raw.on('data', (c: Buffer) => {
    dropped += c.length;
    if (dropped > DISCARD_LIMIT) raw.socket.destroy();
  });
  raw.resume();
}

const DISCARD_LIMIT = 256 * 1024 * 1024;

async function getImage(ctx: ApiContext, req: FastifyRequest<Params & { Querystring: GetQuery }>, reply: FastifyReply) {
  const { barcode: code } = req.params;
  const { format: fmt, file } = req.query;
  let out: Readable;
  try {
    await checkNotHeld(ctx.libraries, code);
    out = await exportCartridgeImage({ libraries: ctx.libraries }, code, fmt, { file });
  } catch (err) {
    throw apiError(err);
  }
  // The first chunk is read before answering: a failure there (damaged data) is an ordinary
  // error answer, not a stream that fails under headers already set for the image. A failure
  // after the first byte cuts the connection (never a silently short or wrong image).
  let body: Readable;
  try {
    body = await startedStream(out);
  } catch (err) {
    if (!out.destroyed) out.destroy();
    throw apiError(err, `cartridge ${code}`);
  }
  // A client that goes away stops the export (and lets the cartridge go).
  reply.raw.once('close', () => {
    if (!body.readableEnded) body.destroy();
    if (!out.destroyed) out.destroy();
  });
  return reply
    .type('application/octet-stream')
    .header('content-disposition', `attachment; filename="${code}.${EXTENSION[fmt]}"`)
    .header('x-image-format', fmt)
    .send(body);
}

/** `out` with its first chunk already read (a failure reading it is thrown here). */
async function startedStream(out: Readable): Promise<Readable> {
  const it = out[Symbol.asyncIterator]();
  const head = await it.next();
  async function* all(): AsyncGenerator<Buffer> {
    try {
      if (head.done) return;
      yield head.value as Buffer;
      for (let n = await it.next(); !n.done; n = await it.next()) yield n.value as Buffer;
    } finally {
      await it.return?.();
    }
  }
  return Readable.from(all(), { objectMode: false, highWaterMark: 1 << 16 });
}

const EXTENSION: Record<ImageFormat, string> = { aws: 'aws', simh: 'tap', raw: 'img' };

/**
 * A cartridge outside a drive that is already mounted is in an image transfer: say so plainly
 * (the tape layer's own refusal is not an API error).
 */
async function checkNotHeld(libs: Libraries, code: string): Promise<void> {
  const cart = await libs.getCartridge(code);
  if (cart.location.kind !== 'drive' && libs.tapes.isLoaded(code)) {
    throw new LibraryError('IN_USE', `cartridge ${code} is busy with another image transfer`);
  }
}

/** Validation messages that name the allowed values (`format must be one of aws, simh, raw`). */
function namingAllowed(errs: Array<{ instancePath: string; message?: string; params: Record<string, unknown> }>, where: string): Error {
  const one = (e: (typeof errs)[number]) => {
    const allowed = e.params.allowedValues as unknown[] | undefined;
    return `${where}${e.instancePath} ${e.message ?? 'is invalid'}${allowed ? `: ${allowed.join(', ')}` : ''}`;
  };
  return new Error(errs.map(one).join('; '));
}

function apiError(err: unknown, what?: string): unknown {
  if (err instanceof ImageRequestError) return new ApiError(STATUS[err.code] ?? 500, err.code, err.message);
  if (isDamage(err)) return damageError(err, what);
  return err;
}
