/** Cartridges: create, list with filters and paging, show with usage and tape files, flags, erase. */
import type { FastifyInstance } from 'fastify';
import type { Cartridge, CartridgeSpec, Libraries } from '../../library/index.js';
import type { MediaType, TapeFileInfo } from '../../tape/index.js';
import type { ApiContext } from '../app.js';
import { barcode, cartridgeDetailSchema, cartridgeSchema, errors, libName, mediaType } from '../schemas.js';

const bcParams = { type: 'object', required: ['barcode'], properties: { barcode } } as const;
type Bc = { Params: { barcode: string } };

/** What the list can be ordered by; ties are broken by barcode, so pages never overlap. */
const SORT_KEYS = ['barcode', 'mediaType', 'state', 'location', 'logicalBytes', 'files', 'createdAt', 'retentionUntil'] as const;
type SortKey = (typeof SORT_KEYS)[number];

interface ListQuery {
  library?: string;
  state?: Cartridge['state'];
  location?: string;
  mediaType?: string;
  prefix?: string;
  q?: string;
  sort: SortKey;
  order: 'asc' | 'desc';
  offset: number;
  limit: number;
}

export async function cartridgeRoutes(app: FastifyInstance, ctx: ApiContext): Promise<void> {
  const libs = ctx.libraries;
  const tags = ['cartridges'];

  app.get<{ Querystring: ListQuery }>('/api/v1/cartridges', {
    config: { access: 'auditor' },
    schema: {
      summary: 'list cartridges, filtered (q: part of the barcode), sorted and paged',
      tags,
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: {
          library: libName,
          state: { type: 'string', enum: ['scratch', 'in use', 'full', 'expired'] },
          location: { type: 'string', enum: ['drive', 'slot', 'mailslot', 'vault'] },
          mediaType,
          prefix: { type: 'string', pattern: '^[A-Z0-9]{0,16}$' },
          q: { type: 'string', pattern: '^[A-Za-z0-9]{0,16}$', description: 'part of the barcode, any case' },
          sort: { type: 'string', enum: [...SORT_KEYS], default: 'barcode' },
          order: { type: 'string', enum: ['asc', 'desc'], default: 'asc' },
          offset: { type: 'integer', minimum: 0, default: 0 },
          limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
        },
      },
      response: {
        200: { type: 'object', properties: { items: { type: 'array', items: cartridgeSchema }, total: { type: 'integer' }, offset: { type: 'integer' }, limit: { type: 'integer' } } },
        ...errors,
      },
    },
    handler: async (req) => {
      const q = req.query;
      if (q.library !== undefined) await libs.getLibrary(q.library);
      // Barcode filters need no tape read: applied first. Sorted by barcode with no other
      // filter, a page reads only its own cartridges (10,000 cartridges: one page no longer
      // reads them all).
      const filter = { library: q.library, barcode: (b: string) => (q.prefix === undefined || b.startsWith(q.prefix)) && (!q.q || b.includes(q.q.toUpperCase())) };
      if (q.sort === 'barcode' && q.state === undefined && q.location === undefined && q.mediaType === undefined) {
        const barcodes = await libs.listBarcodes(filter);
        if (q.order === 'desc') barcodes.reverse();
        // One deleted since the scan is left out, not an error.
        const page = await Promise.all(barcodes.slice(q.offset, q.offset + q.limit).map((b) => libs.getCartridge(b).catch(() => undefined)));
        const items = page.filter((c) => c !== undefined);
        return { items, total: barcodes.length, offset: q.offset, limit: q.limit };
      }
      const all = (await libs.listCartridges(filter)).filter(
        (c) => (q.state === undefined || c.state === q.state) && (q.location === undefined || c.location.kind === q.location) && (q.mediaType === undefined || c.mediaType === q.mediaType),
      );
      sortCartridges(all, q.sort, q.order);
      return { items: all.slice(q.offset, q.offset + q.limit), total: all.length, offset: q.offset, limit: q.limit };
    },
  });

  app.post<{ Body: CartridgeSpec & { library: string } }>('/api/v1/cartridges', {
    config: { access: 'operator' },
    schema: {
      summary: 'create cartridges in free slots of a library: a list of barcodes, or a prefix with start and count',
      tags,
      body: {
        type: 'object',
        required: ['library'],
        additionalProperties: false,
        properties: {
          library: libName,
          barcodes: { type: 'array', minItems: 1, maxItems: 10000, items: barcode },
          prefix: { type: 'string', pattern: '^[A-Z0-9]{0,5}$' },
          first: barcode,
          start: { type: 'integer', minimum: 0 },
          count: { type: 'integer', minimum: 1, maximum: 10000 },
          mediaType,
          capacity: { type: 'integer', minimum: 1 },
          worm: { type: 'boolean' },
          writeProtected: { type: 'boolean' },
          retentionUntil: { anyOf: [{ type: 'string', format: 'date-time' }, { type: 'null' }] },
        },
      },
      response: { 201: { type: 'object', properties: { items: { type: 'array', items: cartridgeSchema } } }, ...errors },
    },
    handler: async (req, reply) => reply.code(201).send({ items: await libs.createCartridges({ ...req.body, mediaType: req.body.mediaType as MediaType | undefined }) }),
  });

  app.get<Bc>('/api/v1/cartridges/:barcode', {
    config: { access: 'auditor' },
    schema: {
      summary: 'show a cartridge: location, state, logical and stored bytes, dedup ratio, tape files',
      tags,
      params: bcParams,
      response: { 200: cartridgeDetailSchema, ...errors },
    },
    handler: async (req) => detail(ctx, req.params.barcode),
  });

  app.patch<Bc & { Body: { writeProtected?: boolean; retentionUntil?: string | null } }>('/api/v1/cartridges/:barcode', {
    config: { access: 'operator' },
    schema: {
      summary: 'set write protect or the retention date (WORM retention can only be extended)',
      tags,
      params: bcParams,
      body: {
        type: 'object',
        additionalProperties: false,
        minProperties: 1,
        properties: { writeProtected: { type: 'boolean' }, retentionUntil: { anyOf: [{ type: 'string', format: 'date-time' }, { type: 'null' }] } },
      },
      response: { 200: cartridgeSchema, ...errors },
    },
    handler: async (req) => {
      const before = await libs.getCartridge(req.params.barcode);
      const after = await libs.updateCartridge(req.params.barcode, req.body);
      req.auditDetail = flagChanges(before, after);
      return after;
    },
  });

  app.post<Bc>('/api/v1/cartridges/:barcode/erase', {
    config: { access: 'operator' },
    schema: { summary: 'erase the whole cartridge (its data becomes garbage)', tags, params: bcParams, response: { 200: cartridgeSchema, ...errors } },
    handler: async (req) => {
      const before = await libs.getCartridge(req.params.barcode);
      const after = await libs.eraseCartridge(req.params.barcode);
      req.auditDetail = `erased ${holding(before)}`;
      return after;
    },
  });

  app.delete<Bc>('/api/v1/cartridges/:barcode', {
    config: { access: 'operator' },
    schema: { summary: 'delete a cartridge that is not in a drive (its data becomes garbage)', tags, params: bcParams, response: { 200: { type: 'object', properties: { ok: { type: 'boolean' } } }, ...errors } },
    handler: async (req) => {
      const before = await libs.getCartridge(req.params.barcode);
      await libs.deleteCartridge(req.params.barcode);
      req.auditDetail = `deleted ${holding(before)}`;
      return { ok: true };
    },
  });
}

/** The audit detail of a PATCH: each flag that changed, old and new value. */
function flagChanges(before: Cartridge, after: Cartridge): string {
  const shown = (v: string | boolean | null) => (v === null ? 'none' : String(v));
  const parts: string[] = [];
  if (before.writeProtected !== after.writeProtected) parts.push(`writeProtected ${before.writeProtected} -> ${after.writeProtected}`);
  if (before.retentionUntil !== after.retentionUntil) parts.push(`retentionUntil ${shown(before.retentionUntil)} -> ${shown(after.retentionUntil)}`);
  return parts.join('; ') || 'no change';
}

/** What a cartridge held, for the audit detail of an erase or delete. */
function holding(c: Cartridge): string {
  const flags = [c.worm ? 'WORM' : '', c.retentionUntil ? `retention until ${c.retentionUntil}` : ''].filter(Boolean);
  return `${c.logicalBytes} bytes in ${c.files} tape file${c.files === 1 ? '' : 's'}${flags.length ? ` (${flags.join(', ')})` : ''}`;
}

function sortCartridges(list: Cartridge[], key: SortKey, order: 'asc' | 'desc'): void {
  const value = (c: Cartridge): string | number => {
    if (key === 'location') return locationKey(c);
    const v = c[key];
    return v === null ? '' : v;
  };
  const dir = order === 'desc' ? -1 : 1;
  list.sort((a, b) => {
    const x = value(a);
    const y = value(b);
    const cmp = x < y ? -1 : x > y ? 1 : a.barcode < b.barcode ? -1 : a.barcode > b.barcode ? 1 : 0;
    return cmp * dir;
  });
}

/** Library, then element address, with the vault last. */
function locationKey(c: Cartridge): string {
  const l = c.location;
  if (l.kind === 'vault') return '~vault';
  return `${l.library}!${String(l.address).padStart(6, '0')}`;
}

async function detail(ctx: ApiContext, code: string) {
  const c = await ctx.libraries.getCartridge(code);
  const info = await ctx.libraries.tapes.info(code);
  const u = await ctx.usage.of(info.streamId, info.logicalBytes);
  const ratio = (a: number, b: number) => (b > 0 ? a / b : null);
  return {
    ...c,
    storedBytes: u.storedBytes,
    uniqueBytes: u.uniqueBytes,
    chunks: u.chunks,
    dedupRatio: ratio(c.logicalBytes, u.uniqueBytes),
    compressionRatio: ratio(u.uniqueBytes, u.storedBytes),
    tapeFiles: await tapeFiles(ctx.libraries, c),
    replication: (await ctx.replication?.replicator.cartridge(code)) ?? [],
    replica: (await ctx.replication?.dr.replica(code)) ?? null,
  };
}

/**
 * The tape files of a cartridge. The tape map is read through a loaded medium: a cartridge
 * outside a drive is mounted for the moment; one in a drive is read through a short session,
 * and null is returned while a client holds that drive's session.
 */
async function tapeFiles(libs: Libraries, c: Cartridge): Promise<Omit<TapeFileInfo, 'startByte'>[] | null> {
  const collect = async (files: AsyncIterable<TapeFileInfo>) => {
    const out = [];
    for await (const { startByte: _, ...f } of files) out.push(f);
    return out;
  };
  if (c.location.kind === 'drive') {
    const drive = await libs.drive(c.location.library, c.location.index);
    if ((await drive.status()).open) return null;
    const medium = await drive.open().catch(() => undefined);
    if (!medium) return null;
    try {
      return await collect(medium.files());
    } finally {
      await drive.close();
    }
  }
  if (libs.tapes.isLoaded(c.barcode)) return null;
  const medium = await libs.tapes.mount(c.barcode);
  try {
    return await collect(medium.files());
  } finally {
    await medium.unload();
  }
}
